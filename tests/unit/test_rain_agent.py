"""The rain agents' live state (agents/rain.py ``LiveRain``): rebuilt from the tables after partitions
move, it carries on as if they had not (a rebalance changes no warning)."""

from __future__ import annotations

from agents.rain import LiveRain
from pipeline.city import default_city
from pipeline.schemas import RainDistrictRecord


def run(readings, forget_every: int | None) -> list[tuple]:
    """The readings through the agents' path (gauge -> tiles -> districts) with dicts for tables; the
    live state is forgotten every ``forget_every`` readings, as on a rebalance that gives this worker
    its partitions back."""
    tiles, gauges, districts = {}, {}, {}
    live = LiveRain(tiles, gauges, districts)
    alerts = []
    for n, reading in enumerate(readings, 1):
        for tile_id in live.tiles_of_gauge.get(reading.station, ()):
            for status in live.add(tile_id, live.tile(tile_id), reading):
                record = RainDistrictRecord.model_validate_json(RainDistrictRecord(status=status).to_json())
                warnings = live.district(status.district)
                alerts += warnings.update(record.status)
                districts[status.district] = warnings.state(status.district)
        if forget_every and n % forget_every == 0:
            live.forget()
    return [(a.district, a.tier, a.ts, a.resolved, a.expected_at, a.message) for a in alerts]


def test_a_rebalance_changes_no_rain_warning():
    from datetime import timedelta

    from evaluation.feeds import validated_readings
    from sensors_sim.scenario import load_scenario
    from sensors_sim.simulation import simulate

    city = default_city()
    scenario = load_scenario("central_rainstorm", city=city)
    # the storm's hours (it starts 6 h in, for 5 h): the rest is dry, and costs time
    start, end = scenario.start + timedelta(hours=5.5), scenario.start + timedelta(hours=11)
    readings = [r for r in validated_readings(simulate(scenario, city), city, ("rain",)) if start <= r.ts < end]
    steady = run(readings, None)
    assert len(steady) >= 5
    assert run(readings, 997) == steady
