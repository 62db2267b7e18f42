"""The closed loop on the real services: a warning's sensed, warned and delivered times, its
deliveries to each department's topic, an operator's acknowledgement and closure through
`yuflow warnings ack|close`, all recorded in InfluxDB; an action on an incident that does not
exist, or out of order, is rejected with the reason (non-zero exit, a dead letter, nothing
recorded); and readings sent in real time are warned and delivered within a second."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.influx import influxql
from pipeline.operators import follow_warnings
from pipeline.processes import wait_until
from pipeline.schemas import DeadLetter, Kind, Quantity, Reading
from pipeline.topics import DEADLETTER, department_topic
from sensors_sim.publisher import publish, reading_messages
from tests.integration.conftest import yuflow
from tests.integration.test_end_to_end import consume_all

pytestmark = pytest.mark.integration
STATION = "huaxi-nanquan"  # a river no other test uses (an incident is a river's: tracing tests watch the Ruxi)


def lifecycle_stages(stack, incident_id: str) -> list[str]:
    series = influxql(
        stack.settings.influx, f'SELECT "stage", "actor" FROM lifecycle WHERE incident_id = \'{incident_id}\''
    )
    return [row[1] for s in series for row in s["values"]]


def test_a_warning_is_acknowledged_and_closed_by_operators_and_every_stage_is_in_influxdb(stack):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    low_do = [
        Reading(
            sensor_id=f"wq-{STATION}",
            kind=Kind.water,
            station=STATION,
            district="banan",
            ts=start + timedelta(minutes=10 * i),
            values={"do": Quantity(value=2.5, unit="mg/L")},
        )
        for i in range(4)
    ]
    assert publish(reading_messages(low_do, stack.settings.mqtt.topic_root), stack.settings.mqtt) == 4

    async def first_warning():
        async for w in follow_warnings(stack.settings, from_beginning=True, timeout_s=90):
            if w.station == STATION and w.ts >= start:
                return w
        return None

    warning = asyncio.run(first_warning())
    assert warning is not None, stack.worker.log_tail(40)
    wait_until(
        lambda: {"sensed", "warned"} <= set(lifecycle_stages(stack, warning.incident_id)),
        60,
        what="sensed and warned in InfluxDB",
    )

    # delivered to each department's own topic, each delivery recorded
    topic = department_topic(warning.departments[-1])
    fed = asyncio.run(
        consume_all(stack.settings, topic, 30, lambda got: any(warning.warning_id.encode() in v for v in got))
    )
    assert any(warning.warning_id.encode() in v for v in fed)
    deliveries = (
        f'SELECT "since_reading_s", "department" FROM deliveries WHERE warning_id = \'{warning.warning_id}\' '
        "AND \"channel\" = 'topic'"
    )
    rows = wait_until(
        lambda: (
            [r for s in influxql(stack.settings.influx, deliveries) for r in s["values"]]
            if len(warning.departments) <= sum(len(s["values"]) for s in influxql(stack.settings.influx, deliveries))
            else None
        ),
        60,
        what="the deliveries in InfluxDB",
    )
    assert {r[2] for r in rows} == set(warning.departments)
    wait_until(lambda: "delivered" in lifecycle_stages(stack, warning.incident_id), 60, what="delivered in InfluxDB")

    # a review before the closure is out of order: rejected with the reason, and not recorded
    early = yuflow("warnings", "review", warning.incident_id, exit_code=1)
    assert "rejected" in early and "before closed" in early
    assert "accepted" in yuflow("warnings", "ack", warning.warning_id, "--by", "巴南区水利局 值班员")
    wait_until(
        lambda: "acknowledged" in lifecycle_stages(stack, warning.incident_id),
        60,
        what="the acknowledgement in InfluxDB",
    )
    yuflow(
        "warnings",
        "close",
        warning.incident_id,
        "--by",
        "巴南区水利局 值班员",
        "--note",
        "sampling confirmed; plant fixed",
    )
    stages = wait_until(
        lambda: (s := lifecycle_stages(stack, warning.incident_id)) and "closed" in s and s, 60, what="the closure"
    )
    assert stages.index("sensed") < stages.index("acknowledged") < stages.index("closed") and "reviewed" not in stages

    # acknowledging an incident that never was: rejected at once with the reason, a dead letter that
    # says why (no traceback), nothing in the incident's record, and the agent runs on
    bogus = "water:nonexistent:1"
    refused = yuflow("warnings", "ack", bogus, exit_code=1)
    assert "no open incident" in refused
    dead = asyncio.run(consume_all(stack.settings, DEADLETTER, 30, lambda got: any(bogus.encode() in v for v in got)))
    record = next(DeadLetter.model_validate_json(v) for v in dead if bogus.encode() in v)
    assert record.stage == "actions" and record.code == "rejected_action" and "no open incident" in record.reason
    assert lifecycle_stages(stack, bogus) == []
    log = stack.worker.log_tail(400)
    logged = log.rfind(f"rejected an operator's action: no open incident {bogus}")
    assert logged >= 0 and "Traceback" not in log[logged : logged + 400], log[-2000:]
    assert stack.worker.alive()


def test_readings_sent_in_real_time_are_warned_and_delivered_within_a_second(stack):
    import time

    def low_do(station: str, district: str) -> list[Reading]:
        return [
            Reading(
                sensor_id=f"wq-{station}",
                kind=Kind.water,
                station=station,
                district=district,
                ts=datetime.now(UTC),
                values={"do": Quantity(value=2.0, unit="mg/L")},
            )
        ]

    # warm up: a warning and its deliveries elsewhere, so every agent has joined and fetched once
    warm = "changjiang-mudong"
    for _ in range(3):
        publish(reading_messages(low_do(warm, "banan"), stack.settings.mqtt.topic_root), stack.settings.mqtt)
        time.sleep(0.2)
    wait_until(
        lambda: influxql(
            stack.settings.influx,
            'SELECT count("since_reading_s") FROM deliveries WHERE incident_id =~ /^water:changjiang:/',
        ),
        90,
        what="the warm-up deliveries",
    )
    station = "liangtan-xiyong"
    readings = []
    for _ in range(4):  # at 1x speed: each reading stamped when it is sent; the third completes the finding
        reading = low_do(station, "shapingba")
        assert publish(reading_messages(reading, stack.settings.mqtt.topic_root), stack.settings.mqtt) == 1
        readings += reading
        time.sleep(0.5)
    query = (
        f'SELECT "since_reading_s" FROM deliveries WHERE "channel" = \'topic\' AND incident_id =~ /^water:liangtan:/ '
        f"AND time >= '{readings[0].ts.isoformat().replace('+00:00', 'Z')}'"
    )
    series = wait_until(lambda: influxql(stack.settings.influx, query), 60, what="the deliveries in InfluxDB")
    latencies = [row[1] for s in series for row in s["values"]]
    print(f"[latency] reading -> delivered, per department: {sorted(latencies)}")
    assert latencies and max(latencies) < 1.0, (
        latencies
    )  # reading -> alert -> warning -> delivered, recorded per department


def test_from_the_tail_to_an_acknowledgement_with_only_what_the_tail_printed(stack):
    """What an operator on duty does: watch the tail (here piped, so a line per warning), copy the id
    it shows, acknowledge; then the incident list says who acknowledged, and `yuflow status` is green."""
    station, district = "huaxi-lijiatuo", "banan"  # after the first test closed its incident on this river: a new one
    now = datetime.now(UTC).replace(microsecond=0)
    low_do = [
        Reading(
            sensor_id=f"wq-{station}",
            kind=Kind.water,
            station=station,
            district=district,
            ts=now - timedelta(minutes=10 * (3 - i)),
            values={"do": Quantity(value=2.0, unit="mg/L")},
        )
        for i in range(4)
    ]
    assert publish(reading_messages(low_do, stack.settings.mqtt.topic_root), stack.settings.mqtt) == 4

    def shown() -> str | None:
        tail = yuflow("warnings", "tail", "--from-beginning", "--timeout", "4")
        return next((line for line in tail.splitlines() if f"/{station}" in line), None)

    line = wait_until(shown, 90, what="the warning in the tail")
    warning_id = re.search(r"\bid (\S+)$", line).group(1)
    assert "accepted" in yuflow("warnings", "ack", warning_id, "--by", "涪陵区水利局 值班员")
    incident_id = ":".join(warning_id.split(":")[:3])

    def listed() -> str | None:
        rows = [json.loads(x) for x in yuflow("incidents", "--open", "--json").splitlines()]
        row = next((r for r in rows if r["incident_id"] == incident_id), None)
        return row if row and row["acknowledged_by"] else None

    row = wait_until(listed, 30, what="the acknowledgement in the incident list")
    assert row["acknowledged_by"] == "涪陵区水利局 值班员" and row["closed"] is False and row["station"] == station
    status = yuflow("status", exit_code=0)
    assert "worker" in status and "online" in status and "consumer lag" in status
