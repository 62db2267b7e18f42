"""Rainfall: dry spells with light showers, and storm cells moving across the gauge field.

Rates are mm/h at gauge positions; a gauge reports the amount (mm) fallen in each interval, the
integral of the rate over that interval (midpoint rule on sub-steps), so accumulations add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StormCell:
    """A convective cell: Gaussian in space, sin² in time, moving in a straight line."""

    start_s: float
    duration_s: float
    x_km: float
    y_km: float
    vx_kmh: float
    vy_kmh: float
    peak_mm_h: float
    radius_km: float

    def rate_mm_h(self, t_s: np.ndarray, x_km: np.ndarray, y_km: np.ndarray) -> np.ndarray:
        """Rate at times (N,) and positions (G,) -> (N, G)."""
        age_s = t_s[:, None] - self.start_s
        alive = (age_s >= 0) & (age_s <= self.duration_s)
        envelope = np.where(alive, np.sin(np.pi * np.clip(age_s, 0, self.duration_s) / self.duration_s) ** 2, 0.0)
        cx = self.x_km + self.vx_kmh * age_s / 3600
        cy = self.y_km + self.vy_kmh * age_s / 3600
        d2 = (x_km[None, :] - cx) ** 2 + (y_km[None, :] - cy) ** 2
        return self.peak_mm_h * envelope * np.exp(-d2 / (2 * self.radius_km**2))

    def centre_at(self, t_s: float) -> tuple[float, float]:
        age_h = (t_s - self.start_s) / 3600
        return self.x_km + self.vx_kmh * age_h, self.y_km + self.vy_kmh * age_h


def showers(
    hours: int, n_gauges: int, rng: np.random.Generator, p_start: float = 0.03, p_stop: float = 0.25
) -> np.ndarray:
    """Hourly light-rain rates (hours, G): a wet/dry Markov chain over the field, patchy in space."""
    wet = np.zeros(hours, dtype=bool)
    draws = rng.random(hours)
    for h in range(1, hours):  # hourly states only: a few hundred steps, not per reading
        wet[h] = draws[h] < (1 - p_stop) if wet[h - 1] else draws[h] < p_start
    intensity = rng.gamma(1.2, 1.2, hours) * wet
    patchiness = rng.uniform(0.3, 1.4, (hours, n_gauges))
    return intensity[:, None] * patchiness


def amounts_mm(
    interval_end_s: np.ndarray,
    step_s: float,
    x_km: np.ndarray,
    y_km: np.ndarray,
    cells: list[StormCell],
    hourly_showers_mm_h: np.ndarray,
    substeps: int = 6,
) -> np.ndarray:
    """Rain (mm) fallen in each interval ending at ``interval_end_s``: (T, G)."""
    offsets = (np.arange(substeps) + 0.5) / substeps * step_s - step_s
    t_sub = (interval_end_s[:, None] + offsets[None, :]).ravel()
    rate = np.zeros((len(t_sub), len(x_km)))
    hour_index = np.clip((t_sub // 3600).astype(int), 0, len(hourly_showers_mm_h) - 1)
    rate += hourly_showers_mm_h[hour_index]
    for cell in cells:
        rate += cell.rate_mm_h(t_sub, x_km, y_km)
    return rate.reshape(len(interval_end_s), substeps, len(x_km)).mean(axis=1) * step_s / 3600
