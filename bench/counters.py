"""Progress counters read while a bench runs: records on the reading topics and committed by the
agents, samples the bridge has forwarded, points and readings in InfluxDB."""

from __future__ import annotations

import re
from pathlib import Path


async def committed_offsets(bootstrap: str, topics: list[str], group: str) -> tuple[int, int]:
    """(records on the topics, records the group has committed) over all partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in (consumer.partitions_for_topic(t) or await _parts(consumer, t))
        ]
        ends = await consumer.end_offsets(parts)
        committed = 0
        for tp in parts:
            committed += (await consumer.committed(tp)) or 0
        return sum(ends.values()), committed
    finally:
        await consumer.stop()


async def _parts(consumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


def bridge_counts(log_file: Path) -> tuple[int, int]:
    """Samples (readings of one sensor at one time) the bridge has forwarded and dead-lettered, from
    its last 10-s report in its log."""
    text = log_file.read_text(errors="replace")[-20000:] if log_file.exists() else ""
    found = re.findall(r"forwarded=(\d+) dead_lettered=(\d+)", text)
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def points_written(settings) -> int:
    """Points InfluxDB has accepted over HTTP since it started (every measurement and database): a
    cheap counter for progress while the load runs, where a count over the readings would cost
    InfluxDB more with every sample."""
    from pipeline.influx import influxql

    series = influxql(settings.influx, "SHOW STATS FOR 'httpd'")
    return int(dict(zip(series[0]["columns"], series[0]["values"][0])).get("pointsWrittenOK", 0)) if series else 0


def readings_in_influx(settings) -> int:
    """Readings (parameter values) in InfluxDB: the count of every field of ``readings``."""
    from pipeline.influx import influxql

    series = influxql(settings.influx, "SELECT count(*) FROM readings")
    return int(sum(v for v in series[0]["values"][0][1:] if v)) if series else 0
