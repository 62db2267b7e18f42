"""Deadman agent: a live sensor that falls silent longer than its kind's limit (``[deadman]`` in
the settings) raises one blue ``sensor_offline`` alert; its next live reading resolves it. The
alert's incident is the sensor's own (area ``offline.<site>``), not its river's or district's.

The watch is in memory, for the partitions this worker holds: a rebalance starts it afresh (a
sensor that never reports again after a restart is not caught: documented in docs/resilience.md).
"""

from __future__ import annotations

import time
from datetime import datetime

import orjson

from agents.app import SETTINGS, alerts_topic, app, dead_letter, readings_topics
from models.liveness import LivenessWatch
from pipeline.city import Sensor, default_city
from pipeline.schemas import Alert, Category, Kind, Tier, utc_at

WATCH = LivenessWatch(SETTINGS.deadman.silence_s())
TOPICS = {t.get_topic_name(): t for t in readings_topics.values()}
CAMERA_CATEGORY = {"oil_sheen": Category.water, "crowd": Category.crowd, "road_flooding": Category.rain}


def category_of(sensor: Sensor) -> Category:
    if sensor.kind == Kind.camera:
        return CAMERA_CATEGORY.get(next(iter(default_city().cameras[sensor.id].detects), ""), Category.water)
    return Category(sensor.kind.value)


def offline_alert(sensor_id: str, silent_s: float, now_s: float, resolved: bool = False) -> Alert | None:
    sensor = default_city().sensors.get(sensor_id)
    if sensor is None:
        return None
    limit_s = SETTINGS.deadman.silence_s()[sensor.kind.value]
    what = (
        f"{sensor_id} at {default_city().site_name(sensor.site)} reports again"
        if resolved
        else f"{sensor_id} at {default_city().site_name(sensor.site)} has sent nothing for {silent_s / 60:.0f} min "
        f"(limit {limit_s / 60:.0f} min): check its power, link and the station"
    )
    return Alert(
        alert_id=f"offline:{sensor_id}:{int(now_s)}",
        category=category_of(sensor),
        rule="sensor_offline",
        sensor_id=sensor_id,
        station=sensor.site,
        district=sensor.district,
        township=sensor.township,
        ts=utc_at(now_s),
        parameter="offline",
        value=round(silent_s / 60, 1),
        unit="min",
        limit=round(limit_s / 60, 1),
        severity=0.0,
        tier=Tier.blue,
        message=what,
        resolved=resolved,
        area=f"offline.{sensor.site}",
        checklist=[]
        if resolved
        else [f"派员检查 {default_city().site_name(sensor.site)} 的设备供电与通信 (check the sensor's power and link)"],
    )


async def send(alert: Alert | None) -> None:
    if alert is not None:
        await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())


@app.agent(app.topic(*TOPICS, value_serializer="raw", key_serializer="raw"), name="deadman")
async def watch_liveness(stream):
    async for raw in stream:
        now_s = time.time()
        try:
            samples = orjson.loads(raw)
            for r in samples if isinstance(samples, list) else [samples]:
                if WATCH.learn_one(r["sensor_id"], r["kind"], datetime.fromisoformat(r["ts"]).timestamp(), now_s):
                    await send(offline_alert(r["sensor_id"], 0.0, now_s, resolved=True))
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("deadman", TOPICS[stream.current_event.message.topic], raw, error)


@app.timer(interval=SETTINGS.deadman.check_interval_s)
async def check_liveness() -> None:
    now_s = time.time()
    for sensor_id, silent_s in WATCH.due(now_s):
        await send(offline_alert(sensor_id, silent_s, now_s))


def _forget(*args, **kwargs) -> None:  # a signal: (sender, partitions, signal=...)
    WATCH.forget()


app.on_partitions_revoked.connect(_forget)
