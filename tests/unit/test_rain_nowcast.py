"""The storm-cell nowcast (models/rain_nowcast.py): a moving cell tracked downstream, a lone stuck gauge set aside."""

from __future__ import annotations

import numpy as np
import pytest

from models.rain_nowcast import StormNowcaster
from tests.unit.rain_builders import STEP, cell_rates


def grid() -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(10) * 5.0, np.arange(6) * 5.0)
    return gx.ravel(), gy.ravel()


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
