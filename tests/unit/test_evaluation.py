"""The evaluations run the water screen the agent runs: on the simulator's ground truth, and on a
file in the GECCO format through the command a user types (synthetic here: the real file is not
shipped)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC

import numpy as np
import pandas as pd
import pytest

from evaluation import gecco as ev
from evaluation.water import station_data, statistical_findings
from pipeline.city import default_city
from sensors_sim.scenario import load_scenario
from sensors_sim.simulation import simulate

CITY = default_city()


def findings_of(name: str):
    rec = simulate(load_scenario(name, city=CITY), CITY)
    return rec, statistical_findings(rec, station_data(rec), CITY)


def seconds(rec, when) -> float:
    return (when - rec.truth.start).total_seconds()


def test_quiet_week_raises_no_more_than_one_pollution_alert_per_sensor_week_and_labels_faults():
    rec, findings = findings_of("quiet_week")
    assert len(findings) == 30
    sensor_weeks = len(findings) * seconds(rec, rec.truth.end) / (7 * 86400)
    assert sum(f.kind == "pollution" for fs in findings.values() for f in fs) / sensor_weeks <= 1.0
    for fault in ("stuck", "dropout"):
        injected = [
            e
            for e in rec.truth.of_type("fault")
            if e.details["fault"] == fault and e.affected_sensors[0].startswith("wq-")
        ]
        assert injected
        labelled = [
            any(
                f.fault == fault and f.start_s <= seconds(rec, e.end) + 3600 and f.end_s >= seconds(rec, e.start) - 3600
                for f in findings[e.affected_sensors[0].removeprefix("wq-")]
            )
            for e in injected
        ]
        assert np.mean(labelled) >= 0.8, fault


def test_puhe_oxygen_sag_is_found_as_pollution_near_its_expected_detection():
    rec, findings = findings_of("puhe_do_sag")
    (sag,) = rec.truth.of_type("do_sag")
    pollution = [f for f in findings["puhe-zhaixi-bridge"] if f.kind == "pollution"]
    expected_s = seconds(rec, sag.expected_detection)
    assert any(abs(f.start_s - expected_s) <= 3 * 3600 for f in pollution)
    assert all(f.start_s >= seconds(rec, sag.start) for f in pollution)  # nothing before the sewage reaches it


def test_a_release_that_passes_its_only_station_during_a_dropout_is_unobservable_not_missed():
    from datetime import datetime

    from evaluation.water import read_while_passing
    from pipeline.water_tracing import History
    from sensors_sim.truth import TruthEvent

    t0 = datetime(2025, 6, 18, tzinfo=UTC)
    event = TruthEvent(
        id="e",
        type="oil_spill",
        start=t0,
        end=t0,
        affected_sensors=["wq-a"],
        details={"arrival_h": {"a": 3.0}, "release_duration_s": 1800.0},
    )
    every_10_min = np.arange(0, 12 * 3600, 600.0)
    in_dropout = every_10_min[(every_10_min < 2 * 3600) | (every_10_min > 6 * 3600)]  # silent 2-6 h
    assert read_while_passing(event, {"a": History(every_10_min, {})}, 0.0)
    assert not read_while_passing(event, {"a": History(in_dropout, {})}, 0.0)
    assert not read_while_passing(event, {}, 0.0)


def synthetic_gecco(days: float = 6, seed: int = 11) -> pd.DataFrame:
    """A drinking-water station a minute at a time, quantised like real sensors (most readings repeat
    the last), missing rows, and labelled events: chlorine dioxide down with redox and pH moving."""
    rng = np.random.default_rng(seed)
    n = int(days * 1440)
    t = pd.date_range("2020-03-01", periods=n, freq="1min")
    slow = np.cumsum(rng.normal(0, 0.02, n))
    frame = pd.DataFrame(
        {
            "Time": t.strftime("%Y-%m-%d %H:%M:%S"),
            "Tp": np.round(8 + 0.3 * np.sin(np.arange(n) / 1440 * 2 * np.pi) + rng.normal(0, 0.03, n), 1),
            "Cl": np.round(0.14 + rng.normal(0, 0.004, n), 2),
            "pH": np.round(8.3 + 0.001 * slow + rng.normal(0, 0.005, n), 2),
            "Redox": np.round(755 + 0.2 * slow + rng.normal(0, 0.5, n)),
            "Leit": np.round(220 + rng.normal(0, 0.4, n)),
            "Trueb": np.round(0.015 + np.abs(rng.normal(0, 0.003, n)), 3),
            "Cl_2": np.round(0.10 + rng.normal(0, 0.002, n), 3),
            "Fm": np.round(1400 + 100 * np.sin(np.arange(n) / 300) + rng.normal(0, 30, n)),
            "Fm_2": np.round(950 + rng.normal(0, 10, n)),
        }
    )
    event = np.zeros(n, bool)
    slots = np.arange(n // 6, n - 60, 180)
    for start in rng.choice(slots, size=min(len(slots), int(2 * days)), replace=False):
        length = int(rng.integers(12, 40))
        at = slice(start, start + length)
        frame.loc[at, "Cl"] = np.round(frame.loc[at, "Cl"] - 0.05, 2)
        frame.loc[at, "Cl_2"] = np.round(frame.loc[at, "Cl_2"] - 0.04, 3)
        frame.loc[at, "Redox"] = frame.loc[at, "Redox"] - 25
        event[start : start + length] = True
    missing = rng.random(n) < 0.05
    frame.loc[missing, list(ev.COLUMNS)] = np.nan
    frame["EVENT"] = np.where(event, "TRUE", "FALSE")
    return frame


def test_eval_gecco_scores_a_gecco_file_and_its_written_flags_score_the_same(tmp_path):
    path = tmp_path / "station.csv"
    synthetic_gecco().to_csv(path, index=False)
    flags = tmp_path / "flags.csv"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "eval", "gecco", str(path), "--out", str(flags)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "│" in line and "/" in line and "precision" not in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    precision, recall, f1 = (float(c) for c in cells[:3])
    assert f1 >= 0.8 and cells[3].split("/")[0] == cells[3].split("/")[1]  # every event of the second half found
    written = pd.read_csv(flags)
    assert list(written.columns) == ["Time", "flag", "score"] and len(written) == len(synthetic_gecco())
    series = ev.load(path, CITY.utc_offset_h)
    half = len(series.ts_s) // 2
    again = ev.score(written["flag"].to_numpy()[half:].astype(bool), series.labels[half:], series.ts_s[half:])
    assert again.f1 == pytest.approx(f1, abs=5e-4) and again.precision == pytest.approx(precision, abs=5e-4)
    assert f"its flags score test F1 {f1:.3f}" in done.stdout


def test_eval_gecco_is_causal_a_later_row_never_changes_an_earlier_flag():
    frame = synthetic_gecco(days=3)
    series = ev.load_frame(frame, CITY.utc_offset_h)
    whole = ev.run(series, {}, CITY.utc_offset_h)
    cut = len(frame) * 2 // 3
    head = ev.run(series.head(cut), {}, CITY.utc_offset_h)
    assert (whole.flags[:cut] == head.flags).all() and np.allclose(whole.scores[:cut], head.scores)


def test_eval_gecco_names_a_missing_column(tmp_path):
    path = tmp_path / "bad.csv"
    synthetic_gecco(days=1).drop(columns=["Redox"]).to_csv(path, index=False)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "eval", "gecco", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Redox" in done.stdout
