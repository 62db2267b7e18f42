"""Tracing agent: water incidents traced to their likely source, with intake arrivals, from the stream.

The water agent forwards the pollutants of every water reading, then the alerts they raised, to
``water.trace`` (keyed by river basin: a plume flows on from a river into the next, never out of
its basin), and the camera agent its oil-sheen sightings. This agent keeps each
station's recent series in memory (``TraceStream``, pipeline/trace_stream.py), in event time:
tracing reads nothing back from InfluxDB, so it does not race the sink, and it works at 1x or at
any replay speed. An incident is traced on its first alert (and again when it worsens): a look
each time the stream holds the next of ``[agent] looks_min`` of readings after the detection, each
with more of the plume (a station gone silent does not hold a look for ever). The fit runs in a
worker thread so the stream keeps flowing; each look's result goes to ``tracing``, where the
warning agent decides what is worth a warning. A look that cannot run or finds nothing is logged
and dead-lettered with why.

The traces waiting for their window are kept in the table ``tracing_pending`` too, so a worker
that restarts (and reads on from its last committed offset) still makes them. Its windows refill
from the stream; the part of a history from before the restart is read from InfluxDB when it is up
(a warning is logged when it is not).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import cache

import faust
import numpy as np

from agents.app import SETTINGS, app, dead_letter, tracing_topic, water_trace_topic
from pipeline.city import default_city
from pipeline.influx import influx_time, influxql
from pipeline.rules import rules_or_exit
from pipeline.schemas import Alert, WaterTraceRecord
from pipeline.topics import reading_partition
from pipeline.trace_stream import BASELINE_S, STEP_S, Pending, TraceStream, joined
from pipeline.water_tracing import POLLUTANTS, History, NoTrace, tracing_result


@cache
def live_stream() -> TraceStream:
    """The windows of every station this worker reads, built on the first record (not at import)."""
    return TraceStream(default_city(), [m * 60 for m in rules_or_exit("yuflow worker").tracing.agent.looks_min])


log = logging.getLogger("yuflow.tracing")


class PendingTable(faust.Table):
    """Traces waiting for their window, by incident. A timer may start (and delete) one outside any
    event, so the changelog partition is named from the incident's basin, the key of ``water.trace``."""

    def partition_for_key(self, key: str) -> int:
        river = key.split(":", 1)[-1]  # an incident's key: water:<river>
        return reading_partition(default_city().basins.get(river, river), self.partitions)


pending_table = app.tables.add(
    PendingTable(
        app, name="tracing_pending", default=None, beacon=app.tables.beacon, partitions=SETTINGS.kafka.partitions
    )
)
_restored = False  # the table's waiting traces taken into the stream since the last rebalance


async def _restore_again(*_args, **_kwargs) -> None:
    global _restored
    _restored = False  # partitions may have come with traces another worker left waiting


app.on_partitions_assigned.connect(_restore_again)


def keep(key: str) -> None:
    """The incident's next look in the table (or none left)."""
    p = live_stream().pending.get(key)
    if p is not None:
        pending_table[key] = {"alert": p.alert.to_json().decode(), "until_s": p.until_s, "later_s": list(p.later_s)}
    elif key in pending_table:
        del pending_table[key]


def restore_pending() -> None:
    """Once the table is recovered: the traces a previous worker left waiting."""
    global _restored
    if _restored or not app.tables.recovery.completed.is_set():
        return
    _restored = True
    for key, value in list(pending_table.items()):
        if key not in live_stream().pending:
            live_stream().pending[key] = Pending(
                Alert.model_validate_json(value["alert"]), value["until_s"], tuple(value["later_s"])
            )
            log.info("tracing %s: restored, waiting for its window", key)


def earlier_from_influx(stations: list[str], since_s: float, until_s: float) -> dict[str, History]:
    """The stations' readings before this worker's stream began (after a restart), from InfluxDB."""
    fields = ", ".join(f'"{p}"' for p in POLLUTANTS)
    query = (
        f"SELECT {fields} FROM readings WHERE kind = 'water' AND station =~ /^({'|'.join(stations)})$/ "
        f"AND time >= '{influx_time(since_s)}' AND time < '{influx_time(until_s)}' GROUP BY station"
    )
    out = {}
    for series in influxql(SETTINGS.influx, query, timeout_s=30):
        rows = np.array([[np.nan if v is None else v for v in row] for row in series["values"]], dtype=float)
        columns = series["columns"]
        out[series["tags"]["station"]] = History(
            rows[:, 0] / 1000, {c: rows[:, i] for i, c in enumerate(columns) if c != "time"}
        )
    return out


_incident_locks: dict[str, asyncio.Lock] = {}


async def trace_and_publish(p: Pending) -> None:
    """One look, after the incident's earlier looks (a backlog starts several at once: their results
    must reach the warning agent in event-time order, the first detection's before a later one's)."""
    lock = _incident_locks.setdefault(p.alert.incident_key, asyncio.Lock())
    async with lock:
        await _trace_and_publish(p)


async def _trace_and_publish(p: Pending) -> None:
    alert = p.alert
    detected_s = alert.ts.timestamp()
    scope = live_stream().scope(alert.station)
    since_s = detected_s - scope.lookback_s - BASELINE_S
    histories = live_stream().histories(scope.stations, since_s, p.until_s)
    if (
        live_stream().started_s is not None and live_stream().started_s > since_s + STEP_S
    ):  # restarted since: the rest from the sink
        try:
            earlier = await asyncio.to_thread(earlier_from_influx, scope.stations, since_s, live_stream().started_s)
            histories = {s: h for s in scope.stations if (h := joined(earlier.get(s), histories.get(s))) is not None}
        except Exception as error:  # InfluxDB down: trace on what the stream holds
            log.warning(
                "tracing %s: the history before %s could not be read from InfluxDB (%s); tracing on the stream's",
                alert.incident_key,
                influx_time(live_stream().started_s),
                error,
            )
    sightings = live_stream().camera_sightings(scope.stations, detected_s - 6 * 3600, detected_s)
    log.info("tracing %s from %s", alert.incident_key, alert.station)
    try:
        result = await asyncio.to_thread(tracing_result, default_city(), alert, histories, sightings, scope, p.until_s)
    except Exception as error:  # never silent: why goes to the log and the dead letters
        code = "no_trace" if isinstance(error, NoTrace) else "agent_error"
        if code == "no_trace":
            log.warning("tracing %s found no suspect: %s", alert.incident_key, error)
        await dead_letter("tracing", water_trace_topic, alert.to_json(), error, code=code)
        return
    await tracing_topic.send(key=alert.incident_key.encode(), value=result.to_json())


_running: set[asyncio.Task] = set()  # tracing runs beside the stream, so readings keep flowing meanwhile


def start_ready() -> None:
    for pending in live_stream().ready(time.time()):
        keep(pending.alert.incident_key)
        task = asyncio.create_task(trace_and_publish(pending))
        _running.add(task)
        task.add_done_callback(_running.discard)


@app.agent(water_trace_topic, name="trace")
async def trace_water(stream):
    async for raw in stream:
        try:
            asked = live_stream().add(WaterTraceRecord.model_validate_json(raw), time.time())
        except ValueError as error:
            await dead_letter("tracing", water_trace_topic, raw, error)
            continue
        restore_pending()
        for alert in asked:
            keep(alert.incident_key)
            log.info(
                "tracing %s from %s: looks at %s min after the detection",
                alert.incident_key,
                alert.station,
                ", ".join(f"{s / 60:g}" for s in live_stream().looks_s),
            )
        start_ready()


@app.timer(2.0)
async def trace_when_quiet() -> None:
    """Live, or when a replay stopped: a station gone silent must not hold a trace for ever."""
    restore_pending()
    start_ready()
