"""Camera agent: each edge-AI detection goes where it corroborates something.

- ``crowd`` person counts join their zone's counter readings (keyed by the counter, so the crowd
  agent sees both in one partition and one table key);
- ``road_flooding`` joins its district's rain warnings (``rain.districts``): flooding on a road lifts them;
- ``oil_sheen`` joins ``water.trace`` (keyed by river basin), where the tracing agent keeps the sightings that
  corroborate the incidents it traces.

The agent keeps no state: a rebalance moves nothing of it.
"""

from __future__ import annotations

import faust

from agents.app import app, crowd_camera_topic, dead_letter, rain_districts_topic, readings_topics, water_trace_topic
from pipeline.city import counter_sensor_id, default_city
from pipeline.schemas import CameraDetection, Kind, RainDistrictRecord, WaterTraceRecord, encode_batch, parse_batch


def route(detection: CameraDetection) -> tuple[faust.TopicT, bytes, bytes] | None:
    """The topic, key and value a detection is forwarded as, or None when no agent needs it live."""
    if detection.detection == "crowd":
        return crowd_camera_topic, counter_sensor_id(detection.station).encode(), encode_batch([detection.to_json()])
    if detection.detection == "road_flooding":
        return rain_districts_topic, detection.district.encode(), RainDistrictRecord(flooding=[detection]).to_json()
    if detection.detection == "oil_sheen":
        basin = default_city().station_basin(detection.station)
        return water_trace_topic, basin.encode(), WaterTraceRecord(sightings=[detection]).to_json()
    return None


@app.agent(readings_topics[Kind.camera])
async def camera(stream):
    async for raw in stream:
        try:
            detections = parse_batch(raw)
            targets = [route(d) for d in detections if isinstance(d, CameraDetection)]
            if len(targets) != len(detections):
                raise ValueError("a record on readings.camera holds a reading that is not a camera detection")
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("camera", readings_topics[Kind.camera], raw, error)
            continue
        for target in targets:
            if target is not None:
                topic, key, value = target
                await topic.send(key=key, value=value)
