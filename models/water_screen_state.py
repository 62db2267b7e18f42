"""The water screen's state: arrays with one row per sensor, grown as sensors arrive."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_BINS = 24  # knots of the daily profile


ROW_ARRAYS = (
    "own",
    "first_ts",
    "last_ts",
    "cadence_s",
    "previous",
    "same_since",
    "level",
    "abs_dev",
    "n_seen",
    "first_seen",
    "profile",
    "knot_seen_s",
    "recent",
    "out_since",
    "prior",
    "evidence",
    "peak",
    "alarm",
    "last_outlier",
    "before",
    "step_dev",
    "quantum",
)


@dataclass
class ScreenState:
    """Arrays, one row per sensor: levels and scales are (2, row, P) (fast, slow); the profile is
    (row, knot, P)."""

    rows: int
    columns: int
    own: np.ndarray = field(init=False)

    def __post_init__(self):
        r, p = self.rows, self.columns
        self.own = np.zeros((r, p), bool)  # the parameters the sensor screens
        self.first_ts = np.full(r, np.nan)
        self.last_ts = np.full(r, np.nan)
        self.cadence_s = np.full(r, np.nan)
        self.previous = np.full((r, p), np.nan)
        self.same_since = np.full(r, np.nan)  # first reading of the current run of exact repeats
        self.level = np.zeros((2, r, p))
        self.abs_dev = np.zeros((2, r, p))
        self.n_seen = np.zeros((r, p))
        self.first_seen = np.full((r, p), np.nan)
        self.profile = np.zeros((r, N_BINS, p))
        self.knot_seen_s = np.zeros((r, N_BINS, p))
        self.recent = np.full((r, p), np.nan)
        self.out_since = np.full((r, p), np.nan)
        self.prior = np.full((r, p), np.nan)  # the fast level before the last accepted shift
        self.evidence = np.zeros(r)
        self.peak = np.zeros((r, p))  # each parameter's peak z in the current event
        self.alarm = np.zeros(r, bool)
        self.last_outlier = np.full(r, np.nan)
        self.before = np.full((r, p), np.nan)  # the reading before the previous one
        self.step_dev = np.zeros((r, p))  # EWMA of |change from one reading to the next|
        self.quantum = np.zeros((r, p))  # the same over the changes that were not 0

    def reset(self, rows: np.ndarray) -> None:
        """``rows`` as new sensors (their parameters kept)."""
        fresh = ScreenState(len(rows), self.columns)
        for name in ROW_ARRAYS[1:]:
            if name in ("level", "abs_dev"):
                getattr(self, name)[:, rows] = getattr(fresh, name)
            else:
                getattr(self, name)[rows] = getattr(fresh, name)

    def grown(self, rows: int) -> ScreenState:
        bigger = ScreenState(rows, self.columns)
        for name in ROW_ARRAYS:
            old, new = getattr(self, name), getattr(bigger, name)
            if name in ("level", "abs_dev"):
                new[:, : old.shape[1]] = old
            else:
                new[: len(old)] = old
        return bigger
