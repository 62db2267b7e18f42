"""Delivery agent: each warning to each of its departments by each channel (pipeline/delivery.py),
exactly once per (warning, department, channel) across restarts: the deliveries made are kept in
a table keyed by warning id, which the warnings topic's partitioning keeps beside the warning.
Each attempt is recorded on ``deliveries`` (and in InfluxDB); the first delivery of a warning is
the incident's "delivered" stage.
"""

from __future__ import annotations

from agents.app import SETTINGS, app, dead_letter, deliveries_topic, lifecycle_topic, warnings_topic
from pipeline.delivery import channels_for, deliver
from pipeline.operators import humane_duration
from pipeline.schemas import LifecycleEvent, Stage, Warning, incident_key_of

done_table = app.Table("deliveries_done", default=None, partitions=SETTINGS.kafka.partitions)
_topics: dict[str, object] = {}


async def produce(topic: str, key: bytes, value: bytes) -> None:
    if topic not in _topics:
        _topics[topic] = app.topic(
            topic, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw"
        )
    await _topics[topic].send(key=key, value=value)


CHANNELS = channels_for(SETTINGS.delivery, produce)


@app.on_before_shutdown.connect
async def close_channels(sender, **kwargs) -> None:
    for channel in CHANNELS:
        if hasattr(channel, "close"):
            await channel.close()


@app.agent(warnings_topic, name="deliver")
async def deliver_warnings(stream):
    async for raw in stream:
        try:
            warning = Warning.model_validate_json(raw)
            done = set(done_table.get(warning.warning_id) or [])
            records = await deliver(warning, CHANNELS, done)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("delivery", warnings_topic, raw, error)
            continue
        made = [r for r in records if r.ok]
        if made:
            done_table[warning.warning_id] = sorted(done | {r.delivery_id for r in made})
        for record in records:
            await deliveries_topic.send(key=warning.incident_id.encode(), value=record.to_json())
        if made and not done:
            first = min(made, key=lambda r: r.delivered_at)
            after = (
                humane_duration(first.since_reading_s)
                if first.since_reading_s >= 60
                else f"{first.since_reading_s:.2f} s"
            )
            event = LifecycleEvent(
                incident_id=warning.incident_id,
                stage=Stage.delivered,
                ts=first.delivered_at,
                actor=first.department,
                note=(
                    f"{warning.tier.value.upper()} warning: {len(made)} deliveries, the first {after} after the reading"
                ),
                warning_id=warning.warning_id,
            )
            await lifecycle_topic.send(key=incident_key_of(warning.incident_id).encode(), value=event.to_json())
