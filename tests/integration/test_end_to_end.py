"""MQTT -> bridge -> Kafka -> Faust agents -> warnings and InfluxDB, on real services."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.influx import influxql
from pipeline.operators import follow_warnings
from pipeline.processes import wait_until
from pipeline.schemas import DeadLetter, Kind, Quantity, Reading, Tier, utc_now
from pipeline.topics import DEADLETTER, READINGS, mqtt_topic
from sensors_sim.publisher import publish, reading_messages

pytestmark = pytest.mark.integration


def water_series(sensor_id: str, station: str, do_values: list[float], end_offset_h: float, district: str = "qijiang") -> list[Reading]:
    end = utc_now() - timedelta(hours=end_offset_h)
    return [
        Reading(
            sensor_id=sensor_id,
            kind=Kind.water,
            station=station,
            district=district,
            ts=end - timedelta(minutes=10 * (len(do_values) - i)),
            values={"do": Quantity(value=do, unit="mg/L"), "ph": Quantity(value=7.3, unit="pH")},
        )
        for i, do in enumerate(do_values)
    ]


async def consume_all(settings, topic: str, timeout_s: float, stop) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap, group_id=None, auto_offset_reset="earliest")
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


@pytest.fixture(scope="module")
def do_sag(stack):
    """A DO sag at Puhe Zhaixi Bridge (class III, DO >= 5 mg/L): 4 readings below 3.5 among normal ones."""
    readings = water_series("wq-puhe-zhaixi-01", "puhe-zhaixi-bridge", [7.1, 7.0, 6.8, 3.4, 3.2, 3.1, 3.3, 6.9, 7.2], end_offset_h=1)
    assert publish(reading_messages(readings, stack.settings.mqtt.topic_root), stack.settings.mqtt) == len(readings)
    return readings


def test_do_sag_on_mqtt_yields_a_warning(stack, do_sag):
    async def first_warning():
        async for w in follow_warnings(stack.settings, from_beginning=True, timeout_s=90):
            if w.station == "puhe-zhaixi-bridge" and w.ts >= do_sag[0].ts:
                return w

    warning = asyncio.run(first_warning())
    assert warning is not None, stack.worker.log_tail(40)
    assert warning.tier in (Tier.yellow, Tier.orange)  # 3.1-3.4 mg/L against a 5 mg/L limit
    assert warning.district == "qijiang" and warning.ts == do_sag[5].ts  # third low reading completes it
    assert "water_bureau" in warning.departments and "district" in warning.levels
    assert "溶解氧" in warning.message


def test_readings_are_queryable_in_influxdb(stack, do_sag):
    since = do_sag[0].ts.isoformat().replace("+00:00", "Z")
    until = do_sag[-1].ts.isoformat().replace("+00:00", "Z")
    query = f"SELECT count(\"do\"), min(\"do\") FROM readings WHERE sensor_id = 'wq-puhe-zhaixi-01' AND time >= '{since}' AND time <= '{until}'"

    def counted():
        series = influxql(stack.settings.influx, query)
        return series if series and series[0]["values"][0][1] == len(do_sag) else None

    series = wait_until(counted, 60, what="readings in InfluxDB")
    assert series[0]["values"][0][2] == pytest.approx(3.1)
    alerts = f"SELECT count(\"severity\") FROM alerts WHERE station = 'puhe-zhaixi-bridge' AND time >= '{since}'"
    assert wait_until(lambda: influxql(stack.settings.influx, alerts), 30, what="the alert in InfluxDB")


def test_malformed_payload_is_dead_lettered_and_the_bridge_keeps_running(stack):
    settings = stack.settings
    topic = mqtt_topic(settings.mqtt.topic_root, "liangping", "water", "wq-ruxi-intake-01")
    marker = f"broken-{time.time_ns()}"
    after = water_series("wq-ruxi-intake-01", "ruxi-intake", [7.5], end_offset_h=3, district="liangping")[0]
    messages = [(topic, f'{{"sensor_id": "{marker}", '.encode()), *reading_messages([after], settings.mqtt.topic_root)]
    assert publish(messages, settings.mqtt) == 2

    dead = asyncio.run(consume_all(settings, DEADLETTER, 30, lambda got: any(marker.encode() in v for v in got)))
    record = next(DeadLetter.model_validate_json(v) for v in dead if marker.encode() in v)
    assert record.code == "invalid" and "Invalid JSON" in record.reason
    assert record.source_topic == topic and record.stage == "bridge"

    forwarded = asyncio.run(consume_all(settings, READINGS[Kind.water], 30, lambda got: after.to_json() in got))
    assert after.to_json() in forwarded
    assert stack.bridge.alive()


def tail(*options: str, timeout_s: int = 60) -> str:
    command = [sys.executable, "-m", "pipeline.cli", "warnings", "tail", "--from-beginning", "--max", "1", "--timeout", str(timeout_s)]
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([*command, *options], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_warnings_tail_follows_the_topic(stack, do_sag):
    table = tail("--district", "qijiang")
    assert "Yuflow warnings" in table and "puhe-zhaixi-bridge" in table  # the rich table
    lines = tail("--district", "qijiang", "--department", "water_bureau", "--json").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["district"] == "qijiang"
    assert tail("--district", "liangping", "--json", timeout_s=5).strip() == ""  # filtered out; stops at --timeout
