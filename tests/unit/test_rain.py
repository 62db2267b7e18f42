"""Rain: accumulations with late, duplicate and missing readings; CMA tiers reached and forecast;
the storm-cell nowcast; the city's rain watch (district warnings, risk points, suspect gauges)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import numpy as np
import pytest

from models.rain import GaugeAccumulator, StormNowcaster, rolling_sum_mm, tier_forecast, tier_reached, tiers_many
from pipeline.city import default_city, load_toml
from pipeline.rain_watch import DistrictWarnings, RainWatch, rain_tiles
from pipeline.schemas import CameraDetection, GaugeStatus, Quantity, RainDistrictStatus, Reading, Tier

TIERS = load_toml("rain")["tiers"]
STEP = 300.0


def filled(amounts_mm, start_slot: int = 1) -> GaugeAccumulator:
    acc = GaugeAccumulator(step_s=STEP)
    for k, mm in enumerate(amounts_mm, start=start_slot):
        acc.add(k * STEP, mm)
    return acc


# --- accumulations --------------------------------------------------------------------------------
def test_windows_of_1_3_6_12_24_h_add_what_fell_in_them():
    acc = filled([1.0] * 288)  # 1 mm every 5 min for 24 h
    assert acc.totals_mm(288 * STEP) == {1: 12.0, 3: 36.0, 6: 72.0, 12: 144.0, 24: 288.0}
    assert set(acc.coverage(288 * STEP).values()) == {1.0}
    assert acc.totals_mm(300 * STEP)[1] == 0.0  # an hour later with nothing reported: the hour is empty


def test_late_and_duplicate_readings_count_once_and_gaps_show_as_missing_coverage():
    in_order = filled([2.0] * 12)
    shuffled = GaugeAccumulator(step_s=STEP)
    order = [12, 3, 7, 1, 2, 4, 5, 6, 8, 9, 10, 11]  # the latest first, the rest late
    statuses = [shuffled.add(k * STEP, 2.0) for k in order] + [shuffled.add(7 * STEP, 2.0), shuffled.add(3 * STEP, 2.0)]
    assert statuses[-2:] == ["replaced", "replaced"]
    assert shuffled.totals_mm(12 * STEP) == in_order.totals_mm(12 * STEP)
    gappy = filled([2.0] * 12)
    gappy._slot[5 % gappy.n_slots] = -1  # interval 5 never arrived
    assert gappy.totals_mm(12 * STEP)[1] == 22.0
    assert gappy.coverage(12 * STEP)[1] == pytest.approx(11 / 12, abs=1e-3)
    assert shuffled.add(12 * STEP - 25 * 3600, 9.0) == "too_late"
    with pytest.raises(ValueError):
        shuffled.add(13 * STEP, 1.0, interval_s=450)


def test_a_reading_covering_several_intervals_is_spread_and_state_round_trips():
    acc = GaugeAccumulator(step_s=STEP)
    acc.add(6 * STEP, 6.0, interval_s=3 * STEP)  # a gauge catching up: 6 mm over the last 15 minutes
    assert acc.recent_mm(6 * STEP, 0.25).tolist() == [2.0, 2.0, 2.0]
    again = GaugeAccumulator.from_state(acc.state())
    assert again.totals_mm(6 * STEP) == acc.totals_mm(6 * STEP)


def test_batch_rolling_sums_match_the_accumulator():
    rng = np.random.default_rng(3)
    mm = rng.gamma(0.5, 2.0, 300)
    mm[rng.random(300) < 0.05] = np.nan
    acc = GaugeAccumulator(step_s=STEP)
    for k, v in enumerate(mm, start=1):
        if not np.isnan(v):
            acc.add(k * STEP, float(v))
    sums, cover = rolling_sum_mm(mm, 36)
    assert sums[-1] == pytest.approx(acc.totals_mm(300 * STEP)[3], abs=1e-3)  # totals are rounded to 0.001 mm
    assert cover[-1] == pytest.approx(acc.coverage(300 * STEP)[3], abs=1e-3)


# --- tiers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mm_per_5min", "hours", "expected"),
    [
        (50.0 / 144, 12, "blue"),  # 50 mm in 12 h
        (50.0 / 72, 6, "yellow"),  # 50 mm in 6 h
        (50.0 / 36, 3, "orange"),  # 50 mm in 3 h
        (100.0 / 36, 3, "red"),  # 100 mm in 3 h
        (49.0 / 144, 12, None),  # just short of blue
    ],
)
def test_cma_tiers_from_config_at_their_thresholds(mm_per_5min, hours, expected):
    slots = int(hours * 12)
    acc = filled([mm_per_5min] * slots)
    assert tier_reached(acc, slots * STEP, TIERS).tier == expected


def test_a_tier_is_forecast_when_observed_plus_nowcast_reaches_it_and_not_below_the_one_reached():
    acc = filled([2.5] * 12)  # 30 mm in the last hour
    leads = np.arange(1, 73) * STEP  # 6 h of 5-min leads
    wet = 40.0 / 12 * np.arange(1, 73)  # and 40 mm/h to come: 30 + 40 τ >= 100 at τ = 1.75 h
    fc = tier_forecast(acc, 12 * STEP, wet, leads, TIERS)
    assert fc == ("red", 6300.0, pytest.approx(100.0, abs=0.01), 3)
    assert (
        tier_forecast(acc, 12 * STEP, 2.5 * np.arange(1, 73), leads, TIERS).tier == "orange"
    )  # 30 mm/h: 90 mm in 3 h at most
    assert tier_forecast(acc, 12 * STEP, np.zeros(72), leads, TIERS) is None
    done = filled([100.0 / 36] * 36)  # red already reached: nothing higher to forecast
    assert tier_forecast(done, 36 * STEP, wet, leads, TIERS) is None


def test_the_field_form_agrees_with_the_one_gauge_form():
    rng = np.random.default_rng(5)
    leads = np.arange(1, 73) * STEP
    recent = rng.gamma(0.6, 1.5, (40, 144))
    forecast = np.cumsum(rng.gamma(0.6, 1.5, (40, 72)), axis=1)
    field = tiers_many(recent, forecast, leads, STEP, TIERS)
    for g in range(40):
        acc = filled(recent[g])
        now, fc = tier_reached(acc, 144 * STEP, TIERS), tier_forecast(acc, 144 * STEP, forecast[g], leads, TIERS)
        assert now.tier == (TIERS[field.reached[g]]["tier"] if field.reached[g] >= 0 else None)
        assert (fc.tier if fc else None) == (TIERS[field.forecast[g]]["tier"] if field.forecast[g] >= 0 else None)
        if fc:
            assert fc.lead_s == field.lead_s[g]


# --- nowcast ---------------------------------------------------------------------------------------
def grid() -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(10) * 5.0, np.arange(6) * 5.0)
    return gx.ravel(), gy.ravel()


def cell_rates(x, y, t_s, x0=0.0, y0=12.5, v_kmh=(9.0, 1.0), peak=50.0, r_km=5.0):
    cx, cy = x0 + v_kmh[0] * t_s / 3600, y0 + v_kmh[1] * t_s / 3600
    return peak * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r_km**2))


def test_the_nowcast_tracks_a_moving_cell_and_brings_its_rain_downstream_not_upstream():
    x, y = grid()
    now = StormNowcaster(x, y, step_s=STEP)
    for k in range(12):
        now.update(k * STEP, cell_rates(x, y, k * STEP))
    vx, vy = now.velocity_kmh
    assert vx == pytest.approx(9.0, abs=0.5) and vy == pytest.approx(1.0, abs=0.5)
    band = now.forecast(np.array([3600.0, 3 * 3600.0]))
    assert np.all(band["p10"] <= band["p50"] + 1e-9) and np.all(band["p50"] <= band["p90"] + 1e-9)
    # truth: the cell keeps going; the 3-h total at a gauge downstream, and one behind the cell
    t_now = 11 * STEP
    t = t_now + (np.arange(36) + 0.5) * STEP
    truth = sum(cell_rates(x, y, ti) for ti in t) * STEP / 3600
    downstream = int(np.argmin(np.hypot(x - 35, y - 15)))
    behind = int(np.argmin(np.hypot(x - 0, y - 12.5)))
    assert band["p90"][downstream, 1] > 0.5 * truth[downstream]  # the cell's rain is forecast where it goes
    assert band["p50"][downstream, 1] > 10.0
    assert band["p50"][behind, 1] < 0.2 * band["p50"][downstream, 1]  # and not where it has been
    assert band["p50"][behind, 1] < truth[behind] + 2.0


def test_a_lone_stuck_gauge_is_no_storm_cell_and_the_nowcaster_state_round_trips():
    x, y = grid()
    now = StormNowcaster(x, y, step_s=STEP)
    lone = np.zeros(x.size)
    lone[17] = 30.0  # one gauge says 30 mm/h, every neighbour is dry
    for k in range(6):
        now.update(k * STEP, lone)
    assert now.tracks == []
    for k in range(6, 12):
        now.update(k * STEP, cell_rates(x, y, k * STEP))
    again = StormNowcaster.from_state(now.state())
    leads = np.array([1800.0, 7200.0])
    assert np.allclose(again.forecast(leads)["p50"], now.forecast(leads)["p50"])


# --- the city's rain watch -----------------------------------------------------------------------------
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
    from sensors_sim.scenario import load_scenario, simulate

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
    from pipeline.rain_watch import RainRules, Tile

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
