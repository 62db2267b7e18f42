"""Crowds: Fruin levels and tiers from config, the zone forecaster, the crowd watch (forecast
warnings with dispersal plans, hysteresis, camera fusion) and the Jiefangbei Spring Festival day."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import numpy as np
import pytest

from models.crowd import ZoneForecaster, density_bound, level_of_service, levels_many, tier_for_level
from pipeline.city import counter_sensor_id, default_city, load_toml
from pipeline.crowd_watch import CrowdWatch
from pipeline.schemas import CameraDetection, Kind, Quantity, Reading, Tier

RULES = load_toml("crowd")
BOUNDS, TIERS = RULES["level_of_service"], RULES["tiers"]
T0 = 1_738_000_000.0


@cache
def city():
    return default_city()


def test_fruin_levels_and_tiers_follow_the_config():
    densities = np.array([0.0, 0.3, 0.31, 0.71, 0.72, 1.07, 1.08, 2.17, 2.5])  # a bound belongs to the level above it
    assert levels_many(densities, BOUNDS).tolist() == ["A", "A", "B", "C", "D", "D", "E", "F", "F"]
    assert [tier_for_level(level_of_service(d, BOUNDS), TIERS) for d in (0.5, 0.8, 1.2, 2.5)] == [
        None,
        "yellow",
        "orange",
        "red",
    ]
    assert density_bound("orange", TIERS, BOUNDS) == RULES["congestion_density"] == 1.08


def test_the_forecaster_learns_a_trend_and_the_flows_show_a_surge_sooner():
    calm, flows = ZoneForecaster(), ZoneForecaster()
    for minute in range(20):
        calm.learn_one(T0 + minute * 60, 0.5)
        flows.learn_one(T0 + minute * 60, 0.5, 0.0)
    # a surge starts: +0.02 persons/m² a minute, which the net inflow shows at once
    for minute in range(20, 24):
        density = 0.5 + 0.02 * (minute - 19)
        calm.learn_one(T0 + minute * 60, density)
        flows.learn_one(T0 + minute * 60, density, 0.02)
    assert flows.forecast(900) > calm.forecast(900) > 0.5
    assert flows.trend == pytest.approx(0.02, abs=0.005)
    before = flows.state()
    flows.learn_one(T0 + 10 * 60, 3.0)  # a late reading does not move the state
    assert flows.state() == before
    assert ZoneForecaster.from_state(before).forecast(600) == flows.forecast(600)
    low, high = flows.interval(900)
    assert low <= flows.forecast(900) <= high


def counter(zone: str, t_s: float, persons: float, net_per_min: float = 0.0) -> Reading:
    z = city().zones[zone]
    turnover = persons / 90
    return Reading(
        sensor_id=counter_sensor_id(zone),
        kind=Kind.crowd,
        station=zone,
        district=z.district,
        ts=datetime.fromtimestamp(t_s, UTC),
        values={
            "count": Quantity(value=round(persons), unit="persons"),
            "flow_in": Quantity(value=round(turnover + max(net_per_min, 0), 1), unit="persons/min"),
            "flow_out": Quantity(value=round(turnover - min(net_per_min, 0), 1), unit="persons/min"),
        },
    )


def camera(zone: str, t_s: float, persons: float) -> CameraDetection:
    cam = next(c for c in city().cameras.values() if c.target == "zone" and c.site == zone)
    return CameraDetection(
        sensor_id=cam.id,
        station=zone,
        district=cam.district,
        ts=datetime.fromtimestamp(t_s, UTC),
        detection="crowd",
        confidence=0.9,
        values={"person_count": Quantity(value=round(persons), unit="persons")},
    )


def surge(zone: str, minutes: int, base: float, extra: float, peak_min: float, width_min: float):
    """Persons present each minute: a base density plus a Gaussian surge (persons/m²)."""
    area = city().zones[zone].area_m2
    m = np.arange(minutes)
    density = base + extra * np.exp(-((m - peak_min) ** 2) / (2 * width_min**2))
    return density * area, np.gradient(density) * area


def test_a_surge_is_warned_ahead_of_congestion_with_the_zones_dispersal_plan_and_clears_after():
    watch, zone = CrowdWatch(city()), "hongyadong"
    persons, net = surge(zone, 240, 0.45, 0.9, 120, 30)
    alerts = [a for m in range(240) for a in watch.add(counter(zone, T0 + m * 60, persons[m], net[m]))]
    raised = [a for a in alerts if not a.resolved]
    area = city().zones[zone].area_m2
    crossing = int(np.argmax(persons / area >= RULES["congestion_density"]))
    orange = next(a for a in raised if a.tier.rank >= Tier.orange.rank)
    assert (T0 + crossing * 60) - orange.ts.timestamp() >= 10 * 60  # 10+ minutes ahead
    assert orange.expected_at is not None and orange.rule == "fruin_forecast"
    plan = "\n".join(orange.checklist)
    z = city().zones[zone]
    assert z.metro_stations[0] in plan and z.passages[0] in plan and z.entrances[0] in plan
    assert [a.tier for a in raised] == sorted(
        {a.tier for a in raised}, key=lambda t: t.rank
    )  # only ever up, no repeats
    assert sum(a.resolved for a in alerts) == 1 and alerts[-1].resolved  # cleared once, after the surge


def test_a_crowd_hovering_at_a_bound_gives_one_warning_not_a_flapping_series():
    watch, zone = CrowdWatch(city()), "bayi-food-street"
    area = city().zones[zone].area_m2
    rng = np.random.default_rng(1)
    alerts = [
        a
        for m in range(180)
        for a in watch.add(counter(zone, T0 + m * 60, (0.74 + 0.03 * rng.standard_normal()) * area))
    ]
    assert [a.tier for a in alerts] == [Tier.yellow]


def test_cameras_fuse_with_the_counter_and_carry_a_zone_whose_counter_is_silent():
    watch, zone = CrowdWatch(city()), "jiaochangkou"
    area = city().zones[zone].area_m2
    for m in range(10):
        watch.add(camera(zone, T0 + m * 60 - 5, 0.5 * area * 1.05))
        watch.add(counter(zone, T0 + m * 60, 0.5 * area))
    assert watch.states[zone]["forecaster"]["level"] == pytest.approx(0.5 * 1.025, rel=0.01)  # the mean: they agree
    # the counter under-counts badly: the higher count stands
    watch.add(camera(zone, T0 + 600 - 5, 1.3 * area))
    alerts = watch.add(counter(zone, T0 + 600, 0.5 * area))
    assert alerts and "disagree" in alerts[0].message
    # the counter falls silent: the cameras step the zone on their own
    silent = CrowdWatch(city())
    alerts = [a for m in range(30) for a in silent.add(camera(zone, T0 + m * 60, (0.6 + 0.05 * m) * area))]
    assert any(a.tier.rank >= Tier.orange.rank and "camera" in a.message for a in alerts)


def test_unknown_zones_and_other_detections_are_ignored_by_the_watch():
    watch = CrowdWatch(city())
    other = Reading(
        sensor_id="rg-03-04",
        kind=Kind.rain,
        station="rg-03-04",
        district="yuzhong",
        ts=datetime.fromtimestamp(T0, UTC),
        values={"rain": Quantity(value=1.0, unit="mm")},
    )
    assert watch.add(other) == [] and watch.states == {}


def test_jiefangbei_spring_festival_three_congestion_points_warned_ten_minutes_ahead_and_quiet_days_stay_quiet():
    from evaluation import feeds as ev
    from sensors_sim.scenario import load_scenario
    from sensors_sim.simulation import simulate

    c = city()
    run = ev.evaluate_crowd_run("jiefangbei", simulate(load_scenario("jiefangbei_spring_festival", city=c), c), c)
    assert len(run.leads_min) == 3 and not run.missed
    assert min(run.leads_min) >= 10 and run.with_plan == 3
    assert run.false_orange == 0
