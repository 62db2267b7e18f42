"""The water screen (models/water_screen.py): one code path for a reading and a batch, times in
seconds at any cadence, evidence across parameters, learning that never locks out, faults."""

from __future__ import annotations

import numpy as np
import pytest

from models.batch_rounds import rounds
from models.water_screen import WaterScreen
from models.water_screen_settings import ParameterSpec, ScreenSettings
from models.water_verdicts import CLEARED, FAULT_DROPOUT, FAULT_SPIKE, FAULT_STUCK, RAISED

SPECS = [
    ParameterSpec("do", "down", 0.01),
    ParameterSpec("nh3n", "up", 0.01),
    ParameterSpec("ph", "both", 0.01),
    ParameterSpec("flow", "none", 1.0),
]
NAMES = [s.name for s in SPECS]


def quiet(t_s: np.ndarray, rng, quantum: float | None = None) -> np.ndarray:
    """(T, 4) normal readings: a daily cycle in DO and pH, noise, flow that wanders a lot."""
    hour = (t_s / 3600) % 24
    X = np.column_stack(
        [
            8 + 0.5 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 0.08, len(t_s)),
            0.3 + rng.normal(0, 0.02, len(t_s)),
            7.6 + 0.1 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 0.02, len(t_s)),
            1400 + 200 * np.sin(t_s / 5000) + rng.normal(0, 40, len(t_s)),
        ]
    )
    return np.round(X / quantum) * quantum if quantum else X


def stream(seed: int, sensors: int, steps: int):
    """(key, values, ts) in arrival order: irregular times, missing parameters, frozen repeats, an
    out-of-order reading, pollution episodes on some sensors."""
    rng = np.random.default_rng(seed)
    out, previous, frozen = [], {}, {}
    for t in range(steps):
        for s in rng.permutation(sensors):
            ts = t * 600.0 + rng.uniform(-60, 60) + s
            x = quiet(np.array([ts]), rng)[0]
            if (t // 40) % 4 == 3 and s % 2 == 0:
                x[:3] += [-3.0, 1.5, 0.5]
            values = dict(zip(NAMES, x))
            if s % 3 == 1:
                values.pop("ph")
            if t > 0 and (frozen.get(s, 0) > 0 or rng.random() < 0.01):
                frozen[s] = frozen.get(s, 0) - 1 if frozen.get(s, 0) > 0 else 4  # the instrument freezes for 5 readings
                values = dict(previous[s][0])
            elif rng.random() < 0.05:
                values.pop(rng.choice(sorted(values)))
            if t > 2 and rng.random() < 0.01:
                ts -= 1800  # late
            previous[s] = (values, ts)
            out.append((f"s{s}", values, ts))
    return out


def as_arrays(screen: WaterScreen, readings):
    rows = np.array([screen.row(k, sorted(v)) for k, v, _ in readings])
    X = np.array([[v.get(p, np.nan) for p in NAMES] for _, v, _ in readings])
    return rows, X, np.array([t for _, _, t in readings])


@pytest.mark.parametrize("seed", [1, 2])
def test_a_batch_gives_exactly_what_readings_one_at_a_time_give(seed):
    readings = stream(seed, sensors=6, steps=240)
    one = WaterScreen(SPECS, capacity=2)  # grows while it runs
    singles = [one.step_one(k, v, t) for k, v, t in readings]
    batch = WaterScreen(SPECS, capacity=2)
    rng = np.random.default_rng(seed)
    got = []
    at = 0
    while at < len(readings):  # records of 1 to 60 readings, a sensor several times in one
        part = readings[at : at + int(rng.integers(1, 60))]
        v = batch.step_many(*as_arrays(batch, part))
        got += [(int(v.change[n]), bool(v.alarm[n]), v.evidence[n], v.z[n], int(v.fault[n])) for n in range(len(part))]
        at += len(part)
    for single, (change, alarm, evidence, z, fault) in zip(singles, got):
        assert single.change == {RAISED: "raised", CLEARED: "cleared"}.get(change)
        assert single.alarm == alarm and single.evidence == pytest.approx(evidence, rel=1e-12, abs=1e-12)
        assert single.z == {p: pytest.approx(z[j], rel=1e-12) for j, p in enumerate(NAMES) if np.isfinite(z[j])}
        assert (single.fault or None) == {FAULT_STUCK: "stuck", FAULT_SPIKE: "spike", FAULT_DROPOUT: "dropout"}.get(
            fault
        )
    changes = {s.change for s in singles}
    assert {"raised", "cleared"} <= changes and any(s.fault == "stuck" for s in singles)  # the stream exercised them


def test_a_row_checkpointed_and_loaded_goes_on_as_if_never_stopped():
    readings = stream(5, sensors=3, steps=200)
    half = len(readings) // 2
    whole = WaterScreen(SPECS)
    expected = [whole.step_one(k, v, t) for k, v, t in readings]
    first = WaterScreen(SPECS)
    before = [first.step_one(k, v, t) for k, v, t in readings[:half]]
    restored = WaterScreen(SPECS)
    for key in sorted(first.rows, reverse=True):  # another row order than the first screen's
        restored.load(key, first.state(key), parameters=[])
    after = [restored.step_one(k, v, t) for k, v, t in readings[half:]]
    assert before + after == expected


@pytest.mark.parametrize("jump_s", [8 * 86400.0, -400 * 86400.0])
def test_a_sensor_back_after_a_week_or_sent_back_in_time_learns_afresh(jump_s):
    """What a sensor learned before a long silence (or on another time line, as a replay of old
    data) is stale: after the jump it is screened as a new sensor would be, and an open event ends."""
    rng = np.random.default_rng(8)
    t = np.arange(0, 2 * 86400, 600.0)
    before, after = quiet(t, rng), quiet(t, rng)
    before[-2:, :3] += [-3.0, 1.5, 0.5]  # in an event when it falls silent
    later = t[-1] + jump_s + t
    screen, fresh = WaterScreen(SPECS), WaterScreen(SPECS)
    screen.add("s", NAMES)
    fresh.add("s", NAMES)
    assert screen.step_many(np.zeros(len(t), int), before, t).alarm[-1]
    got = screen.step_many(np.zeros(len(t), int), after, later)
    expected = fresh.step_many(np.zeros(len(t), int), after, later)
    assert got.change[0] == CLEARED and got.fault[0] == FAULT_DROPOUT
    np.testing.assert_array_equal(got.z, expected.z)
    np.testing.assert_array_equal(got.alarm, expected.alarm)
    np.testing.assert_array_equal(got.change[1:], expected.change[1:])


def test_rounds_keep_each_rows_order_and_hold_a_row_once():
    rows = np.array([4, 2, 4, 4, 7, 2])
    parts = [np.arange(6)[r] for r in rounds(rows)]
    assert [list(p) for p in parts] == [[0, 1, 4], [2, 5], [3]]
    assert rounds(np.array([], int)) == [] and rounds(np.array([1, 2, 3])) == [slice(None)]


@pytest.mark.parametrize("cadence_s", [60.0, 600.0])
def test_a_lasting_level_shift_is_learned_within_its_configured_time_and_the_alarm_clears(cadence_s):
    settings = ScreenSettings(accept_after_s=1800.0)
    screen = WaterScreen(SPECS, settings)
    rng = np.random.default_rng(3)
    t = np.arange(0, 3 * 86400, cadence_s)
    X = quiet(t, rng)
    shift_at = 2 * 86400
    X[t >= shift_at, :3] += [-2.0, 0.8, 0.4]  # a new normal: DO down, NH3-N and pH up, for good
    screen.add("s", NAMES)
    v = screen.step_many(np.zeros(len(t), int), X, t)
    after = t >= shift_at
    raised = t[(v.change == RAISED) & after]
    cleared = t[(v.change == CLEARED) & after]
    assert len(raised) and raised[0] - shift_at <= cadence_s  # seen at once, across three parameters
    assert len(cleared) and cleared[0] - shift_at <= settings.accept_after_s + 2 * cadence_s
    settled = t >= shift_at + settings.accept_after_s + 3600
    assert not v.alarm[settled].any()  # learned: no alarm again, never locked out
    assert np.nanmax(np.abs(v.z[settled, :3])) < 6
    assert not (v.change[(t < shift_at) & (t > 86400)] == RAISED).any()  # and the quiet day before raised nothing


def test_one_reading_of_one_parameter_never_raises_but_parameters_together_do():
    rng = np.random.default_rng(4)
    t = np.arange(0, 2 * 86400, 60.0)
    X = quiet(t, rng)
    X[2000, 1] += 5.0  # NH3-N alone, once, far off
    X[2600, 0] -= 1.0  # DO and NH3-N together, once
    X[2600, 1] += 0.3
    screen = WaterScreen(SPECS)
    screen.add("s", NAMES)
    v = screen.step_many(np.zeros(len(t), int), X, t)
    assert not v.alarm[1990:2010].any() and v.evidence[2000] > 0
    assert v.change[2600] == RAISED
    assert not v.alarm[2610:].any()


def test_a_plume_on_the_first_day_at_an_hour_not_yet_seen_is_raised_at_ten_minute_cadence():
    """A river station in its first day (half the hours of the day not seen yet), read every 10
    minutes: NH3-N alone rises over 40 minutes to 20 noise sd and stays an hour. Neither the daily
    profile's first visit of the hour (which would learn the plume as the hour's normal) nor a window
    shorter than the cadence (which forgets each reading before the next) may hide it."""
    rng = np.random.default_rng(8)
    t = np.arange(0, 20 * 3600, 600.0)
    X = quiet(t, rng)
    start = int(17 * 3600 / 600)
    X[start : start + 10, 1] += 0.4 * np.minimum(np.arange(1, 11) / 4, 1.0)  # sd of NH3-N: 0.02
    screen = WaterScreen(SPECS)
    screen.add("s", NAMES)
    v = screen.step_many(np.zeros(len(t), int), X, t)
    raised = np.flatnonzero(v.change == RAISED)
    assert raised.tolist() and start <= raised[0] <= start + 5, raised
    assert not v.alarm[:start].any()


def test_directions_come_from_the_parameters():
    rng = np.random.default_rng(5)
    t = np.arange(0, 2 * 86400, 600.0)
    results = {}
    for name, shifts in (
        ("do up", [2.0, 0.0, 0.0, 0.0]),
        ("do down", [-2.0, 0.0, 0.0, 0.0]),
        ("flow", [0.0, 0.0, 0.0, 3000.0]),
        ("ph both", [0.0, 0.0, -0.6, 0.0]),
    ):
        X = quiet(t, rng)
        X[200:204] += shifts
        X[200:204, 1] += 0.1  # NH3-N a little up too (5 sd: not an event alone), in every case
        screen = WaterScreen(SPECS)
        screen.add("s", NAMES)
        v = screen.step_many(np.zeros(len(t), int), X, t)
        results[name] = bool(v.alarm[200:204].any())
    assert results == {"do up": False, "do down": True, "flow": False, "ph both": True}


def test_quantised_readings_that_repeat_keep_a_sane_scale():
    rng = np.random.default_rng(6)
    t = np.arange(0, 3 * 86400, 60.0)
    X = quiet(t, rng, quantum=0.1)  # 0.1-unit steps: most readings repeat the last one in NH3-N and pH
    assert np.mean(np.diff(X[:, 1]) == 0) > 0.5
    screen = WaterScreen([ParameterSpec(s.name, s.direction, 1e-6) for s in SPECS])  # even with no resolution set
    screen.add("s", NAMES)
    v = screen.step_many(np.zeros(len(t), int), X, t)
    assert np.nanmax(np.abs(v.z[t > 86400])) < 20
    assert v.alarm[t > 86400].mean() < 0.01


def test_faults_are_labelled_and_raise_nothing():
    rng = np.random.default_rng(7)
    t = np.arange(0, 2 * 86400, 600.0)
    X = quiet(t, rng)
    X[150, 1] += 0.25  # a spike of NH3-N: 12 noise sd, back at the next reading
    X[200:210] = X[199]  # the instrument freezes for 100 min
    keep = np.ones(len(t), bool)
    keep[250:260] = False  # a 100-minute gap
    screen = WaterScreen(SPECS, ScreenSettings(stuck_s=1200.0))
    screen.add("s", NAMES)
    v = screen.step_many(np.zeros(keep.sum(), int), X[keep], t[keep])
    at = {int(k): n for n, k in enumerate(np.flatnonzero(keep))}
    assert v.fault[at[151]] == FAULT_SPIKE and NAMES[v.fault_parameter[at[151]]] == "nh3n"
    assert (v.fault[at[201] : at[210]] == FAULT_STUCK).all() and v.fault[at[200]] != FAULT_STUCK  # 1,200 s after 199
    assert v.fault[at[260]] == FAULT_DROPOUT
    assert not v.alarm.any()


def test_settings_and_parameters_fail_fast():
    with pytest.raises(ValueError, match="window_sec"):
        ScreenSettings.from_mapping({"window_sec": 60})
    with pytest.raises(ValueError, match="direction"):
        ParameterSpec("do", "sideways", 0.01)
    with pytest.raises(ValueError, match="resolution"):
        ParameterSpec("do", "down", 0.0)
