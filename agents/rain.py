"""Rain agents: gauge readings -> one field -> rainstorm warnings by district (pipeline/rain_watch.py).

``rain_to_field`` re-keys every gauge reading to one key of ``rain.field`` (road-flooding sightings
arrive there from the camera agent), so ``rain`` sees the whole field in one partition. Each
gauge's accumulator is saved in ``rain_gauges`` as its readings arrive, the nowcaster and district
states in ``rain_field`` after each step: a restarted worker rebuilds the watch from the changelogs.
"""

from __future__ import annotations

from agents.app import SETTINGS, alerts_topic, app, dead_letter, rain_field_topic, readings_topics
from agents.camera import RAIN_FIELD_KEY
from pipeline.city import default_city
from pipeline.rain_watch import RainWatch
from pipeline.schemas import CameraDetection, Kind, parse_batch

gauge_table = app.Table("rain_gauges", default=None, partitions=SETTINGS.kafka.partitions)
field_table = app.Table("rain_field", default=None, partitions=SETTINGS.kafka.partitions)
FIELD = "city"
CITY = default_city()
_watch: RainWatch | None = None


def watch() -> RainWatch:
    """The watch, rebuilt from the tables the first time it is needed after a (re)start."""
    global _watch
    if _watch is None:
        gauges = {g: gauge_table[g] for g in CITY.gauges if gauge_table.get(g) is not None}
        _watch = RainWatch(CITY).load(field_table.get(FIELD), gauges)
    return _watch


@app.agent(readings_topics[Kind.rain])
async def rain_to_field(stream):
    async for raw in stream:
        await rain_field_topic.send(key=RAIN_FIELD_KEY, value=raw)


@app.agent(rain_field_topic)
async def rain(stream):
    async for raw in stream:
        try:
            readings = parse_batch(raw)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("rain", rain_field_topic, raw, error)
            continue
        for reading in readings:
            try:
                w = watch()
                step_before = w.step_end_s
                alerts = w.add(reading)
            except Exception as error:
                await dead_letter("rain", rain_field_topic, reading.to_json(), error)
                continue
            if not isinstance(reading, CameraDetection) and reading.station in w.accumulators:
                gauge_table[reading.station] = w.accumulators[reading.station].state()
            if w.step_end_s != step_before or isinstance(reading, CameraDetection):
                field_table[FIELD] = w.field_state()
            for alert in alerts:
                await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())
