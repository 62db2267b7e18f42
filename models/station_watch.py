"""Streaming screen of one water station: pollution or sensor fault, reading by reading.

The online form of ``sensor_faults.classify_station``'s pollution rule: every parameter is scored
against its own daily cycle (``SeasonalRobustZ``, test-then-train, a fast and a slow level); a
reading is flagged when two or more parameters move the way pollution moves them (one of them by at
least ``z_flag`` robust sd, the other ``z_support``) or one moves by ``z_single``; ``persistence``
flagged readings in a row raise, as many normal ones clear. A reading that repeats the last one
exactly in every parameter is a frozen instrument: reported as stuck, never learned, never raised.
State is plain data (``state`` / ``from_state``) so an agent keeps it in a Faust table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.anomaly import SeasonalRobustZ
from models.sensor_faults import DETECTORS, POLLUTION_SIGN


@dataclass(frozen=True)
class Verdict:
    change: str | None      # "raised" | "cleared" | None
    stuck: bool
    parameter: str | None   # the parameter furthest from normal, the pollution way
    z: float                # its robust z, signed the pollution way (positive = worse)


class StationWatch:
    """
    >>> rng = np.random.default_rng(3)
    >>> watch = StationWatch(["do", "nh3n", "cod"])
    >>> changes = []
    >>> for i in range(6 * 24 * 2 + 6):  # two quiet days, then NH3-N and COD up, DO down
    ...     hour = (i / 6) % 24
    ...     bump = 1.0 if i >= 6 * 24 * 2 else 0.0
    ...     v = {"do": 8 + 0.5 * np.sin(hour / 24 * 2 * np.pi) - 2 * bump + rng.normal(0, 0.08),
    ...          "nh3n": 0.3 + 1.0 * bump + rng.normal(0, 0.02), "cod": 12 + 6 * bump + rng.normal(0, 0.6)}
    ...     changes.append(watch.step(v, hour).change)
    >>> [c for c in changes if c], changes.index("raised") - 6 * 24 * 2
    (['raised'], 2)
    """

    def __init__(self, parameters: Sequence[str], z_flag: float = 4.5, z_support: float = 3.5, z_single: float = 6.0,
                 persistence: int = 3):
        self.parameters = list(parameters)
        self.z_flag, self.z_support, self.z_single, self.persistence = z_flag, z_support, z_single, persistence
        self._signs = np.array([POLLUTION_SIGN.get(p, 0) for p in self.parameters], float)
        self._detectors = [SeasonalRobustZ(**options) for options in DETECTORS]
        self._previous: np.ndarray | None = None
        self._bad = self._good = 0
        self.active = False

    def step(self, values: Mapping[str, float], hour: float) -> Verdict:
        x = np.array([values.get(p, np.nan) for p in self.parameters], float)
        stuck = self._previous is not None and np.array_equal(x, self._previous, equal_nan=False) and not np.isnan(x).all()
        self._previous = x
        if stuck:
            return Verdict(None, True, None, 0.0)
        # score and learn from one residual per detector (z_row then learn_row would compute it twice)
        missing = np.isnan(x)
        x0 = np.where(missing, 0.0, x)
        parts = []
        for d in self._detectors:
            d._ensure_state(x.shape)
            k1, k2, w = d._knots(hour)
            k1, k2, w = int(k1), int(k2), float(w)
            r, z_d = d._residual(x0, k1, k2, w)
            parts.append((d, r, z_d, k1, k2, w))
        # the pollution way: DO down, nutrients and oil up; the faster or slower level, whichever sees more
        stacked = np.stack([np.where(missing, np.nan, z_d) * self._signs for _, _, z_d, *_ in parts])
        z = np.where(np.isnan(stacked), -np.inf, stacked).max(axis=0)
        z = np.where((self._signs == 0) | np.isneginf(z), np.nan, z)  # NaN: warming up, or not a pollution sign
        best = int(np.nanargmax(z)) if not np.isnan(z).all() else -1
        top = float(z[best]) if best >= 0 else 0.0
        supporting = int(np.sum(np.nan_to_num(z, nan=-np.inf) >= self.z_support))
        flagged = (top >= self.z_flag and supporting >= 2) or top >= self.z_single
        for d, r, z_d, k1, k2, w in parts:
            d._learn(x0, r, k1, k2, w, ~missing & (not flagged) & d._allowed(z_d))
        self._bad, self._good = (self._bad + 1, 0) if flagged else (0, self._good + 1)
        change = None
        if not self.active and self._bad >= self.persistence:
            self.active, change = True, "raised"
        elif self.active and self._good >= self.persistence:
            self.active, change = False, "cleared"
        return Verdict(change, False, self.parameters[best] if best >= 0 else None, top)

    def state(self) -> dict:
        return {"parameters": self.parameters, "detectors": [d.state() for d in self._detectors],
                "previous": None if self._previous is None else [None if np.isnan(v) else float(v) for v in self._previous],
                "bad": self._bad, "good": self._good, "active": self.active}

    @classmethod
    def from_state(cls, state: Mapping, **options) -> "StationWatch":
        watch = cls(state["parameters"], **options)
        for d, s in zip(watch._detectors, state["detectors"]):
            d.load_state(s)
        if state["previous"] is not None:
            watch._previous = np.array([np.nan if v is None else v for v in state["previous"]], float)
        watch._bad, watch._good, watch.active = state["bad"], state["good"], state["active"]
        return watch
