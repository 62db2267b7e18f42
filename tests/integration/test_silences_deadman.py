"""Maintenance windows and the deadman watch on services of their own (short limits): a sensor that
stops reporting raises one offline alert, which clears when it reports again; a silenced station
raises no warning, its alert is recorded as suppressed, and the silence is in InfluxDB."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.influx import influxql
from pipeline.processes import wait_until
from pipeline.schemas import Kind, Quantity, Reading
from sensors_sim.publisher import publish, reading_messages
from tests.integration.conftest import own_services, yuflow

pytestmark = pytest.mark.integration
OFFLINE_AFTER_S = 8


def send(settings, station: str, district: str, do_mg_l: float, ts: datetime) -> None:
    reading = Reading(
        sensor_id=f"wq-{station}",
        kind=Kind.water,
        station=station,
        district=district,
        ts=ts,
        values={"do": Quantity(value=do_mg_l, unit="mg/L")},
    )
    assert publish(reading_messages([reading], settings.mqtt.topic_root), settings.mqtt) == 1


def rows(settings, query: str) -> list:
    return [r for s in influxql(settings.influx, query) for r in s["values"]]


def test_an_offline_sensor_alerts_once_and_clears_and_a_silenced_station_warns_no_one(tmp_path):
    with own_services(
        tmp_path,
        YUFLOW_DEADMAN__WATER_S=str(OFFLINE_AFTER_S),
        YUFLOW_DEADMAN__CHECK_INTERVAL_S="1",
        YUFLOW_INFLUX__FLUSH_INTERVAL_S="0.5",
    ) as settings:
        # deadman: a live sensor that stops, stays silent for several limits, then reports again
        quiet = "huaxi-nanquan"
        for _ in range(3):
            send(settings, quiet, "banan", 8.0, datetime.now(UTC))
            time.sleep(0.5)
        offline = (
            'SELECT "value", "alert_id" FROM alerts WHERE "rule" = \'sensor_offline\' '
            f"AND \"sensor_id\" = 'wq-{quiet}' AND \"resolved\" = '%s'"
        )
        wait_until(lambda: rows(settings, offline % "false"), 60, what="the offline alert")
        time.sleep(3 * OFFLINE_AFTER_S)  # still silent: no second alert
        assert len(rows(settings, offline % "false")) == 1
        send(settings, quiet, "banan", 8.0, datetime.now(UTC))
        wait_until(lambda: rows(settings, offline % "true"), 30, what="the offline alert resolved")
        warned = [
            json.loads(x)
            for x in yuflow("warnings", "tail", "--from-beginning", "--json", "--timeout", "4").splitlines()
        ]
        assert any(w["station"] == quiet and "offline" in w["title"] and w["tier"] == "blue" for w in warned)

        # a silence: the station's low oxygen is held back and recorded; the control station warns
        silenced, control = "liangtan-xiyong", "liangtan-tongjiaxi"
        out = yuflow(
            "silence",
            "add",
            "--station",
            silenced,
            "--until",
            "1h",
            "--reason",
            "在线监测站维护 maintenance",
            "--by",
            "运维",
        )
        silence_id = out.split()[1].rstrip(":")
        assert silence_id in yuflow("silence", "list")
        time.sleep(2)  # the worker reads the silence from its topic
        start = datetime.now(UTC) - timedelta(minutes=40)
        for i in range(4):
            for station, district in ((silenced, "shapingba"), (control, "beibei")):
                send(settings, station, district, 2.0, start + timedelta(minutes=10 * i))
        suppressed = (
            f'SELECT "alert_id", "reason" FROM suppressed WHERE "silence_id" = \'{silence_id}\' '
            f"AND \"station\" = '{silenced}'"
        )
        wait_until(lambda: rows(settings, suppressed), 60, what="the suppressed alert in InfluxDB")

        def control_warned():
            tail = [
                json.loads(x)
                for x in yuflow("warnings", "tail", "--from-beginning", "--json", "--timeout", "3").splitlines()
            ]
            return tail if any(w["station"] == control for w in tail) else None

        tail = wait_until(control_warned, 60, what="the control station's warning")
        assert not any(w["station"] == silenced for w in tail)
        assert rows(settings, f'SELECT "reason", "until" FROM silences WHERE "silence_id" = \'{silence_id}\'')
        yuflow("silence", "remove", silence_id)
        assert silence_id not in yuflow("silence", "list")
