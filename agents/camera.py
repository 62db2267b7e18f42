"""Camera agent: each edge-AI detection goes where it corroborates something.

- ``crowd`` person counts join their zone's counter readings (keyed by the counter, so the crowd
  agent sees both in one partition and one table key);
- ``road_flooding`` joins the rain field (one key): flooding on a road corroborates rain risk;
- ``oil_sheen`` joins ``water.trace`` (keyed by river basin), where the tracing agent keeps the sightings that
  corroborate the incidents it traces.
"""

from __future__ import annotations

from agents.app import app, crowd_camera_topic, dead_letter, rain_field_topic, readings_topics, water_trace_topic
from pipeline.city import counter_sensor_id, default_city
from pipeline.schemas import CameraDetection, Kind, WaterTraceRecord, encode_batch, parse_batch

RAIN_FIELD_KEY = b"field"


def route(detection: CameraDetection) -> tuple[object, bytes] | None:
    """The topic and key a detection is forwarded to, or None when no agent needs it live."""
    if detection.detection == "crowd":
        return crowd_camera_topic, counter_sensor_id(detection.station).encode()
    if detection.detection == "road_flooding":
        return rain_field_topic, RAIN_FIELD_KEY
    if detection.detection == "oil_sheen":
        return water_trace_topic, default_city().station_basin(detection.station).encode()
    return None


@app.agent(readings_topics[Kind.camera])
async def camera(stream):
    async for raw in stream:
        try:
            detections = parse_batch(raw)
            targets = [(d, route(d)) for d in detections if isinstance(d, CameraDetection)]
            if len(targets) != len(detections):
                raise ValueError("a record on readings.camera holds a reading that is not a camera detection")
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("camera", readings_topics[Kind.camera], raw, error)
            continue
        for detection, target in targets:
            if target is not None:
                topic, key = target
                value = (WaterTraceRecord(sightings=[detection]).to_json() if topic is water_trace_topic
                         else encode_batch([detection.to_json()]))
                await topic.send(key=key, value=value)
