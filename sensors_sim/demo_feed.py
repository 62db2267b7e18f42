"""The demo's short feed: three water stations, 10-minute samples over the last few hours, one
dissolved-oxygen sag at Puhe Zhaixi Bridge, plus one malformed payload. Seeded and reproducible."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.city import City
from pipeline.schemas import Kind, Quantity, Reading
from pipeline.topics import mqtt_topic

SAG_SENSOR = "wq-puhe-zhaixi-01"
MALFORMED_PAYLOAD = b'{"sensor_id": "wq-puhe-upper-01", "kind": "water", "values": {"do": '  # cut off mid-message


@dataclass(frozen=True)
class DemoFeed:
    readings: list[Reading]
    sag_start: datetime
    sag_end: datetime


def demo_feed(city: City, end: datetime, hours: float = 4.0, step_min: int = 10, seed: int = 7) -> DemoFeed:
    rng = random.Random(seed)
    steps = int(hours * 60 / step_min)
    start = end - timedelta(minutes=step_min * steps)
    sag_start = start + timedelta(minutes=step_min * (steps // 2))
    sag_end = sag_start + timedelta(minutes=step_min * 6)
    water_sensors = [s for s in city.sensors.values() if s.kind is Kind.water]
    readings = []
    for i in range(steps):
        ts = start + timedelta(minutes=step_min * i)
        hour = ts.hour + ts.minute / 60
        for sensor in water_sensors:
            # daytime photosynthesis lifts DO; a sag pulls it well below class III (5 mg/L)
            do = 7.6 + 0.8 * math.sin((hour - 9) / 24 * 2 * math.pi) + rng.gauss(0, 0.1)
            if sensor.id == SAG_SENSOR and sag_start <= ts < sag_end:
                do = 3.4 + rng.gauss(0, 0.1)
            values = {
                "do": Quantity(value=round(do, 2), unit="mg/L"),
                "temp": Quantity(value=round(16 + rng.gauss(0, 0.2), 2), unit="degC"),
                "ph": Quantity(value=round(7.4 + rng.gauss(0, 0.05), 2), unit="pH"),
                "nh3n": Quantity(value=round(0.4 + abs(rng.gauss(0, 0.05)), 3), unit="mg/L"),
            }
            readings.append(
                Reading(sensor_id=sensor.id, kind=Kind.water, station=sensor.station.id, district=sensor.district, ts=ts, values=values)
            )
    return DemoFeed(readings=readings, sag_start=sag_start, sag_end=sag_end)


def malformed_message(city: City, root: str) -> tuple[str, bytes]:
    sensor = city.sensors["wq-puhe-upper-01"]
    return mqtt_topic(root, sensor.district, sensor.kind, sensor.id), MALFORMED_PAYLOAD
