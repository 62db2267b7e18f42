"""Reading -> warning latency: probe stations send low-DO readings stamped when sent; each probe's
third reading completes a finding, and the warning's ``time_to_warn_s`` is its latency."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def probe_stations(city, count: int) -> list:
    """One station on each of ``count`` rivers (an incident is a river's: one warning per probe)."""
    first_of_river = {}
    for st in (s for s in city.stations.values() if not s.treated):
        first_of_river.setdefault(st.river, st)
    return list(first_of_river.values())[:count]


def latency_probes(settings, count: int, spacing_s: float) -> list[float]:
    """Reading -> warning seconds for ``count`` probes (low DO at stations of different rivers)."""
    from pipeline.city import load_city
    from pipeline.influx import influxql
    from pipeline.schemas import Kind, Quantity, Reading
    from sensors_sim.publisher import publish, reading_messages

    stations = probe_stations(load_city(scale=settings.city.scale), count)
    since = datetime.now(UTC)
    for st in stations:
        for _ in range(3):
            reading = Reading(
                sensor_id=f"wq-{st.id}",
                kind=Kind.water,
                station=st.id,
                district=st.district,
                ts=datetime.now(UTC),
                values={"do": Quantity(value=1.0, unit="mg/L")},
            )
            publish(reading_messages([reading], settings.mqtt.topic_root), settings.mqtt)
            time.sleep(spacing_s)
    deadline = time.monotonic() + 60
    values: list[float] = []
    while time.monotonic() < deadline:
        series = influxql(
            settings.influx,
            f"SELECT \"time_to_warn_s\" FROM warnings WHERE time >= '{since.isoformat().replace('+00:00', 'Z')}' "
            f"AND station =~ /^({'|'.join(st.id for st in stations)})$/",
        )
        values = [row[1] for s in series for row in s["values"]]
        if len(values) >= len(stations):
            break
        time.sleep(1)
    return values
