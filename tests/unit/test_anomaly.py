"""Anomaly detectors and the fault-or-pollution labels: synthetic series with known faults and events,
then the simulator's quiet week (false alarms, faults) and the Puhe dissolved-oxygen sag (detection)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from models.anomaly import SeasonalRobustZ, StationMultivariate, score_from_z
from models.base import Detector
from models.sensor_faults import classify_station, dropouts, spike_mask, stuck_mask
from pipeline.city import default_city
from sensors_sim.scenario import load_scenario, simulate

STEP_S = 600.0
PARAMS = ("temp", "do", "ph", "nh3n", "cod", "codmn", "tp", "turbidity", "conductivity", "oil")
NOISE = {"temp": 0.05, "do": 0.08, "ph": 0.02, "nh3n": 0.02, "cod": 0.6, "codmn": 0.1, "tp": 0.005,
         "turbidity": 0.8, "conductivity": 4.0, "oil": 0.003}


def station(days: float, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """A clean station: temperature, oxygen and pH follow the sun, the rest are flat, plus noise."""
    rng = np.random.default_rng(seed)
    ts = np.arange(int(days * 86400 / STEP_S)) * STEP_S
    hours = (ts / 3600) % 24
    light = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    clean = {"temp": 25 + 1.2 * np.sin((hours - 9) / 24 * 2 * np.pi), "do": 7.5 + 1.0 * light, "ph": 7.5 + 0.2 * light,
             "nh3n": 0.3, "cod": 12.0, "codmn": 3.0, "tp": 0.08, "turbidity": 15.0, "conductivity": 350.0, "oil": 0.015}
    values = {p: np.broadcast_to(clean[p], ts.shape) + rng.normal(0, NOISE[p], ts.size) for p in PARAMS}
    return ts, values, hours


# --- the contract -------------------------------------------------------------------------------
def test_detectors_follow_the_contract():
    with pytest.raises(TypeError):
        Detector()  # abstract
    for det, x in ((SeasonalRobustZ(), {"value": 1.0, "hour": 3.0}), (StationMultivariate(["do", "ph"]), {"do": 7.0, "ph": 7.5, "hour": 3.0})):
        assert isinstance(det, Detector)
        assert det.score_one(x) == 0.0  # nothing learned yet: neutral
        assert det.learn_one(x) is None


def test_score_mapping_is_in_unit_interval_and_monotone():
    z = np.array([np.nan, -np.inf, -20, -4, 0, 2.9, 3.5, 6, 50, np.inf])
    s = score_from_z(z)
    assert ((s >= 0) & (s <= 1)).all() and s[0] == 0 and s[4] == 0 and s[-1] == 1
    assert np.all(np.diff(score_from_z(np.linspace(0, 30, 50))) >= 0)


# --- SeasonalRobustZ ----------------------------------------------------------------------------------
def test_warm_up_scores_zero_until_grace_period():
    det = SeasonalRobustZ(grace_period=10)
    scores = []
    for i in range(12):
        x = {"value": 100.0 if i == 5 else 1.0 + 0.01 * (i % 2), "hour": i / 6}
        scores.append(det.score_one(x))
        det.learn_one(x)
    assert scores[:10] == [0.0] * 10


def test_learns_the_daily_cycle_and_flags_a_drop_in_oxygen():
    ts, values, hours = station(days=4, seed=1)
    do = values["do"].copy()
    t_drop = 3 * 144 + 72  # day 4, noon: photosynthesis has lifted DO by 1 mg/L since the night
    do[t_drop] -= 0.9  # 11 noise sd, yet no lower than at night
    scores = SeasonalRobustZ().score_many(do, hours)
    assert scores[t_drop] > 0.8
    assert (scores[2 * 144 :] > 0.5).sum() == 1  # the daily swing itself is not an anomaly
    assert do[t_drop] > do[3 * 144 : 3 * 144 + 36].min()  # a fixed threshold could not see it


def test_batch_form_equals_the_one_at_a_time_loop():
    ts, values, hours = station(days=2, seed=2)
    x = values["do"].copy()
    x[150:160] -= 2.0  # an anomaly, so protect takes part
    x[200] = np.nan
    det = SeasonalRobustZ()
    loop = []
    for v, h in zip(x, hours):
        loop.append(det.score_one({"value": v, "hour": h}))
        det.learn_one({"value": v, "hour": h})
    batch_det = SeasonalRobustZ()
    batch = batch_det.score_many(x, hours)
    np.testing.assert_allclose(batch, loop, atol=1e-12)
    assert batch_det.z_one({"value": 7.0, "hour": 12.0}) == pytest.approx(det.z_one({"value": 7.0, "hour": 12.0}))
    assert batch[200] == 0.0  # missing: neither scored nor learned
    # columns are independent series sharing the clock
    two = SeasonalRobustZ().score_many(np.column_stack([x, values["ph"]]), hours)
    np.testing.assert_allclose(two[:, 0], batch, atol=1e-12)
    np.testing.assert_allclose(two[:, 1], SeasonalRobustZ().score_many(values["ph"], hours), atol=1e-12)


def test_protect_keeps_a_lasting_anomaly_anomalous():
    ts, values, hours = station(days=2, seed=3)
    x = values["nh3n"].copy()
    x[200:] += 0.5  # 25 sd, for the rest of the series
    protected = SeasonalRobustZ(protect=True).score_many(x, hours)
    learning = SeasonalRobustZ(protect=False).score_many(x, hours)
    assert protected[200] > 0.99 and learning[200] > 0.99
    assert protected[-1] > 0.99  # still anomalous: it never learned the shift as normal
    assert learning[-1] < 0.5  # learned as the new normal


def test_a_series_that_never_varies_does_not_divide_by_zero():
    det = SeasonalRobustZ(grace_period=3)
    for i in range(10):
        det.learn_one({"value": 5.0, "hour": i / 6})
    assert det.score_one({"value": 5.0, "hour": 2.0}) == 0.0
    assert det.score_one({"value": 5.1, "hour": 2.0}) == 1.0
    assert np.isfinite(det.z_one({"value": 5.1, "hour": 2.0}))


def test_bad_settings_and_shapes_fail_fast():
    with pytest.raises(ValueError, match="level_window"):
        SeasonalRobustZ(level_window=0)
    with pytest.raises(ValueError, match="grace_period"):
        SeasonalRobustZ(grace_period=0)
    with pytest.raises(ValueError, match="protect_threshold"):
        SeasonalRobustZ(protect_threshold=2.0)
    with pytest.raises(ValueError):
        SeasonalRobustZ().score_many(np.ones(5), np.ones(4))
    det = SeasonalRobustZ()
    det.score_many(np.ones((5, 2)), np.arange(5.0))
    with pytest.raises(ValueError, match="shape"):
        det.score_many(np.ones(5), np.arange(5.0))  # it holds two series now


# --- StationMultivariate ---------------------------------------------------------------------------
def test_multivariate_sees_parameters_that_move_together():
    ts, values, hours = station(days=3, seed=4)
    t = 2 * 144 + 30
    for p, sign in (("do", -1), ("nh3n", 1), ("cod", 1), ("codmn", 1), ("tp", 1)):  # each 3.5 sd: mild on its own
        values[p][t] = (values[p][t - 1] + values[p][t + 1]) / 2 + sign * 3.5 * NOISE[p]
    multi = StationMultivariate(PARAMS).score_many(values, hours)
    single = SeasonalRobustZ().score_many(np.column_stack([values[p] for p in PARAMS]), hours)
    assert multi[t] > 0.5 and multi[t] > single[t].max()
    assert (multi[2 * 144 :] > 0.5).sum() == 1


def test_multivariate_batch_equals_loop_and_skips_a_frozen_instrument():
    ts, values, hours = station(days=1, seed=5)
    for p in PARAMS:
        values[p][100:112] = values[p][100]  # stuck for two hours
    det = StationMultivariate(PARAMS, grace_period=12)
    loop, learned = [], []
    for i in range(len(ts)):
        x = {**{p: values[p][i] for p in PARAMS}, "hour": hours[i]}
        loop.append(det.score_one(x))
        det.learn_one(x)
        learned.append(det.n_seen)
    batch_det = StationMultivariate(PARAMS, grace_period=12)
    np.testing.assert_allclose(batch_det.score_many(values, hours), loop, atol=1e-12)
    assert learned[111] == learned[100]  # the 11 repeats were not learned
    assert learned[-1] > learned[111]  # learning resumes after


# --- fault tests -----------------------------------------------------------------------------------
def test_fault_primitives():
    assert dropouts(np.array([0.0, 600, 1200, 4800, 5400]), STEP_S) == [(1800.0, 4200.0)]
    assert dropouts(np.array([0.0, 600, 1300]), STEP_S) == []  # jitter is not a gap
    X = np.column_stack([np.arange(8.0), np.arange(8.0) * 2])
    X[3:6] = X[3]
    assert stuck_mask(X).tolist() == [False, False, False, True, True, True, False, False]
    assert not stuck_mask(X, min_samples=4).any()
    ts, values, hours = station(days=1, seed=6)
    X = np.column_stack([values[p] for p in PARAMS])
    X[80, 4] += 10 * NOISE["cod"]
    X[90:, 3] += 10 * NOISE["nh3n"]  # a step, not a spike
    X[100, :3] += 10 * np.array([NOISE["temp"], NOISE["do"], NOISE["ph"]])  # several parameters at once: not a sensor spike
    hits = spike_mask(X)
    assert hits[80, 4] and not hits[88:93, 3].any() and not hits[100].any()
    assert hits.sum() <= 2  # noise alone rarely looks like a spike (about 1 in 20 000 readings)


def test_classify_labels_faults_and_pollution_on_a_synthetic_station():
    ts, values, hours = station(days=3, seed=7)
    values["cod"][200] += 9 * NOISE["cod"]  # spike
    for p in PARAMS:
        values[p][250:268] = values[p][250]  # stuck for 3 h
    onset = 330
    rise = np.clip((np.arange(len(ts)) - onset) / 6, 0, 1) * (np.arange(len(ts)) < onset + 36)  # 1 h rise, 6 h plateau
    values["nh3n"] += 0.8 * rise
    values["cod"] += 6.0 * rise
    values["do"] -= 1.5 * rise
    keep = np.ones(len(ts), bool)
    keep[380:392] = False  # 2 h without readings
    findings = classify_station(ts[keep], {p: v[keep] for p, v in values.items()}, hours[keep], STEP_S)

    spikes = [f for f in findings if f.fault == "spike"]
    assert ("cod", ts[200]) in [(f.parameter, f.start_s) for f in spikes]
    assert len(spikes) <= 2  # noise alone rarely looks like a spike
    stuck = [f for f in findings if f.fault == "stuck"]
    assert [(f.parameter, f.start_s, f.end_s) for f in stuck] == [(None, ts[250], ts[267])]
    gaps = [f for f in findings if f.fault == "dropout"]
    assert [(f.start_s, f.end_s) for f in gaps] == [(ts[380], ts[391])]
    pollution = [f for f in findings if f.kind == "pollution"]
    assert len(pollution) == 1
    event = pollution[0]
    assert ts[onset] <= event.start_s <= ts[onset] + 3600 and event.end_s >= ts[onset + 30]
    assert event.parameter in ("nh3n", "cod", "do") and event.fault is None and 0.9 < event.score <= 1


def test_a_single_parameter_drift_is_a_fault_not_pollution():
    ts, values, hours = station(days=6, seed=8)
    start = 3 * 144
    values["ph"][start:] += 8 * NOISE["ph"] * np.clip((np.arange(len(ts) - start)) / 144, 0, 1)  # 1-day ramp, then offset
    findings = classify_station(ts, values, hours, STEP_S)
    assert not [f for f in findings if f.kind == "pollution"]
    drift = [f for f in findings if f.fault == "drift"]
    assert drift and all(f.parameter == "ph" and f.start_s >= ts[start] for f in drift)


def test_drift_is_told_from_the_rivers_wander_which_moves_related_parameters_together():
    ts, values, hours = station(days=7, seed=9)
    wander = np.sin(ts / 86400 / 3 * 2 * np.pi)  # 3-day wander, as large per day as the drift below
    for p, share in (("nh3n", 0.3), ("cod", 0.2), ("codmn", 0.2), ("tp", 0.3), ("conductivity", 0.05)):
        values[p] = values[p] * (1 + share * wander)
    calm = classify_station(ts, values, hours, STEP_S)
    assert not [f for f in calm if f.fault == "drift" or f.kind == "pollution"]
    start = int(3.5 * 144)
    values["cod"][start:] += 8 * NOISE["cod"] * np.clip(np.arange(len(ts) - start) / 288, 0, 1)  # 2-day ramp, then offset
    drifted = classify_station(ts, values, hours, STEP_S)
    drift = [f for f in drifted if f.fault == "drift"]
    assert drift and {f.parameter for f in drift} == {"cod"} and min(f.start_s for f in drift) >= ts[start]
    assert not [f for f in drifted if f.kind == "pollution"]


def test_classify_validates_its_input():
    with pytest.raises(ValueError):
        classify_station(np.arange(3.0), {"do": np.ones(2)}, np.arange(3.0), STEP_S)
    with pytest.raises(ValueError):
        classify_station(np.arange(3.0), {"do": np.ones(3)}, np.arange(3.0), 0.0)
    assert classify_station(np.zeros(0), {}, np.zeros(0), STEP_S) == []


# --- on the simulator ---------------------------------------------------------------------------------
CITY = default_city()


@cache
def recording(name: str):
    return simulate(load_scenario(name, city=CITY), CITY)


def water_stations(rec) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]]:
    """Per station: (seconds since the start, {parameter: values}, local hours), deduplicated and sorted."""
    f = rec.frame
    f = f[(f["kind"] == "water") & ~f["malformed"]].drop_duplicates(["sensor_id", "ts_ms", "parameter"]).sort_values("ts_ms")
    wide = f.pivot_table(index=["sensor_id", "ts_ms"], columns="parameter", values="value", observed=True)
    start_ms = rec.truth.start.timestamp() * 1000
    out = {}
    for sensor, g in wide.groupby(level=0, observed=True):
        ts_ms = g.index.get_level_values(1).to_numpy()
        out[sensor] = ((ts_ms - start_ms) / 1000, {p: g[p].to_numpy(float) for p in g.columns},
                       ((ts_ms / 1000 + CITY.utc_offset_h * 3600) % 86400) / 3600)
    return out


def seconds(rec, when) -> float:
    return (when - rec.truth.start).total_seconds()


def test_quiet_week_raises_no_pollution_and_labels_stuck_sensors():
    rec = recording("quiet_week")
    step = rec.truth.steps_s["water"]
    findings = {s: classify_station(ts, v, h, step) for s, (ts, v, h) in water_stations(rec).items()}
    assert len(findings) == 30
    sensor_weeks = len(findings) * seconds(rec, rec.truth.end) / (7 * 86400)
    false_pollution = sum(f.kind == "pollution" for fs in findings.values() for f in fs)
    assert false_pollution / sensor_weeks <= 1.0
    stuck = [e for e in rec.truth.of_type("fault") if e.details["fault"] == "stuck" and e.affected_sensors[0].startswith("wq-")]
    assert stuck
    labelled = [any(f.fault == "stuck" and f.start_s <= seconds(rec, e.end) and f.end_s >= seconds(rec, e.start)
                    for f in findings[e.affected_sensors[0]]) for e in stuck]
    assert np.mean(labelled) >= 0.8
    gaps = [e for e in rec.truth.of_type("fault") if e.details["fault"] == "dropout" and e.affected_sensors[0].startswith("wq-")]
    assert np.mean([any(f.fault == "dropout" and f.start_s <= seconds(rec, e.end) and f.end_s >= seconds(rec, e.start)
                        for f in findings[e.affected_sensors[0]]) for e in gaps]) >= 0.8


def test_puhe_oxygen_sag_is_found_as_pollution_near_its_expected_detection():
    rec = recording("puhe_do_sag")
    (sag,) = rec.truth.of_type("do_sag")
    assert "wq-puhe-zhaixi-bridge" in sag.affected_sensors and sag.expected_detection is not None
    ts, values, hours = water_stations(rec)["wq-puhe-zhaixi-bridge"]
    findings = classify_station(ts, values, hours, rec.truth.steps_s["water"])
    pollution = [f for f in findings if f.kind == "pollution"]
    expected_s = seconds(rec, sag.expected_detection)
    assert any(abs(f.start_s - expected_s) <= 3 * 3600 for f in pollution)
    assert all(f.start_s >= seconds(rec, sag.start) for f in pollution)  # nothing before the sewage reaches it
