"""Delivery agent: each warning to each of its departments by each channel (pipeline/delivery/),
exactly once per (warning, department, channel) across restarts: the deliveries made are kept in
a table keyed by warning id, which the warnings topic's partitioning keeps beside the warning.
Each delivery is recorded on ``deliveries`` (and in InfluxDB); the first delivery of a warning is
the incident's "delivered" stage.
"""

from __future__ import annotations

from agents.app import SETTINGS, app, dead_letter, deliveries_topic, lifecycle_topic, warnings_topic
from pipeline.delivery.records import delivered_event, made_ids, record_of
from pipeline.delivery.route import channels_for, routes
from pipeline.schemas import Warning, incident_key_of

done_table = app.Table("deliveries_done", default=None, partitions=SETTINGS.kafka.partitions)
_topics: dict[str, object] = {}


async def produce(topic: str, key: bytes, value: bytes) -> None:
    if topic not in _topics:
        _topics[topic] = app.topic(
            topic, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw"
        )
    await _topics[topic].send(key=key, value=value)


CHANNELS = channels_for(SETTINGS.delivery, produce)  # each behind its retry stage


@app.on_before_shutdown.connect
async def close_channels(sender, **kwargs) -> None:
    for channel in CHANNELS:
        await channel.close()


@app.agent(warnings_topic, name="deliver")
async def deliver_warnings(stream):
    async for raw in stream:
        try:
            warning = Warning.model_validate_json(raw)
            done = set(done_table.get(warning.warning_id) or [])
            records = []
            for department, channel in routes(warning, CHANNELS, done):
                outcome = await channel.send(warning, department)
                records.append(record_of(warning, department, channel.name, outcome))
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("delivery", warnings_topic, raw, error)
            continue
        if any(r.ok for r in records):
            done_table[warning.warning_id] = made_ids(done, records)
        for record in records:
            await deliveries_topic.send(key=warning.incident_id.encode(), value=record.to_json())
        if not done and (event := delivered_event(warning, records)):
            await lifecycle_topic.send(key=incident_key_of(warning.incident_id).encode(), value=event.to_json())
