"""Crowd agent: counter readings and camera person counts -> density, forecast, tier and dispersal
plan per zone (pipeline/crowd_watch.py).

Counter readings arrive on ``readings.crowd`` in the partition of the counter (``pc-<zone>``); the
camera agent forwards crowd counts to ``crowd.camera`` keyed by the counter, so one zone's messages
share a partition and its state lives under one table key (restored from the changelog after a
restart). Records of both topics are batches of readings. The watch keeps no state of its own: a
zone's state is read from and written to the table with each reading, so a rebalance moves it whole.
"""

from __future__ import annotations

from functools import cache

from agents.app import SETTINGS, alerts_topic, app, crowd_camera_topic, dead_letter, readings_topics
from pipeline.city import counter_sensor_id, default_city
from pipeline.crowd_watch import CrowdWatch
from pipeline.schemas import Kind, parse_batch

zones_table = app.Table("crowd_zones", default=None, partitions=SETTINGS.kafka.partitions)


@cache
def crowd_watch() -> CrowdWatch:
    """The crowd watch (the city's zones and the crowd rules), built on first use."""
    return CrowdWatch(default_city())


@app.agent(
    app.topic(
        readings_topics[Kind.crowd].get_topic_name(),
        crowd_camera_topic.get_topic_name(),
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
    )
)
async def crowd(stream):
    async for raw in stream:
        try:
            readings = parse_batch(raw)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("crowd", readings_topics[Kind.crowd], raw, error)
            continue
        for reading in readings:
            try:
                key = counter_sensor_id(reading.station)
                state, alerts = crowd_watch().step(reading, zones_table.get(key))
            except Exception as error:
                await dead_letter("crowd", readings_topics[Kind.crowd], reading.to_json(), error)
                continue
            if state is not None:
                zones_table[key] = state
            for alert in alerts:
                await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())
