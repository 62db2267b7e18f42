"""The city's rain watch (pipeline/rain_tiles.py, rain_districts.py, rain_watch.py): district warnings,
risk points, suspect gauges, road flooding, tiles and their halo."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import numpy as np

from models.rain_tiers import tier_reached
from pipeline.city import default_city, load_toml
from pipeline.rain_districts import DistrictWarnings
from pipeline.rain_tiles import RainRules, Tile, rain_tiles
from pipeline.rain_watch import RainWatch
from pipeline.schemas import CameraDetection, GaugeStatus, Quantity, RainDistrictStatus, Reading, Tier
from tests.unit.rain_builders import STEP, cell_rates

TIERS = load_toml("rain")["tiers"]


@cache
def city():
    return default_city()


def rain_reading(gauge: str, t_s: float, mm: float) -> Reading:
    g = city().gauges[gauge]
    return Reading(
        sensor_id=gauge,
        kind="rain",
        station=gauge,
        district=g.district,
        ts=datetime.fromtimestamp(t_s, UTC),
        values={"rain": Quantity(value=mm, unit="mm"), "interval_s": Quantity(value=STEP, unit="s")},
    )


def run_watch(rates_at, steps: int, t0: float = 1_750_000_200.0):
    """Every gauge reports each step the rain of ``rates_at(t_s, x, y)`` (mm/h); returns the watch and its alerts."""
    c = city()
    watch = RainWatch(c)
    ids = list(c.gauges)
    x = np.array([c.gauges[g].x_km for g in ids])
    y = np.array([c.gauges[g].y_km for g in ids])
    alerts = []
    for k in range(1, steps + 1):
        t = t0 + k * STEP
        mm = rates_at(t - t0 - STEP / 2, x, y) * STEP / 3600
        for g, v in zip(ids, mm):
            alerts += watch.add(rain_reading(g, t, round(float(v), 2)))
    return watch, alerts + watch.flush(), ids, x, y


def test_a_storm_crossing_the_city_is_warned_by_district_before_gauges_cross_with_risk_points():
    c = city()
    xs = np.array([g.x_km for g in c.gauges.values()])
    ys = np.array([g.y_km for g in c.gauges.values()])
    x0, y0 = xs.min() - 5, float(np.median(ys))

    def storm(t, x, y):
        return cell_rates(x, y, t, x0=x0, y0=y0, v_kmh=(8.0, 0.0), peak=90.0, r_km=6.0)

    watch, alerts, ids, x, y = run_watch(storm, steps=60)
    raised = [a for a in alerts if not a.resolved]
    assert raised, "no warning for a 90 mm/h cell"
    assert all(a.category.value == "rain" and a.tier is not None and a.station == a.district for a in raised)
    assert len({(a.district, a.tier) for a in raised}) == len(raised)  # one alert per district and tier (no repeats)
    forecast = [a for a in raised if a.expected_at is not None]
    assert forecast and all(a.expected_at > a.ts for a in forecast)
    assert any(a.checklist for a in raised)  # risk points and their responsible persons for the call-out
    # warned ahead: every gauge that reached orange was warned at orange or above before it did
    for g in ids:
        acc = watch.accumulators[g]
        crossed = [
            k for k in range(1, 61) if tier_reached(acc, 1_750_000_200.0 + k * STEP, TIERS).tier in ("orange", "red")
        ]
        if crossed:
            first_warned = min(
                (t for tier, t in watch.warned[g].items() if Tier(tier).rank >= Tier.orange.rank), default=None
            )
            assert first_warned is not None and first_warned < 1_750_000_200.0 + crossed[0] * STEP, g


def test_a_stuck_gauge_alone_at_a_tier_is_set_aside_not_warned():
    stuck = "rg-03-04"
    c = city()
    j = list(c.gauges).index(stuck)

    def faulty(t, x, y):
        rates = np.zeros(x.size)
        rates[j] = 36.0  # stuck at 3 mm every 5 minutes: 108 mm in 3 h, red if it were rain
        return rates

    watch, alerts, *_ = run_watch(faulty, steps=40)
    assert [a for a in alerts if not a.resolved] == []
    assert stuck in watch.suspect_gauges


def test_road_flooding_seen_by_a_camera_lifts_the_districts_rain_warning():
    c = city()
    gauge = next(g for g in c.gauges.values() if g.district == "yuzhong")
    t = 1_750_000_200.0
    tile = next(iter(RainWatch(c).tiles))  # the default city is one tile
    blue = RainDistrictStatus(
        tile=tile, district="yuzhong", t_s=t, gauges=[GaugeStatus(gauge=gauge.id, tier="blue", mm=52.0, window_h=12)]
    )

    def districts() -> DistrictWarnings:
        return RainWatch(c).districts

    flooded = districts()
    flooded.add_flooding(
        CameraDetection(
            sensor_id="cam-road-jiabin-hongyadong",
            station="road-jiabin-hongyadong",
            district="yuzhong",
            ts=datetime.fromtimestamp(t - 600, UTC),
            detection="road_flooding",
            confidence=0.9,
            values={"flood_depth": Quantity(value=0.3, unit="m")},
        )
    )
    lifted = flooded.update(blue)
    assert [a.tier for a in districts().update(blue)] == [Tier.blue]
    assert [a.tier for a in lifted] == [Tier.yellow] and "积水 0.30 m" in lifted[0].message
    # an hour and more later the sighting no longer counts
    later = districts()
    later.flooding = dict(flooded.flooding)
    assert [a.tier for a in later.update(blue.model_copy(update={"t_s": t + 3700}))] == [Tier.blue]


def test_tiles_hold_every_gauge_once_with_the_halo_around_them():
    c = city()
    tiles = rain_tiles(c, 15.0, 10.0)
    cores = [g for t in tiles.values() for g in t.core]
    assert sorted(cores) == sorted(c.gauges) and len(tiles) > 4  # each gauge in exactly one tile
    for t in tiles.values():
        assert set(t.core) <= set(t.gauges)
        xs = [c.gauges[g].x_km for g in t.core]
        halo = [c.gauges[g] for g in t.gauges if g not in t.core]
        assert halo and all(min(abs(g.x_km - x) for x in xs) <= 10.0 + 15.0 for g in halo)
    assert list(rain_tiles(c, None, 30.0)) == ["field"]


def test_a_storm_gives_the_same_warnings_on_tiles_as_on_the_whole_field():
    """The field cut into 20-km tiles with a 30-km halo (6 tiles, each its own nowcast, as on six
    partitions) warns the same districts at the same tiers at the same steps, with the same expected
    times and the same messages, and each gauge at the same tiers, as one watch over the whole field."""
    from evaluation.feeds import validated_readings
    from sensors_sim.scenario import load_scenario
    from sensors_sim.simulation import simulate

    c = city()
    rec = simulate(load_scenario("central_rainstorm", city=c), c)
    readings = list(validated_readings(rec, c, ("rain", "camera")))
    runs = []
    for tiles in (rain_tiles(c, None, 0.0), rain_tiles(c, 20.0, 30.0)):
        watch = RainWatch(c, tiles=tiles)
        alerts = [a for r in readings for a in watch.add(r)] + watch.flush()
        runs.append(
            (
                watch,
                sorted(
                    (
                        a.district,
                        a.tier.value if a.tier else "",
                        a.ts,
                        a.resolved,
                        a.expected_at or a.ts,
                        a.sensor_id,
                        a.message,
                    )
                    for a in alerts
                ),
            )
        )
    (whole, whole_alerts), (tiled, tiled_alerts) = runs
    assert len(tiled.tiles) == 6 and len(whole_alerts) >= 10
    assert tiled_alerts == whole_alerts
    assert tiled.warned == whole.warned and tiled.suspect_gauges == whole.suspect_gauges


def test_a_district_waits_for_all_its_tiles_but_a_silent_tile_holds_it_back_one_step_at_most():
    c = city()
    ids = [g for g, gauge in c.gauges.items() if gauge.district == "yuzhong"]
    assert len(ids) >= 2
    halves = [Tile("a", (ids[0],), (ids[0],)), Tile("b", tuple(ids[1:]), tuple(ids[1:]))]
    t = 1_750_000_200.0

    def status(tile: str, t_s: float, tier: str | None = None) -> RainDistrictStatus:
        gauges = [GaugeStatus(gauge=ids[0] if tile == "a" else ids[1], tier=tier, mm=60.0, window_h=3)] if tier else []
        return RainDistrictStatus(tile=tile, district="yuzhong", t_s=t_s, gauges=gauges)

    districts = DistrictWarnings(c, RainRules(), halves)
    assert districts.update(status("a", t, "blue")) == []  # tile b has not sent this step yet
    assert [a.tier for a in districts.update(status("b", t, "orange"))] == [Tier.orange]  # both: judged on both
    assert districts.update(status("a", t + STEP, "red")) == []  # b is silent from now on ...
    assert [a.tier for a in districts.update(status("a", t + 2 * STEP))] == [Tier.red]  # ... one step late
