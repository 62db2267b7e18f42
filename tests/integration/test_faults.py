"""Fault tests (issue #8): a Faust worker killed with SIGKILL mid-incident, a bridge killed with SIGKILL
while readings are published, and InfluxDB stopped for 30 s. Each test states what it killed and
what it counted, and prints what it measured (run pytest with -s to see it; docs/resilience.md).

Isolation from the other tests on the shared stack: only the stations of the Qijiang (an incident
is a river's, ``water:qijiang-river:<opened>``), and readings counted in windows 25 and 35 days
ago, which no other test uses. Each test leaves the stack working: the restarted worker and bridge
replace ``stack.worker`` and ``stack.bridge`` (the session fixture stops those at the end), and
InfluxDB is started again even when the test fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from pipeline.influx import influx_time, influxql
from pipeline.processes import Background, wait_until
from pipeline.schemas import Delivery, Kind, Quantity, Reading, Warning, parse_batch
from pipeline.services.influxdb import InfluxService
from pipeline.status import bridge_online
from pipeline.topics import DELIVERIES, READINGS, WARNINGS, department_topic
from sensors_sim.publisher import publish, publish_timed, reading_messages

pytestmark = pytest.mark.integration

WORKER_STATION = "qijiang-ganshui"  # the river's first station: no source upstream to trace to
BRIDGE_STATION = "qijiang-gunan"
INFLUX_STATION = "qijiang-sanjiang"


def water(station: str, ts: datetime, do: float) -> Reading:
    return Reading(
        sensor_id=f"wq-{station}",
        kind=Kind.water,
        station=station,
        district="qijiang",
        ts=ts,
        values={"do": Quantity(value=do, unit="mg/L")},
    )


def send(stack, readings: list[Reading]) -> None:
    assert publish(reading_messages(readings, stack.settings.mqtt.topic_root), stack.settings.mqtt, qos=1) == len(
        readings
    )


async def _topic_records(settings, topic: str, timeout_s: float = 20) -> list[ConsumerRecord]:
    """Every record on ``topic`` now: read from the beginning up to the end offsets (none if no such topic)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = (await consumer.topics()) and consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        values: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} to its end")
            for records in (await consumer.getmany(*tps, timeout_ms=500)).values():
                values += records
        return values
    finally:
        await consumer.stop()


def topic_values(settings, topic: str) -> list[bytes]:
    return [r.value for r in asyncio.run(_topic_records(settings, topic))]


async def _committed(settings, tp: TopicPartition) -> int:
    """The worker's committed offset on ``tp`` (-1: none); a consumer in its group that joins nothing."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, group_id=settings.worker.app_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        committed = await consumer.committed(tp)
        return -1 if committed is None else committed
    finally:
        await consumer.stop()


def warning_position(settings, warning_id: str) -> tuple[TopicPartition, int]:
    record = next(r for r in asyncio.run(_topic_records(settings, WARNINGS)) if warning_id.encode() in r.value)
    return TopicPartition(WARNINGS, record.partition), record.offset


def reread_after_restart(settings, warning_id: str) -> str:
    """Whether the worker's committed offset on the warnings topic was at or before ``warning_id``'s record
    when it was killed: then the new worker reads the warning again, and only the deliveries table
    keeps it from delivering it twice."""
    tp, offset = warning_position(settings, warning_id)
    committed = asyncio.run(_committed(settings, tp))
    verdict = "re-read by the new worker" if committed <= offset else "not re-read (already committed)"
    return f"warning at offset {offset} of {tp.topic}[{tp.partition}], committed offset {committed}: {verdict}"


def warnings_on_topic(settings) -> list[Warning]:
    return [Warning.model_validate_json(v) for v in topic_values(settings, WARNINGS)]


def deliveries_on_topic(settings, incident_id: str) -> list[Delivery]:
    return [
        d for d in map(Delivery.model_validate_json, topic_values(settings, DELIVERIES)) if d.incident_id == incident_id
    ]


def log_since(process: Background, offset: int) -> str:
    with open(process.log_file, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def log_size(process: Background) -> int:
    return process.log_file.stat().st_size if process.log_file.exists() else 0


def sigkill(process: Background) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.proc.wait(10)


def count_readings(stack, sensor_id: str, since: datetime, until: datetime) -> int:
    """Points in InfluxDB, which keeps one per series and time: a duplicate forwarded twice counts once."""
    query = (
        f"SELECT count(\"do\") FROM readings WHERE sensor_id = '{sensor_id}' "
        f"AND time >= '{influx_time(since)}' AND time <= '{influx_time(until)}'"
    )
    series = influxql(stack.settings.influx, query)
    return int(series[0]["values"][0][1]) if series else 0


@pytest.fixture(autouse=True)
def leave_the_stack_working(stack):
    """Whatever a test did: a live worker and bridge, and InfluxDB up, for the tests that run after it."""
    yield
    settings = stack.settings
    influx = InfluxService(settings)
    if not influx.healthy():
        influx.start()
    if not stack.worker.alive():
        stack.worker = Background("worker", ["worker"], settings)
    if not stack.bridge.alive():
        stack.bridge = Background("bridge", ["bridge"], settings)
        bridge_online(settings, stack.bridge.pid, timeout_s=60)


def test_worker_killed_mid_incident_delivers_each_warning_once_and_recovers_its_tables(stack):
    """Kills: the Faust worker (SIGKILL) right after the incident's first warning is delivered, before
    its offsets are (likely) committed; then starts a new worker.
    Counts: every warning of the incident on each department's ``to.<department>`` topic (exactly 1
    per warning and department), the ``deliveries`` records per (warning, department, channel) on the
    topic and in InfluxDB (exactly 1 each), and the incident ids of the station's warnings (1: the
    incident opened before the kill is escalated after it, not re-opened).
    """
    settings = stack.settings
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=60)
    # three readings below the class III DO limit (5 mg/L): the persistence rule raises a blue alert
    send(stack, [water(WORKER_STATION, start + timedelta(minutes=10 * i), 4.0) for i in range(3)])

    def first_warning() -> Warning | None:
        return next((w for w in warnings_on_topic(settings) if w.station == WORKER_STATION and w.ts >= start), None)

    w1 = wait_until(first_warning, 90, 0.5, what="the first warning")
    incident = w1.incident_id
    assert incident.startswith("water:qijiang-river:"), incident
    # kill as soon as its deliveries are recorded: the delivery agent has just updated its table and
    # the warnings offset is most likely not committed yet (Faust commits every 2.8 s)
    wait_until(
        lambda: (
            len({d.delivery_id for d in deliveries_on_topic(settings, incident) if d.warning_id == w1.warning_id})
            >= len(w1.departments)
        ),
        60,
        0.1,
        what="the first warning's deliveries",
    )
    old = stack.worker
    offset = log_size(old)
    sigkill(old)
    killed = time.monotonic()
    stack.worker = Background("worker", ["worker"], settings)  # later tests and the fixture's teardown use this one
    print(
        f"\n[faults] worker pid {old.pid} killed (SIGKILL) after warning {w1.warning_id} ({w1.tier.value}) "
        f"was delivered to {len(w1.departments)} departments; {reread_after_restart(settings, w1.warning_id)}"
    )
    wait_until(
        lambda: "]: Ready" in log_since(stack.worker, offset) or not stack.worker.alive(),
        120,
        0.5,
        what="the new worker",
    )
    assert stack.worker.alive(), stack.worker.log_tail(40)
    ready_s = time.monotonic() - killed

    # one reading far below the limit: an escalation (severity 0.8, red) only if the persistence table
    # (3 readings already running) and the incidents table (the open incident) were recovered
    sent = time.monotonic()
    send(stack, [water(WORKER_STATION, start + timedelta(minutes=30), 1.0)])

    def escalated() -> list[Warning] | None:
        ours = [w for w in warnings_on_topic(settings) if w.station == WORKER_STATION and w.ts >= start]
        return ours if any(w.tier.rank > w1.tier.rank for w in ours) else None

    ours = wait_until(escalated, 120, 0.5, what="the escalated warning after the restart")
    escalation_s = time.monotonic() - sent
    assert {w.incident_id for w in ours} == {incident}, [(w.warning_id, w.tier.value) for w in ours]
    w2 = max(ours, key=lambda w: w.tier.rank)
    warnings = {
        w.warning_id: w for w in warnings_on_topic(settings) if w.incident_id == incident
    }  # with any source warning

    channels = set(settings.delivery.channels) - {"webhook"}  # no webhook URLs in the tests
    expected = {(w.warning_id, d, c) for w in warnings.values() for d in w.departments for c in channels}

    def all_recorded() -> Counter | None:
        rows = influxql(
            settings.influx,
            f'SELECT "warning_id", "department", "channel" FROM deliveries '
            f"WHERE incident_id = '{incident}' AND \"ok\" = 'true'",
        )
        counted = Counter((r[1], r[2], r[3]) for s in rows for r in s["values"])
        return counted if set(counted) >= expected else None

    in_influx = wait_until(all_recorded, 90, 0.5, what="every delivery in InfluxDB")
    on_topic = Counter((d.warning_id, d.department, d.channel) for d in deliveries_on_topic(settings, incident) if d.ok)
    fed = Counter()
    for department in {d for w in warnings.values() for d in w.departments}:
        for value in topic_values(settings, department_topic(department)):
            w = Warning.model_validate_json(value)
            if w.incident_id == incident:
                fed[(w.warning_id, department)] += 1
    print(
        f"[faults] new worker ready {ready_s:.1f} s after the kill; escalated {w1.tier.value} -> {w2.tier.value} "
        f"under the same incident {incident} {escalation_s:.1f} s after the reading; "
        f"{len(warnings)} warnings, {len(expected)} deliveries "
        f"expected; to.<department> records per (warning, department): {sorted(Counter(fed.values()).items())}; "
        f"deliveries records per (warning, department, channel): topic {sorted(Counter(on_topic.values()).items())}, "
        f"InfluxDB {sorted(Counter(in_influx.values()).items())}"
    )
    assert w2.incident_id == incident and w1.warning_id in warnings and w2.warning_id in warnings
    assert fed == Counter({(w, d) for w, d, _ in expected}), fed  # each warning once on each department's topic
    assert on_topic == Counter(expected), on_topic
    assert in_influx == Counter(expected), in_influx


def test_bridge_killed_while_publishing_loses_no_reading(stack):
    """Kills: the bridge (SIGKILL) about 2 s into 6 s of QoS 1 publishing; then starts a new bridge on
    the same persistent MQTT session.
    Counts: the readings acknowledged by Mosquitto, the records forwarded to ``readings.water``
    (duplicates allowed: at-least-once), and the readings in InfluxDB (one point per timestamp) for
    the sensor in a window 35 days ago: equal to the number sent.
    """
    settings = stack.settings
    n = 300
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=35)
    readings = [water(BRIDGE_STATION, start + timedelta(minutes=i), 7.0 + 0.1 * (i % 7)) for i in range(n)]
    messages = [
        (20 * i, topic, payload)
        for i, (topic, payload) in enumerate(reading_messages(readings, settings.mqtt.topic_root))
    ]
    acked: list[int] = []
    published = [0]

    def paced():
        for message in messages:
            yield message
            published[0] += 1

    publisher = threading.Thread(
        target=lambda: acked.append(publish_timed(paced(), settings.mqtt, speed=1.0, qos=1, timeout_s=90))
    )
    publisher.start()
    try:
        time.sleep(2.0)
        old = stack.bridge
        sigkill(old)
        killed, before_kill = time.monotonic(), published[0]
        stack.bridge = Background("bridge", ["bridge"], settings)
        bridge_online(settings, stack.bridge.pid, timeout_s=60)
        downtime_s, while_down = time.monotonic() - killed, published[0] - before_kill
    finally:
        publisher.join(120)
    assert acked == [n]
    sensor = f"wq-{BRIDGE_STATION}"
    back = time.monotonic()
    counted = wait_until(
        lambda: (c := count_readings(stack, sensor, start, readings[-1].ts)) == n and c,
        60,
        0.5,
        what=f"{n} readings in InfluxDB",
    )
    in_influx_s = time.monotonic() - back
    ours = {(r.sensor_id, r.ts) for r in readings}
    forwarded = [
        (r.sensor_id, r.ts)
        for v in topic_values(settings, READINGS[Kind.water])
        if sensor.encode() in v
        for r in parse_batch(v)
        if r.sensor_id == sensor and start <= r.ts <= readings[-1].ts
    ]
    print(
        f"\n[faults] bridge pid {old.pid} killed (SIGKILL) after {before_kill} of {n} readings were published; "
        f"new bridge online {downtime_s:.1f} s later ({while_down} published meanwhile); "
        f"{n} sent (QoS 1), {acked[0]} acknowledged by Mosquitto, {len(forwarded)} forwarded to Kafka "
        f"({len(forwarded) - len(set(forwarded))} duplicates), {counted} in InfluxDB "
        f"({in_influx_s:.1f} s after the publisher finished)"
    )
    assert set(forwarded) == ours
    assert counted == n


def test_readings_sent_while_influxdb_is_down_are_written_when_it_is_back(stack):
    """Stops: the InfluxDB service process (SIGTERM) for 30 s while readings are published; then starts it again.
    Counts: the readings in InfluxDB (one point per timestamp) for the sensor in a window 25 days ago:
    equal to the number sent, once InfluxDB is back (the sink retries its batch until it is written).
    """
    settings = stack.settings
    n = 120
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=25)
    readings = [water(INFLUX_STATION, start + timedelta(minutes=i), 7.0 + 0.1 * (i % 7)) for i in range(n)]
    influx = InfluxService(settings)
    offset = log_size(stack.worker)
    influx.stop()
    stopped = time.monotonic()
    try:
        assert not influx.healthy()
        send(stack, readings)
        retries = wait_until(
            lambda: log_since(stack.worker, offset).count("InfluxDB write failed"),
            30,
            0.5,
            what="the sink to retry its write",
        )
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))
        retries = log_since(stack.worker, offset).count("InfluxDB write failed")
    finally:
        influx.start()
    back = time.monotonic()
    outage_s = back - stopped
    sensor = f"wq-{INFLUX_STATION}"
    counted = wait_until(
        lambda: (c := count_readings(stack, sensor, start, readings[-1].ts)) == n and c,
        90,
        0.5,
        what=f"{n} readings in InfluxDB",
    )
    print(
        f"\n[faults] InfluxDB down {outage_s:.1f} s; {n} readings sent meanwhile; the sink's writes failed "
        f"and were retried {retries} times; all {counted} in InfluxDB {time.monotonic() - back:.1f} s after it was back"
    )
    assert counted == n
