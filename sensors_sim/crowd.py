"""Pedestrian counts per zone: a two-peak daily profile scaled by the day's visitors, plus surges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def daily_profile(local_hour: np.ndarray) -> np.ndarray:
    """Share of the day's peak present at each hour: quiet at night, peaks mid-afternoon and evening.

    >>> [round(float(daily_profile(np.array(h))), 2) for h in (4.0, 15.0, 20.5)]
    [0.03, 0.87, 1.0]
    """
    afternoon = 0.87 * np.exp(-((local_hour - 15.0) ** 2) / (2 * 2.2**2))
    evening = 1.0 * np.exp(-((local_hour - 20.5) ** 2) / (2 * 1.6**2))
    return np.maximum(np.maximum(afternoon, evening), 0.03)


@dataclass(frozen=True)
class Surge:
    """Extra people arriving at one zone: a Gaussian arrival bump peaking at ``peak_s``."""

    zone_index: int
    peak_s: float
    width_s: float
    extra_persons: float

    def persons(self, t_s: np.ndarray) -> np.ndarray:
        return self.extra_persons * np.exp(-((t_s - self.peak_s) ** 2) / (2 * self.width_s**2))


def present(
    t_s: np.ndarray, local_hour: np.ndarray, peak_persons: np.ndarray, day_factor: np.ndarray, surges: list[Surge]
) -> np.ndarray:
    """People present per zone (T, Z), noise-free."""
    base = daily_profile(local_hour)[:, None] * peak_persons[None, :] * day_factor[:, None]
    for s in surges:
        base[:, s.zone_index] += s.persons(t_s)
    return base


def flows_per_min(present_persons: np.ndarray, step_s: float, dwell_min: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    """Inflow and outflow (persons/min) consistent with the change in people present."""
    turnover = present_persons / dwell_min
    change = np.diff(present_persons, axis=0, prepend=present_persons[:1]) / (step_s / 60)
    inflow = turnover + np.clip(change, 0, None)
    outflow = inflow - change
    return inflow, np.clip(outflow, 0, None)
