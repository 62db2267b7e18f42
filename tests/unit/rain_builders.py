"""Builders for the rain tests: a gauge's accumulator filled with amounts, a moving storm cell."""

from __future__ import annotations

import numpy as np

from models.rain_accumulation import GaugeAccumulator

STEP = 300.0  # the gauges' reporting interval, s


def filled(amounts_mm, start_slot: int = 1) -> GaugeAccumulator:
    """An accumulator holding one amount per slot, the first in slot ``start_slot``."""
    acc = GaugeAccumulator(step_s=STEP)
    for k, mm in enumerate(amounts_mm, start=start_slot):
        acc.add(k * STEP, mm)
    return acc


def cell_rates(x, y, t_s, x0=0.0, y0=12.5, v_kmh=(9.0, 1.0), peak=50.0, r_km=5.0):
    """Rain rates (mm/h) at points ``(x, y)`` km at ``t_s`` of a Gaussian cell moving at ``v_kmh`` from ``(x0, y0)``."""
    cx, cy = x0 + v_kmh[0] * t_s / 3600, y0 + v_kmh[1] * t_s / 3600
    return peak * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r_km**2))
