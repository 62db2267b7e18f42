"""Water agent: batches of water readings -> the water watch (pipeline/water_watch.py) -> alerts.

Each sensor's row of the watch is checkpointed as one entry of the Faust table ``water_state``
(agents/checkpoint.py), so it survives a worker restart; the bridge puts a sensor's readings in one
partition, and its entry goes to the same changelog partition (``SensorStateTable``). The watch and
its checkpointed rows are built on the first records a worker takes, not at import.
"""

from __future__ import annotations

import time
from functools import cache

import faust

from agents.app import SETTINGS, alerts_topic, app, dead_letter, readings_topics, water_trace_topic
from agents.checkpoint import CheckpointedTable
from pipeline.city import default_city
from pipeline.rules import rules
from pipeline.schemas import Kind
from pipeline.topics import reading_partition
from pipeline.water_watch import WaterWatch

TAKE_RECORDS, TAKE_WITHIN_S = 64, 0.02


class SensorStateTable(faust.Table):
    """A table keyed by sensor id whose changelog partition is the sensor's partition on
    ``readings.*`` (``reading_partition``, where the bridge sends its readings), computed from the
    key rather than taken from the event being processed: the agent writes it after screening
    several records at once, outside any one event, and a worker that owns a readings partition
    still owns its sensors' state."""

    def partition_for_key(self, key: str) -> int:
        return reading_partition(key, self.partitions)


state_table = app.tables.add(
    SensorStateTable(
        app, name="water_state", default=None, beacon=app.tables.beacon, partitions=SETTINGS.kafka.partitions
    )
)


@cache
def water_watch() -> WaterWatch:
    """The worker's water watch (every sensor's screen and limit rule), built on first use."""
    return WaterWatch(default_city(), rules().gb3838.table(), SETTINGS.water)


@cache
def sensor_rows() -> CheckpointedTable[int]:
    """Each sensor's row of the watch, restored from ``water_state`` (and dropped when partitions move)."""
    watch = water_watch()
    return CheckpointedTable(
        app, state_table, watch.load_row, watch.dump_row, every_s=SETTINGS.water.checkpoint_s, on_forget=watch.forget
    )


@app.agent(readings_topics[Kind.water])
async def water(stream):
    # the records that arrive together (a bridge pass sends one per partition) are screened as one
    # batch: a round of the bank costs little more for 60 sensors than for 15
    async for records in stream.take(TAKE_RECORDS, within=TAKE_WITHIN_S):
        rows = sensor_rows()
        results = water_watch().screen(records, rows.get)
        now_s = time.monotonic()
        for result in results:
            for raw, error in result.bad:  # never a silent drop: each with why
                await dead_letter("water", readings_topics[Kind.water], raw, error)
            for key in set(result.keys):
                rows.changed(key, now_s, force=key in result.alerted)  # an alert's state must survive a crash
            for basin, part in result.traced.items():  # the readings before their alerts: tracing sees them first
                await water_trace_topic.send(key=basin.encode(), value=part.to_json())
            for alert in result.alerts:
                await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())
