"""MQTT -> bridge -> Kafka -> Faust agents -> warnings and InfluxDB, on real services, fed by the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.city import default_city
from pipeline.influx import influxql
from pipeline.operators import follow_warnings
from pipeline.processes import wait_until
from pipeline.schemas import DeadLetter, Kind, Quantity, Reading, Tier, parse_batch, utc_now
from pipeline.topics import DEADLETTER, READINGS, mqtt_topic
from sensors_sim.demo import SAG_SENSOR, demo_recording
from sensors_sim.publisher import publish, publish_timed, reading_messages
from sensors_sim.recording import messages

pytestmark = pytest.mark.integration
TRACING_TEST_STATIONS = {st.id for st in default_city().stations.values() if st.river in ("ruxi", "longmen-he")}


async def consume_all(settings, topic: str, timeout_s: float, stop) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not stop(values):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values += [r.value for r in records]
    finally:
        await consumer.stop()
    return values


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def demo_run(stack):
    """The simulator's 'demo' scenario (a DO sag at Puhe Zhaixi Bridge, one malformed payload) over MQTT."""
    recording, shift = demo_recording()
    # the Ruxi basin is the tracing test's: its sensors' screens must learn only that test's history
    # (the demo's "now" comes after that history, which would then arrive out of order)
    frame = recording.frame[~recording.frame["site"].isin(TRACING_TEST_STATIONS)]
    sent = publish_timed(messages(frame, stack.settings.mqtt.topic_root, shift), stack.settings.mqtt)
    assert sent == frame["msg"].nunique()
    return recording, shift


def test_do_sag_on_mqtt_yields_a_warning_that_escalates_to_the_true_tier(stack, demo_run):
    recording, shift = demo_run
    since = datetime.fromtimestamp((int(recording.frame["ts_ms"].min()) + shift) / 1000, UTC)
    sag = recording.truth.of_type("do_sag")[0]

    async def river_warnings():
        found = []
        async for w in follow_warnings(stack.settings, from_beginning=True, timeout_s=90):
            if w.incident_id.startswith("water:puhe:") and w.ts >= since:
                found.append(w)
                if max(x.tier.rank for x in found) >= Tier(sag.expected_tier).rank:
                    return found
        return found

    warnings = asyncio.run(river_warnings())
    assert warnings, stack.worker.log_tail(40)
    first = warnings[0]
    assert first.district == "qijiang" and "grassroots_governance_centre" in first.departments
    assert all("puhe-zhaixi-bridge" in m for w in warnings for m in w.affected)
    # warned after the sag began and no later than 30 min after DO crossed the limit (statistical
    # screening may warn before the crossing; the limit rule needs 3 readings past it)
    assert (
        sag.start.timestamp() * 1000 + shift
        <= first.ts.timestamp() * 1000
        <= sag.expected_detection.timestamp() * 1000 + shift + 30 * 60_000
    )
    # one incident for the river, across its parameters (DO, NH3-N, COD), each warning a higher tier
    assert len({w.incident_id for w in warnings}) == 1
    assert [w.tier.rank for w in warnings] == sorted({w.tier.rank for w in warnings})
    assert max(w.tier.rank for w in warnings) == Tier(sag.expected_tier).rank
    worst = max(warnings, key=lambda w: w.tier.rank)
    assert "water_bureau" in worst.departments and "district" in worst.levels


def test_readings_are_queryable_in_influxdb(stack, demo_run):
    recording, shift = demo_run
    frame = recording.frame
    do_rows = frame[(frame["parameter"] == "do") & ~frame["malformed"] & (frame["sensor_id"] == SAG_SENSOR)]
    since, until = iso(int(do_rows["ts_ms"].min()) + shift), iso(int(do_rows["ts_ms"].max()) + shift)
    query = (
        f'SELECT count("do"), min("do") FROM readings WHERE sensor_id = \'{SAG_SENSOR}\' '
        f"AND time >= '{since}' AND time <= '{until}'"
    )

    def counted():
        series = influxql(stack.settings.influx, query)
        return series if series and series[0]["values"][0][1] == do_rows["ts_ms"].nunique() else None

    series = wait_until(counted, 60, what="readings in InfluxDB")
    assert series[0]["values"][0][2] == pytest.approx(do_rows["value"].min())
    alerts = f"SELECT count(\"severity\") FROM alerts WHERE station = 'puhe-zhaixi-bridge' AND time >= '{since}'"
    assert wait_until(lambda: influxql(stack.settings.influx, alerts), 30, what="the alert in InfluxDB")


def test_simulated_malformed_payload_is_dead_lettered(stack, demo_run):
    recording, shift = demo_run
    broken = [
        p for _, _, p in messages(recording.frame[recording.frame["malformed"]], stack.settings.mqtt.topic_root, shift)
    ]
    assert len(broken) == 1

    def records(got: list[bytes]) -> list[DeadLetter]:
        return [r for r in map(DeadLetter.model_validate_json, got) if r.payload == broken[0].decode()]

    record = records(asyncio.run(consume_all(stack.settings, DEADLETTER, 30, records)))[0]
    assert record.code == "invalid" and "Invalid JSON" in record.reason


def test_malformed_payload_is_dead_lettered_and_the_bridge_keeps_running(stack):
    settings = stack.settings
    topic = mqtt_topic(settings.mqtt.topic_root, "jiangjin", "water", "wq-changjiang-jijiang")
    marker = f"broken-{time.time_ns()}"
    after = Reading(
        sensor_id="wq-changjiang-jijiang",
        kind=Kind.water,
        station="changjiang-jijiang",
        district="jiangjin",
        ts=utc_now(),
        values={"do": Quantity(value=7.5, unit="mg/L")},
    )
    messages_ = [(topic, f'{{"sensor_id": "{marker}", '.encode()), *reading_messages([after], settings.mqtt.topic_root)]
    assert publish(messages_, settings.mqtt) == 2

    dead = asyncio.run(consume_all(settings, DEADLETTER, 30, lambda got: any(marker.encode() in v for v in got)))
    record = next(DeadLetter.model_validate_json(v) for v in dead if marker.encode() in v)
    assert record.code == "invalid" and "Invalid JSON" in record.reason
    assert record.source_topic == topic and record.stage == "bridge"

    def forwarded_readings(records: list[bytes]) -> list[Reading]:
        return [r for v in records if after.sensor_id.encode() in v for r in parse_batch(v)]

    forwarded = asyncio.run(
        consume_all(settings, READINGS[Kind.water], 30, lambda got: after in forwarded_readings(got))
    )
    assert after in forwarded_readings(forwarded)
    assert stack.bridge.alive()


def tail(*options: str, timeout_s: int = 60) -> str:
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "warnings",
        "tail",
        "--from-beginning",
        "--max",
        "1",
        "--timeout",
        str(timeout_s),
    ]
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([*command, *options], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_warnings_tail_follows_the_topic(stack, demo_run):
    line = tail("--district", "qijiang")  # piped: a line per warning (a terminal gets the live table)
    assert (
        line.count("\n") == 1
        and " qijiang/" in line
        and re.search(r" id water:[a-z-]+:\d+:(blue|yellow|orange|red)", line)
    ), line
    lines = tail("--district", "qijiang", "--department", "water_bureau", "--json").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["district"] == "qijiang"
    assert (
        tail("--district", "chengkou", "--json", timeout_s=5).strip() == ""
    )  # no sensors there: filtered out; stops at --timeout


def test_the_readme_example_reading_sent_with_mosquitto_pub_is_found_with_yuflow_query(stack):
    """The README's two lines as a user runs them (a real MQTT client, then the query command),
    pointed at this session's broker."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S) if "mosquitto_pub" in b)
    publish_line, query_line = block.strip().splitlines()
    # this session's broker and data directory instead of the demo's (the login is the same: see the README)
    publish_line = publish_line.replace("-p 1883", f"-p {stack.settings.mqtt.port}")
    publish_line = publish_line.replace(".yuflow/secrets/", f"{stack.settings.data_path}/secrets/")
    done = subprocess.run(["bash", "-c", publish_line], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    query = shlex.split(query_line)[1:]  # after `yuflow`

    def found() -> str | None:
        out = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *query],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
        return out.stdout if out.returncode == 0 and "4.2" in out.stdout else None

    assert "7.3" in wait_until(found, 30, what="the README's reading in InfluxDB")
