"""Rain gauges, people counters and cameras on MQTT -> bridge -> Kafka -> rain, crowd and camera
agents -> warnings, on the real services (the session's stack)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pipeline.city import counter_sensor_id, default_city
from pipeline.operators import follow_warnings
from pipeline.schemas import CameraDetection, Kind, Quantity, Reading, Tier
from sensors_sim.publisher import publish, publish_timed, reading_messages

pytestmark = pytest.mark.integration


def warnings_where(settings, match, timeout_s: float = 90):
    async def follow():
        async for w in follow_warnings(settings, from_beginning=True, timeout_s=timeout_s):
            if match(w):
                return w
        return None

    return asyncio.run(follow())


def test_a_surge_counted_and_filmed_at_a_zone_is_warned_ahead_with_a_dispersal_plan(stack):
    city = default_city()
    zone = city.zones["raffles-plaza"]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    readings: list[Reading] = []
    for minute in range(40):  # 0.5 -> 1.1 persons/m²: crosses into level E (congestion) only at the very end
        density = 0.5 + 0.6 * minute / 39
        persons = density * zone.area_m2
        ts = start + timedelta(minutes=minute)
        readings.append(
            Reading(
                sensor_id=counter_sensor_id(zone.id),
                kind=Kind.crowd,
                station=zone.id,
                district=zone.district,
                ts=ts,
                values={
                    "count": Quantity(value=round(persons), unit="persons"),
                    "flow_in": Quantity(value=round(zone.area_m2 * 0.6 / 39 + persons / 90, 1), unit="persons/min"),
                    "flow_out": Quantity(value=round(persons / 90, 1), unit="persons/min"),
                },
            )
        )
        if minute % 2 == 0:
            readings.append(
                CameraDetection(
                    sensor_id="cam-raffles-plaza",
                    station=zone.id,
                    district=zone.district,
                    ts=ts,
                    detection="crowd",
                    confidence=0.9,
                    values={"person_count": Quantity(value=round(persons * 1.03), unit="persons")},
                )
            )
    # in event-time order at 120x (20 s): flat out, the counters would outrun the camera agent's extra hop
    timed = [
        (int((r.ts - start).total_seconds() * 1000), topic, payload)
        for r, (topic, payload) in zip(readings, reading_messages(readings, stack.settings.mqtt.topic_root))
    ]
    assert publish_timed(timed, stack.settings.mqtt, speed=120) == len(readings)

    warning = warnings_where(
        stack.settings,
        lambda w: w.category.value == "crowd" and w.station == zone.id and w.tier.rank >= Tier.orange.rank,
    )
    assert warning is not None, stack.worker.log_tail(40)
    crossing = start + timedelta(minutes=39)
    assert warning.ts <= crossing - timedelta(minutes=10)  # forecast: warned before the crossing
    assert {"public_security", "metro_operator", "transport"} <= set(warning.departments)
    plan = "\n".join(warning.checklist)
    assert "朝天门站" in plan and "来福士购物中心地下连廊" in plan  # the zone's metro station and passages
    assert "camera cam-raffles-plaza" in warning.message  # fused with the camera's count


def test_a_storm_over_the_gauges_is_warned_by_district_with_its_risk_points(stack):
    city = default_city()
    ids = list(city.gauges)
    x = np.array([city.gauges[g].x_km for g in ids])
    y = np.array([city.gauges[g].y_km for g in ids])
    step = 300
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(seconds=31 * step)
    start -= timedelta(minutes=start.minute % 5)
    readings = []
    for k in range(30):  # a 90 mm/h cell, 6 km wide, crossing west to east at 8 km/h
        cx, cy = x.min() - 5 + 8 * (k + 0.5) * step / 3600, float(np.median(y))
        rates = 90.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 6.0**2))
        ts = start + timedelta(seconds=(k + 1) * step)
        readings += [
            Reading(
                sensor_id=g,
                kind=Kind.rain,
                station=g,
                district=city.gauges[g].district,
                ts=ts,
                values={
                    "rain": Quantity(value=round(float(r) * step / 3600, 2), unit="mm"),
                    "interval_s": Quantity(value=step, unit="s"),
                },
            )
            for g, r in zip(ids, rates)
        ]
    assert publish(reading_messages(readings, stack.settings.mqtt.topic_root), stack.settings.mqtt) == len(readings)

    warning = warnings_where(
        stack.settings, lambda w: w.category.value == "rain" and w.tier.rank >= Tier.orange.rank, timeout_s=120
    )
    assert warning is not None, stack.worker.log_tail(40)
    assert warning.station == warning.district and "暴雨" in warning.message
    assert "emergency_management" in warning.departments
    assert any("risk point" in item for item in warning.checklist) or "0 risk point" in warning.message


def test_the_warnings_on_the_stream_export_as_valid_cap(stack, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from lxml import etree

    schema = etree.XMLSchema(etree.parse(str(Path(__file__).parents[1] / "data" / "CAP-v1.2.xsd")))
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "warnings", "export", "--out", str(tmp_path), "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr
    files = sorted(tmp_path.glob("*.xml"))
    assert files, out.stdout  # the rain and crowd warnings of this module at least
    for f in files:
        schema.assertValid(etree.parse(str(f)))
    severities = {
        etree.parse(str(f)).findtext(
            "{urn:oasis:names:tc:emergency:cap:1.2}info/{urn:oasis:names:tc:emergency:cap:1.2}severity"
        )
        for f in files
    }
    assert severities & {"Severe", "Extreme"}  # the orange-or-higher rain and crowd warnings
