"""Crowds: density -> Fruin level of service -> tier; a 15-minute density forecast per zone; the
dispersal plan.

Fruin's walkway levels of service (config/crowd.toml ``[level_of_service]``) are bounds on the
density, persons/m²; ``tiers`` maps the warning tiers to the level at which they start. The
forecaster is Holt's linear method on the zone's density, with the trend blended with what the
counters measure directly: the net inflow (flow in - flow out) divided by the area is the rate of
change of the density, available a step before the count shows it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

LEVELS = "ABCDEF"


def level_of_service(density: float, bounds: Mapping[str, float]) -> str:
    """Fruin level (A..F) of a density, persons/m²; ``bounds`` are each level's upper density bound (A..E).

    >>> bounds = {"A": 0.31, "B": 0.43, "C": 0.72, "D": 1.08, "E": 2.17}
    >>> [level_of_service(d, bounds) for d in (0.1, 0.5, 1.08, 3.0)]
    ['A', 'C', 'E', 'F']
    """
    return str(levels_many(np.array([density]), bounds)[0])


def levels_many(density: np.ndarray, bounds: Mapping[str, float]) -> np.ndarray:
    """Vectorised ``level_of_service``: densities (N,) -> levels (N,) as one-letter strings."""
    edges = np.array([bounds[lvl] for lvl in LEVELS[:-1]])
    return np.array(list(LEVELS))[np.searchsorted(edges, np.asarray(density, dtype=float), side="right")]


def tier_for_level(
    level: str, tiers: Mapping[str, str], order: Sequence[str] = ("blue", "yellow", "orange", "red")
) -> str | None:
    """The highest tier whose starting level ``level`` has reached, or None.

    >>> tier_for_level("E", {"yellow": "D", "orange": "E", "red": "F"}), tier_for_level("C", {"yellow": "D"})
    ('orange', None)
    """
    reached = [t for t in order if t in tiers and LEVELS.index(level) >= LEVELS.index(tiers[t])]
    return reached[-1] if reached else None


def density_bound(tier: str, tiers: Mapping[str, str], bounds: Mapping[str, float]) -> float:
    """The density (persons/m²) at which ``tier`` starts: the upper bound of the level below its level."""
    level = LEVELS.index(tiers[tier])
    return 0.0 if level == 0 else float(bounds[LEVELS[level - 1]])


@dataclass
class ZoneForecaster:
    """Holt's linear forecaster of one zone's density (persons/m²), one update per counter step.

    State is the smoothed ``level``, the ``trend`` (persons/m² per minute), the time of the last
    update and an exponentially weighted variance of the one-step errors, for the interval.
    ``flow_trend`` (net inflow / area, persons/m² per minute), when the counter reports flows, is
    blended into the trend with weight ``flow_weight``: the flows show a surge before the count
    has grown much.

    When it fails: a linear trend overshoots at the top of a surge (it does not know the peak) and
    lags its start by a few steps; a counter that drops out leaves the forecast where it was.

    >>> f = ZoneForecaster()
    >>> for minute in range(30):
    ...     f.learn_one(minute * 60.0, 0.5 + 0.01 * minute)          # +0.01 persons/m² per minute
    >>> round(f.forecast(15 * 60), 2), round(f.trend, 3)
    (0.94, 0.01)
    """

    alpha: float = 0.3
    beta: float = 0.1
    flow_weight: float = 0.5
    level: float | None = None
    trend: float = 0.0
    t_s: float | None = None
    err_var: float = 0.0

    def learn_one(self, t_s: float, density: float, flow_trend: float | None = None) -> None:
        if self.level is None or self.t_s is None:
            self.level, self.t_s = float(density), float(t_s)
            return
        dt_min = (t_s - self.t_s) / 60
        if dt_min <= 0:
            return  # late or repeated: the state has moved past it
        predicted = self.level + self.trend * dt_min
        error = density - predicted
        self.err_var = 0.9 * self.err_var + 0.1 * error**2 / dt_min
        level = self.alpha * density + (1 - self.alpha) * predicted
        trend = self.beta * (level - self.level) / dt_min + (1 - self.beta) * self.trend
        if flow_trend is not None and math.isfinite(flow_trend):
            trend = (1 - self.flow_weight) * trend + self.flow_weight * flow_trend
        self.level, self.trend, self.t_s = level, trend, float(t_s)

    def forecast(self, horizon_s: float) -> float:
        """Density expected ``horizon_s`` after the last update (never below 0)."""
        return max(0.0, (self.level or 0.0) + self.trend * horizon_s / 60)

    def interval(self, horizon_s: float, z: float = 1.28) -> tuple[float, float]:
        """An (approximately 80%) interval around ``forecast``: one-step error spread grown with the horizon."""
        half = z * math.sqrt(self.err_var * max(horizon_s / 60, 1.0))
        centre = self.forecast(horizon_s)
        return max(0.0, centre - half), centre + half

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: Mapping) -> ZoneForecaster:
        return cls(**state)


def officers_needed(
    persons: float, area_m2: float, congestion_density: float, persons_per_officer: float, minimum: int = 2
) -> int:
    """Police to deploy: one per ``persons_per_officer`` above the congestion density (at least ``minimum``).

    >>> officers_needed(40000, 30000, 1.08, 150)
    51
    """
    excess = max(0.0, persons - congestion_density * area_m2)
    return max(minimum, math.ceil(excess / persons_per_officer))


def dispersal_plan(
    tier: str,
    templates: Mapping[str, Sequence[str]],
    facts: Mapping[str, object],
    order: Sequence[str] = ("blue", "yellow", "orange", "red"),
) -> list[str]:
    """The plan's steps for ``tier``: the templates of every tier up to it, filled with ``facts``.

    >>> plan = dispersal_plan("orange", {"yellow": ["police to {entrances}"], "orange": ["limit {metro}"]},
    ...                       {"entrances": "Minzu Rd", "metro": "Xiaoshizi"})
    >>> plan
    ['police to Minzu Rd', 'limit Xiaoshizi']
    """
    steps: list[str] = []
    for t in order[: order.index(tier) + 1]:
        steps += [item.format(**facts) for item in templates.get(t, [])]
    return steps
