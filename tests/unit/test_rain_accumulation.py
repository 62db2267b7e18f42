"""Rain accumulations (models/rain_accumulation.py): windows, late, duplicate and missing readings, batch sums."""

from __future__ import annotations

import numpy as np
import pytest

from models.rain_accumulation import GaugeAccumulator, rolling_sum_mm
from tests.unit.rain_builders import STEP, filled


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
