"""The simulator: reproducible, physically sane, with ground truth that matches what it generated."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from pipeline.city import default_city, load_toml
from pipeline.schemas import DeadLetter, Reading, utc_now
from pipeline.validation import ReadingValidator, parameter_specs
from sensors_sim import rain, water
from sensors_sim.faults import FaultRates
from sensors_sim.recording import messages, save, truth_path
from sensors_sim.scenario import load_scenario
from sensors_sim.simulation import simulate

CITY = default_city()
NO_FAULTS = FaultRates(
    spike_prob=0,
    stuck_per_sensor_week=0,
    drift_per_sensor_week=0,
    dropout_per_sensor_week=0,
    late_fraction=0,
    duplicate_fraction=0,
    malformed=0,
)


@cache
def run(name: str, seed: int | None = None, duration_h: float | None = None):
    return simulate(load_scenario(name, seed=seed, duration_h=duration_h, city=CITY), CITY)


def test_same_scenario_and_seed_give_byte_identical_recordings(tmp_path):
    for fmt in ("parquet", "jsonl"):
        a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
        save(simulate(load_scenario("random", seed=5, duration_h=6, city=CITY), CITY), a)
        save(simulate(load_scenario("random", seed=5, duration_h=6, city=CITY), CITY), b)
        assert a.read_bytes() == b.read_bytes()
        assert truth_path(a).read_bytes() == truth_path(b).read_bytes()
    other = tmp_path / "c.parquet"
    save(simulate(load_scenario("random", seed=6, duration_h=6, city=CITY), CITY), other)
    assert other.read_bytes() != (tmp_path / "a.parquet").read_bytes()


def _walked_travel_time_s(a, b, step_km=0.01) -> float:
    """Independent of RiverNetwork.travel_time_s: walk the path in 10 m steps, distance / local velocity."""
    total = 0.0
    for river_id, km_from, km_to in CITY.network.path(a, b):
        kms = np.arange(km_from, km_to, step_km) + step_km / 2
        kms = kms[kms < km_to]
        total += sum(step_km * 1000 / CITY.network.velocity_mps((river_id, k)) for k in kms)
        total += (km_to - km_from - len(kms) * step_km) * 1000 / CITY.network.velocity_mps((river_id, km_to))
    return total


@pytest.mark.parametrize("source_id", sorted(CITY.sources)[:8])
def test_release_reaches_downstream_stations_at_distance_over_velocity(source_id):
    source = CITY.sources[source_id]
    stations = list(CITY.stations.values())
    t = np.arange(0, 4 * 86400, 60.0)
    plume = water.release(CITY.network, source.point, [s.point for s in stations], t, 3600, 600, {"cod": 500.0}, {})
    downstream = 0
    for j, station in enumerate(stations):
        added = plume.added["cod"][:, j]
        expected = CITY.network.path(source.point, station.point)
        if expected is None:
            assert np.isnan(plume.travel_s[j]) and not added.any(), f"upstream station {station.id} saw the release"
            continue
        tau = _walked_travel_time_s(source.point, station.point)
        if tau + 3600 > t[-1] - 6 * 3600:
            continue  # peak outside the simulated window
        downstream += 1
        peak_s = t[np.argmax(added)] - 3600 - 300  # minus release start and half its duration
        assert peak_s == pytest.approx(tau, rel=0.05, abs=120), station.id
    assert downstream >= 1


@pytest.mark.parametrize("name", ["quiet_week", "puhe_do_sag"])
def test_dissolved_oxygen_stays_within_saturation_bounds(name):
    scn = replace(load_scenario(name, city=CITY), faults=NO_FAULTS)  # physics only
    frame = simulate(scn, CITY).frame
    wide = frame[frame["kind"] == "water"].pivot_table(
        index=["sensor_id", "ts_ms"], columns="parameter", values="value", observed=True
    )
    ratio = wide["do"] / water.do_saturation_mg_l(wide["temperature"])
    assert ratio.max() < 1.25  # supersaturation by day, never beyond what photosynthesis gives
    assert (wide["do"] >= 0).all() and (ratio > 0.6).mean() > 0.9  # low only where a sag takes oxygen


def test_rain_accumulations_add_up():
    cell = rain.StormCell(
        start_s=3600, duration_s=3 * 3600, x_km=0, y_km=0, vx_kmh=0, vy_kmh=0, peak_mm_h=60, radius_km=5
    )
    x, y = np.array([0.0, 3.0]), np.array([0.0, 0.0])
    no_showers = np.zeros((10, 2))
    five_min = rain.amounts_mm(np.arange(300, 6 * 3600 + 300, 300.0), 300, x, y, [cell], no_showers)
    hourly = rain.amounts_mm(np.arange(3600, 6 * 3600 + 3600, 3600.0), 3600, x, y, [cell], no_showers, substeps=120)
    assert five_min[:, 0].sum() == pytest.approx(60 * 3 / 2, rel=0.01)  # ∫ peak sin² = peak × duration / 2
    assert five_min.reshape(6, 12, 2).sum(axis=1) == pytest.approx(hourly, rel=0.01, abs=0.01)
    assert five_min[:, 1].sum() == pytest.approx(90 * np.exp(-9 / 50), rel=0.01)


def test_ruxi_oil_spill_ground_truth():
    rec = run("ruxi_oil_spill")
    spill = rec.truth.of_type("oil_spill")[0]
    assert spill.source_id == "ruxi-food-factory" and spill.details["area_m2"] == 300
    # the seed: the slick seen at 明达 reaches the intake about 6 h later
    seen_h = (spill.expected_detection - spill.start).total_seconds() / 3600
    assert spill.details["intake_arrival_h"]["ruxi-intake"] - seen_h == pytest.approx(6.0, abs=0.25)
    assert "wq-ruxi-mingda" in spill.affected_sensors
    assert spill.expected_detection is not None and spill.expected_tier is not None
    sheen = rec.frame[(rec.frame["sensor_id"] == "cam-ruxi-mingda") & (rec.frame["parameter"] == "oil_area")]
    assert sheen["value"].max() == pytest.approx(300, rel=0.2)


def test_puhe_do_sag_lasts_three_days_and_spares_the_upper_station():
    rec = run("puhe_do_sag")
    sag = rec.truth.of_type("do_sag")[0]
    assert sag.source_id == "puhe-sewage-gunan"
    assert "wq-puhe-zhaixi-bridge" in sag.affected_sensors and "wq-puhe-upper" not in sag.affected_sensors
    do = rec.frame[(rec.frame["sensor_id"] == "wq-puhe-zhaixi-bridge") & (rec.frame["parameter"] == "do")]
    below = do[do["value"] < 5.0]
    assert (below["ts_ms"].max() - below["ts_ms"].min()) / 3.6e6 >= 72


def test_central_rainstorm_reaches_red_somewhere():
    storm = run("central_rainstorm").truth.of_type("storm")[0]
    assert storm.expected_tier == "red"
    assert "red" in storm.details["district_tier"].values()
    assert len(storm.affected_sensors) >= 3


def test_jiefangbei_has_18_million_visitors_and_three_congestion_points():
    truth = run("jiefangbei_spring_festival").truth
    assert truth.of_type("visitors")[0].details["visitors"] == pytest.approx(1_800_000, rel=0.02)
    surges = truth.of_type("crowd_surge")
    assert len(surges) == 3 and all(s.expected_detection is not None for s in surges)


def test_quiet_week_has_faults_but_no_events():
    truth = run("quiet_week").truth
    assert {e.type for e in truth.events} == {"fault"}
    kinds = {e.details["fault"] for e in truth.events}
    assert {"spike", "stuck", "dropout", "late", "duplicate", "malformed"} <= kinds


def test_recorded_messages_pass_the_bridge_validation_except_injected_faults():
    rec = run("random", seed=3, duration_h=6)
    validator = ReadingValidator(CITY, parameter_specs(load_toml("parameters")), "yuflow", max_future_s=10**10)
    results = [validator.validate(topic, payload, utc_now()) for _, topic, payload in messages(rec.frame, "yuflow")]
    dead = [r for r in results if isinstance(r, DeadLetter)]
    assert sum(isinstance(r, Reading) for r in results) == rec.frame[~rec.frame["malformed"]]["msg"].nunique() - sum(
        d.code == "duplicate" for d in dead
    )
    assert {d.code for d in dead} <= {"duplicate", "invalid"}
