"""The worker's health: ``GET /health`` on its web port (``worker.web_port``), and following a Kafka
broker that came back without its data.

``/health`` answers 200 with ``{"ready": true, ...}`` while the worker makes progress, and 503 with
the reason while it cannot: Kafka does not answer, the group is rebalancing, or records wait and
none has been read for ``STALL_S``. Either way the body has the consumer lag (records not yet read)
per topic, for a load balancer, systemd's watchdog script or a person with curl.

A broker that keeps its data in memory (the embedded Tansu) comes back from a crash empty: its
partitions start again at offset 0, below what this worker has read (and Tansu then even numbers
a producer's retried batches out of order: 0..22, then 3, 4, 5). Faust skips every record below its
read offset, so it would skip the new records until the log had grown past the old offset, and its
table recovery would refuse changelogs shorter than what it had applied (ConsistencyError). The
check below notices a partition whose log is shorter than it was, and reads it again from its
start, skipping nothing, until its log has grown past the old offset; and, since the rebalance that
follows can put its consumer somewhere else again, puts it back into the new log (``_unstick``).
Some records are then read twice: the agents take a reading once per sensor and time, and InfluxDB
keeps one point per series and time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.consumer import Consumer

from agents.app import SETTINGS, app

log = logging.getLogger("yuflow.health")
CHECK_INTERVAL_S = 2.0
STALL_S = 60.0  # records waiting and none read for this long: not ready


@dataclass
class Health:
    ready: bool = False
    reason: str = "starting"
    lag_records: dict[str, int] = field(default_factory=dict)  # topic -> records not yet read
    partitions: int = 0
    checked_at: float = 0.0  # unix s


class ReadOffsets(defaultdict):
    """Faust's read offsets (it skips a record below its partition's), except that a partition being
    read again after its log was lost (``rereading``: partition -> the old read offset) skips none."""

    def __init__(self):
        super().__init__(lambda: None)
        self.rereading: dict = {}

    def __getitem__(self, tp):
        return None if tp in self.rereading else super().__getitem__(tp)


def consumer_with_read_offsets() -> None:
    """Faust's consumers get ReadOffsets (called by ``run_worker`` before the consumer exists)."""
    init = Consumer.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._read_offset = ReadOffsets()  # before the consumer starts: its fetch loop binds the lookup once

    Consumer.__init__ = __init__


HEALTH = Health()
_last_progress = {"read": -1, "at": time.monotonic()}
_highest_seen: dict = {}  # partition -> the furthest end of its log seen
_stuck: dict = {}  # partition read again -> (position, read offset) when last seen ahead of what was read


def lost_partitions(highwaters: Mapping, highest_seen: Mapping) -> list:
    """Partitions whose log now ends before it once did: the broker lost them. (A log never gets
    shorter otherwise. Its end is compared with itself, not with what was read: Tansu reports the end
    as the last batch's first offset + 1, which can be below the last offset read.)

    >>> lost_partitions({"a": 42, "b": 3, "c": 0, "d": 7}, {"a": 40, "b": 41, "c": 28})
    ['b', 'c']
    """
    return [tp for tp, highwater in highwaters.items() if highwater is not None and highwater < highest_seen.get(tp, 0)]


def lag_by_topic(read_offsets: Mapping, highwaters: Mapping) -> dict[str, int]:
    """Records not yet read per topic (a partition never read from counts from its start).

    >>> from collections import namedtuple
    >>> TP = namedtuple("TP", "topic partition")
    >>> lag_by_topic({TP("r", 0): 9, TP("r", 1): None}, {TP("r", 0): 12, TP("r", 1): 4})
    {'r': 6}
    """
    lag: dict[str, int] = {}
    for tp, highwater in highwaters.items():
        if highwater is not None:
            read = read_offsets.get(tp)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - (read + 1 if read is not None else 0))
    return lag


async def read_from_the_start(lost: list) -> None:
    """Read ``lost`` partitions again from offset 0, skipping nothing until their logs have grown past
    their old ends, and forget what this worker committed of them (and what its tables applied from
    their changelogs)."""
    consumer = app.consumer
    for tp in lost:
        old = [consumer._read_offset.get(tp), consumer._committed_offset.get(tp), _highest_seen[tp]]
        consumer._read_offset.rereading[tp] = max(offset or 0 for offset in old)
        dict.__setitem__(consumer._read_offset, tp, None)  # from here on: what was read of the new log
        await consumer.seek(tp, 0)
        consumer._committed_offset[tp] = None
        for pending in (consumer._acked, consumer._acked_index, consumer._gap):
            pending.pop(tp, None)
    recovery = app.tables.recovery
    for offsets in (recovery.active_offsets, recovery.standby_offsets):
        for tp in list(offsets):
            offsets[tp] = -1  # the changelogs were lost with the rest: a recovery reads them from their start


def stuck_ahead(position: int | None, read: int | None, last_seen: tuple | None) -> str:
    """Is the consumer of a partition being read again (after a loss) stuck ahead of what it read?
    Seen after Tansu came back empty: the records it had just fetched were dropped by Faust when the
    group's generation changed, and, with nothing committed on the new broker, the seek to the
    committed offset left it past them. Its position is then past what was read (``read``: of the
    new log) and neither has moved since the last check (``last_seen``): "reset" (to what was read).
    Past it but not seen like that before: "watch". (A consumer put beyond the log's end by a stale
    commit looks read up to there; ``log_end`` finds that one.)

    >>> stuck_ahead(79, None, None), stuck_ahead(79, None, (79, None)), stuck_ahead(6, None, (6, None))
    ('watch', 'reset', 'reset')
    >>> stuck_ahead(12, 3, (9, 3)), stuck_ahead(9, 8, (9, 8)), stuck_ahead(None, None, None)
    ('watch', 'ok', 'ok')
    """
    if position is None or position <= (0 if read is None else read + 1):
        return "ok"
    return "reset" if last_seen == (position, read) else "watch"


async def log_end(tp, highwater: int) -> int:
    """The offset after a partition's last record. Tansu reports a log's end as its last batch's first
    offset + 1 (measured: 5 for a log of 38 records): the batch there is read to find the real end."""
    probe = AIOKafkaConsumer(bootstrap_servers=SETTINGS.kafka.bootstrap, group_id=None, enable_auto_commit=False)
    await probe.start()
    try:
        partition = TopicPartition(tp.topic, tp.partition)
        probe.assign([partition])
        probe.seek(partition, max(highwater - 1, 0))
        records = (await probe.getmany(partition, timeout_ms=2000)).get(partition, [])
        return max([highwater] + [record.offset + 1 for record in records])
    finally:
        await probe.stop()


async def _unstick(tp, highwater: int) -> None:
    """Put the consumer of a partition being read again (after a loss) back into its new log when it is
    not: beyond the log's end, where a rebalance puts it when an offset committed before the loss
    reached the new broker (sent while it restarted; Faust then also takes that offset as read, so
    nothing looks behind), or stuck ahead of what it read (``stuck_ahead``)."""
    consumer = app.consumer
    position = await consumer.position(tp)
    if position is not None and position > highwater and position > (end := await log_end(tp, highwater)):
        log.warning("%s: the consumer is at offset %d, beyond the log's end %d; reading from 0", tp, position, end)
        await consumer.seek(tp, 0)
        return
    read = dict.get(consumer._read_offset, tp)  # (what was read of the new log: reset to None on the loss)
    verdict = stuck_ahead(position, read, _stuck.pop(tp, None))
    if verdict == "watch":
        _stuck[tp] = (position, read)
    elif verdict == "reset":
        next_offset = 0 if read is None else read + 1
        log.warning(
            "%s: the consumer is at offset %d and nothing was read past %s; reading from %d",
            tp,
            position,
            read,
            next_offset,
        )
        await consumer.seek(tp, next_offset)


@app.timer(interval=CHECK_INTERVAL_S)
async def check_health() -> None:
    consumer = app.consumer
    sources = {tp for tp in consumer.assignment() if not tp.topic.endswith("-changelog")}
    health = Health(partitions=len(sources), checked_at=time.time())
    try:
        highwaters = await asyncio.wait_for(consumer.highwaters(*sources), timeout=10) if sources else {}
    except Exception as error:  # noqa: BLE001 - any failure to reach Kafka makes the worker not ready
        health.reason = f"Kafka does not answer: {type(error).__name__}: {error}"[:300]
    else:
        rereading = consumer._read_offset.rereading
        for tp in [tp for tp, old in rereading.items() if (highwaters.get(tp) or 0) > old + 1]:
            del rereading[tp]  # grown past the old offsets: numbered in order again
            _stuck.pop(tp, None)
        read = {tp: consumer._read_offset.get(tp) for tp in sources}
        try:
            if lost := lost_partitions(highwaters, _highest_seen):
                log.warning(
                    "Kafka's log of %d partition(s) is shorter than it was (the broker lost its data): "
                    "reading them again from their start, e.g. %s",
                    len(lost),
                    sorted(map(str, lost))[:3],
                )
                await read_from_the_start(lost)
                read = {tp: consumer._read_offset.get(tp) for tp in sources}
            for tp in [tp for tp in rereading if tp in sources]:
                await _unstick(tp, highwaters.get(tp) or 0)
        except Exception as error:  # noqa: BLE001 - e.g. a partition taken away by a rebalance meanwhile: next check
            log.warning("could not read the lost partitions again yet: %s: %s", type(error).__name__, error)
            lost = []
        for tp, highwater in highwaters.items():
            _highest_seen[tp] = highwater if tp in lost else max(_highest_seen.get(tp, 0), highwater or 0)
        health.lag_records = lag_by_topic(read, highwaters)
        total_read = sum(offset or 0 for offset in read.values())
        if total_read != _last_progress["read"] or not any(health.lag_records.values()):
            _last_progress.update(read=total_read, at=time.monotonic())
        stalled_s = time.monotonic() - _last_progress["at"]
        if app.rebalancing:
            health.reason = "the consumer group is rebalancing"
        elif stalled_s > STALL_S:
            health.reason = f"no record read for {stalled_s:.0f} s while {sum(health.lag_records.values())} wait"
            if HEALTH.ready:  # once per stall: what each waiting partition looks like, for whoever reads the log
                log.warning("stalled partitions: %s", await _stall_report(sources, highwaters))
        else:
            health.ready, health.reason = True, "ok"
    if health.ready != HEALTH.ready:
        (log.info if health.ready else log.warning)(
            "worker %s: %s", "ready" if health.ready else "not ready", health.reason
        )
    HEALTH.__dict__.update(health.__dict__)


async def _stall_report(sources: set, highwaters: Mapping) -> str:
    consumer, recovery = app.consumer, app.tables.recovery
    rows = []
    for tp in sorted(sources, key=str):
        read, highwater = dict.get(consumer._read_offset, tp), highwaters.get(tp)
        if tp in consumer._read_offset.rereading or (highwater or 0) > (read or -1) + 1:
            rows.append(
                f"{tp.topic}[{tp.partition}] position={await consumer.position(tp)} end={highwater} read={read} "
                f"committed={consumer._committed_offset.get(tp)} rereading={consumer._read_offset.rereading.get(tp)} "
                f"paused={tp in consumer._paused_partitions} active={tp in (consumer._active_partitions or ())}"
            )
    return (
        f"in_recovery={recovery.in_recovery} recovery_remaining={recovery.active_remaining_total()} "
        f"flow_active={consumer.flow_active} generation={app.consumer_generation_id}; " + "; ".join(rows)
    )


@app.page("/health")
async def health_page(web, request):
    return web.json(asdict(HEALTH), status=200 if HEALTH.ready else 503)
