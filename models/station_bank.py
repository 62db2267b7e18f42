"""Many water stations screened at once: ``StationWatch`` and the persistence rule as arrays.

``StationWatch.step`` and ``persistence.step`` are the one-reading forms (the specification); a
bank holds the same state for many sensors, one row each, and ``step_many`` takes a batch of
readings (a Kafka record of the bridge) in one pass of numpy per round, where a round holds each
sensor at most once, in arrival order. The results are those of the one-reading forms (the tests
compare them). Columns are the bank's parameters; a sensor screens the parameters of its first
reading (as ``StationWatch`` does), and the limit rule runs on every parameter with a limit.
A row's state moves to and from the one-reading forms' plain data (``state`` / ``load``), so an
agent checkpoints it in a table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.anomaly import GAUSS_MAD, UNSEEN_SPREAD, SeasonalRobustZ
from models.sensor_faults import DETECTORS, POLLUTION_SIGN

RAISED, WORSENED, CLEARED = 1, 2, 3  # change codes (0: no change); the screen only raises or clears


@dataclass
class BankVerdicts:
    """Per reading of a batch: the screen's change, stuck, its parameter column (-1: none) and z;
    the limit rule's change per column."""

    change: np.ndarray        # (n,) int8
    stuck: np.ndarray         # (n,) bool
    best: np.ndarray          # (n,) int
    z: np.ndarray             # (n,) float
    limit_change: np.ndarray  # (n, P) int8


class _Detectors:
    """The ``SeasonalRobustZ`` detectors of a screen over rows, stacked: state arrays shaped
    (detector, row, ...), each detector's settings as a (detector, 1, 1) array, so a round costs the
    same numpy calls however many detectors there are. NaN marks what is unknown (no residual yet, in
    the grace period); ``StationBank.step_many`` silences numpy's warnings about it once."""

    ARRAYS = ("profile", "weight", "level", "abs_dev", "n_dev", "n_seen")

    def __init__(self, options: Sequence[Mapping[str, float]], rows: int, columns: int):
        detectors = [SeasonalRobustZ(**o) for o in options]
        self.n_bins = detectors[0].n_bins
        if any(d.n_bins != self.n_bins for d in detectors):
            raise ValueError("the detectors of a bank share their number of profile knots")

        def setting(value) -> np.ndarray:
            return np.array([value(d) for d in detectors], float)[:, None, None]

        self.min_scale, self.grace_period = setting(lambda d: d.min_scale), setting(lambda d: d.grace_period)
        self.scale_rate, self.level_rate = setting(lambda d: 2.0 / (d.scale_window + 1)), setting(lambda d: 2.0 / (d.level_window + 1))
        self.season_prior, self.season_window = setting(lambda d: d.season_prior), setting(lambda d: d.season_window)
        # |z| above which a reading is not learned (SeasonalRobustZ._allowed); inf: learn everything
        self.z_protect = setting(lambda d: d.z0 - d.k * math.log1p(-d.protect_threshold)
                                 if d.protect and d.protect_threshold < 1.0 else math.inf)
        shape = (len(detectors), rows)
        self.profile, self.weight = np.zeros((*shape, self.n_bins, columns)), np.zeros((*shape, self.n_bins, columns))
        self.level, self.abs_dev, self.n_dev = np.zeros((*shape, columns)), np.zeros((*shape, columns)), np.zeros((*shape, columns))
        self.n_seen = np.zeros((*shape, columns), np.int64)

    def knots(self, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each hour's two profile knots, (2, n), and their weights 1 - w and w, (2, n, 1)."""
        pos = (hours % 24.0) / 24.0 * self.n_bins
        low = np.floor(pos)
        knots = (low.astype(np.int64) + _BOTH_KNOTS) % self.n_bins
        return knots, _KNOT_BASE + _KNOT_SIGN * (pos - low)[:, None]

    def residual(self, i, x, knots, knot_w):
        """Residuals and z (detector, row, column), and what ``learn`` reuses: the profile at the
        hour and its knots' profile and weight (detector, knot, row, column)."""
        at = (slice(None), i[None], knots)
        knot_profile, knot_weight = self.profile[at], self.weight[at]
        profile = (knot_w * knot_profile).sum(axis=1)
        scale = np.maximum(GAUSS_MAD * self.abs_dev[:, i], self.min_scale)
        unknown = 1.0 - (knot_w * np.minimum(knot_weight, 1.0)).sum(axis=1)
        if np.any(unknown > 0):  # hypot(scale, 0) is scale: rows that know this hour keep their scale exactly
            seen = self.weight[:, i] > 0
            count = np.maximum(seen.sum(axis=2), 1)
            mean = (self.profile[:, i] * seen).sum(axis=2) / count
            spread = np.sqrt((((self.profile[:, i] - mean[:, :, None]) ** 2) * seen).sum(axis=2) / count)
            scale = np.hypot(scale, UNSEEN_SPREAD * unknown * spread)
        n_seen = self.n_seen[:, i]
        r = np.where(n_seen > 0, x - (self.level[:, i] + profile), np.nan)
        z = np.where(n_seen >= self.grace_period, r / scale, np.nan)
        return r, z, (profile, knot_profile, knot_weight)

    def allowed(self, z: np.ndarray) -> np.ndarray:
        return ~(np.abs(z) > self.z_protect)

    def learn(self, i, x, r, knots, knot_w, seen_at, mask):
        """Learn ``x`` where ``mask``; ``seen_at`` is what ``residual`` gave (the state is unchanged since)."""
        profile, knot_profile, knot_weight = seen_at
        mask = mask & np.isfinite(x)
        has_r = mask & np.isfinite(r)
        x0 = np.where(mask, x, 0.0)
        self.n_seen[:, i] = n_seen = self.n_seen[:, i] + mask
        self.n_dev[:, i] = n_dev = self.n_dev[:, i] + has_r
        a_scale = np.maximum(self.scale_rate, 1.0 / np.maximum(n_dev, 1.0))
        abs_dev = self.abs_dev[:, i]
        self.abs_dev[:, i] = abs_dev + has_r * a_scale * (np.abs(np.where(has_r, r, 0.0)) - abs_dev)
        a_level = np.maximum(self.level_rate, 1.0 / np.maximum(n_seen, 1))
        level = self.level[:, i]
        self.level[:, i] = level = level + mask * a_level * (x0 - profile - level)
        deviation = x0 - level
        # both knots at once, shaped (detector, knot, row, column): a row's two knots differ
        mask = mask[:, None]
        weights = knot_weight + mask * knot_w
        rate = knot_w / np.minimum(np.maximum(weights + self.season_prior[:, None], knot_w), self.season_window[:, None])
        learned = knot_profile + mask * rate * (deviation[:, None] - knot_profile)
        skip = knot_w <= 0  # the one-reading form skips a knot of weight 0 (0/0 here)
        at = (slice(None), i[None], knots)
        self.weight[at] = np.where(skip, knot_weight, weights)
        self.profile[at] = np.where(skip, knot_profile, learned)


# knots() as arrays: the knots below and above an hour, weighted 1 - w and w
_BOTH_KNOTS = np.arange(2)[:, None]
_KNOT_BASE, _KNOT_SIGN = np.array([1.0, 0.0])[:, None, None], np.array([-1.0, 1.0])[:, None, None]


class StationBank:
    def __init__(self, parameters: Sequence[str], z_flag: float = 4.5, z_support: float = 3.5, z_single: float = 6.0,
                 persistence: int = 3, limit_persistence: int = 3, worsen_step: float = 0.05,
                 detectors: Sequence[Mapping[str, float]] = DETECTORS, capacity: int = 64):
        self.parameters = list(parameters)
        self.column = {p: j for j, p in enumerate(self.parameters)}
        self.z_flag, self.z_support, self.z_single, self.persistence = z_flag, z_support, z_single, persistence
        self.limit_persistence, self.worsen_step = limit_persistence, worsen_step
        self._signs = np.array([POLLUTION_SIGN.get(p, 0) for p in self.parameters], float)
        self._detector_options = list(detectors)
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        columns = len(self.parameters)
        self.rows: dict[str, int] = {}
        self.own = np.zeros((capacity, columns), bool)
        self.previous = np.full((capacity, columns), np.nan)
        self.bad, self.good, self.active = np.zeros(capacity, np.int64), np.zeros(capacity, np.int64), np.zeros(capacity, bool)
        # the limit rule (models/persistence.py) per row and column; ``seen``: stepped at least once
        self.limit_bad, self.limit_good = np.zeros((capacity, columns), np.int64), np.zeros((capacity, columns), np.int64)
        self.limit_active, self.limit_reported = np.zeros((capacity, columns), bool), np.zeros((capacity, columns))
        self.limit_seen = np.zeros((capacity, columns), bool)
        self.stepped = np.zeros(capacity, bool)  # screened at least once (a StationWatch's detectors have state)
        self.detectors = _Detectors(self._detector_options, capacity, columns)

    _ROW_ARRAYS = ("own", "previous", "bad", "good", "active", "limit_bad", "limit_good", "limit_active", "limit_reported",
                   "limit_seen", "stepped")

    def _grow(self) -> None:
        old_rows, capacity = self.rows, 2 * len(self.own)
        old = {name: getattr(self, name) for name in self._ROW_ARRAYS}
        old_detectors = self.detectors
        self._allocate(capacity)
        self.rows = old_rows
        for name, array in old.items():
            getattr(self, name)[: len(array)] = array
        for name in _Detectors.ARRAYS:
            getattr(self.detectors, name)[:, : getattr(old_detectors, name).shape[1]] = getattr(old_detectors, name)

    def forget(self) -> None:
        """Drop every row (partitions moved: rows are loaded again from their checkpoints)."""
        self._allocate(len(self.own))

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def add(self, key: str, parameters: Sequence[str]) -> int:
        """A new row for a sensor that screens ``parameters`` (those of its first reading)."""
        if len(self.rows) == len(self.own):
            self._grow()
        i = self.rows[key] = len(self.rows)
        self.own[i] = [p in set(parameters) for p in self.parameters]
        return i

    # --- to and from the one-reading forms' plain data ------------------------------------------
    def load(self, key: str, watch: Mapping | None, persistence: Mapping[str, Sequence], parameters: Sequence[str]) -> int:
        """A row from ``StationWatch.state()`` (None: not screened yet, it will screen ``parameters``)
        and persistence states ``{parameter: [bad_run, good_run, active, reported_severity]}``."""
        i = self.add(key, watch["parameters"] if watch else parameters)
        for p, (bad, good, active, reported) in persistence.items():
            j = self.column[p]
            self.limit_bad[i, j], self.limit_good[i, j], self.limit_active[i, j] = bad, good, active
            self.limit_reported[i, j], self.limit_seen[i, j] = reported, True
        if watch:
            cols = [self.column[p] for p in watch["parameters"]]
            if watch["previous"] is not None:
                self.previous[i, cols] = [np.nan if v is None else v for v in watch["previous"]]
            self.bad[i], self.good[i], self.active[i] = watch["bad"], watch["good"], watch["active"]
            d = self.detectors
            for k, s in enumerate(watch["detectors"]):
                if s:
                    self.stepped[i] = True
                    for name in ("profile", "weight"):
                        getattr(d, name)[k, i][:, cols] = np.array(s[name], float)
                    for name in ("level", "abs_dev", "n_dev", "n_seen"):
                        getattr(d, name)[k, i, cols] = s[name]
        return i

    def state(self, key: str) -> tuple[dict | None, dict[str, list]]:
        """The row as ``(StationWatch.state(), persistence states)``, what ``load`` takes."""
        i = self.rows[key]
        persistence = {p: [int(self.limit_bad[i, j]), int(self.limit_good[i, j]), bool(self.limit_active[i, j]),
                           float(self.limit_reported[i, j])] for p, j in self.column.items() if self.limit_seen[i, j]}
        cols = np.flatnonzero(self.own[i])
        if not self.stepped[i]:
            return None, persistence
        previous, d = self.previous[i, cols], self.detectors
        watch = {"parameters": [self.parameters[j] for j in cols],
                 "detectors": [{"shape": [len(cols)], "profile": d.profile[k, i][:, cols].tolist(), "weight": d.weight[k, i][:, cols].tolist(),
                                "level": d.level[k, i, cols].tolist(), "abs_dev": d.abs_dev[k, i, cols].tolist(),
                                "n_dev": d.n_dev[k, i, cols].tolist(), "n_seen": d.n_seen[k, i, cols].tolist()}
                               for k in range(len(d.profile))],
                 "previous": [None if np.isnan(v) else float(v) for v in previous],
                 "bad": int(self.bad[i]), "good": int(self.good[i]), "active": bool(self.active[i])}
        return watch, persistence

    # --- a batch --------------------------------------------------------------------------------
    def step_many(self, rows: np.ndarray, values: np.ndarray, hours: np.ndarray, severity: np.ndarray) -> BankVerdicts:
        """Step ``rows`` (n,) with ``values`` (n, P; NaN = not in the reading) at local ``hours`` (n,);
        ``severity`` (n, P) is how far each value is beyond its limit: NaN within it, and no limit
        or no value is marked by ``values`` NaN or a column without a limit (pass -inf there)."""
        rows = np.asarray(rows, np.int64)
        n = len(rows)
        out = BankVerdicts(np.zeros(n, np.int8), np.zeros(n, bool), np.full(n, -1), np.zeros(n), np.zeros(values.shape, np.int8))
        # the k-th reading of a sensor in the batch goes in round k: a round has each row once
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        starts = np.r_[0, np.flatnonzero(sorted_rows[1:] != sorted_rows[:-1]) + 1]
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN marks what is unknown; once, not per call
            for k in range(int(rank.max()) + 1 if n else 0):
                at = np.flatnonzero(rank == k)
                self._limits(rows[at], values[at], severity[at], out.limit_change, at)
                self._screen(rows[at], values[at], hours[at], out, at)
        return out

    def _limits(self, i, x, severity, change_out, at) -> None:
        checked = np.isfinite(x) & ~np.isneginf(severity)
        exceeded = checked & ~np.isnan(severity)
        bad = np.where(exceeded, self.limit_bad[i] + 1, 0)
        good = np.where(exceeded, 0, self.limit_good[i] + 1)
        active, reported = self.limit_active[i], self.limit_reported[i]
        raised = checked & ~active & (bad >= self.limit_persistence)
        cleared = checked & active & (good >= self.limit_persistence)
        worsened = checked & active & exceeded & ~cleared & (severity >= reported + self.worsen_step)
        self.limit_bad[i] = np.where(checked, bad, self.limit_bad[i])
        self.limit_good[i] = np.where(checked, good, self.limit_good[i])
        self.limit_active[i] = (active | raised) & ~cleared
        self.limit_reported[i] = np.where(raised | worsened, severity, np.where(cleared, 0.0, reported))  # exceeded: finite
        self.limit_seen[i] |= checked
        change_out[at] = raised * RAISED + worsened * WORSENED + cleared * CLEARED  # exclusive (np.select costs 35 us)

    def _screen(self, i, x, hours, out: BankVerdicts, at) -> None:
        own = self.own[i]
        x = np.where(own, x, np.nan)
        previous = self.previous[i]
        # NaN never equals: a first reading (previous all NaN) or one with a parameter missing is not stuck
        stuck = np.all((x == previous) | ~own, axis=1) & np.any(own & np.isfinite(x), axis=1)
        self.previous[i] = x
        out.stuck[at] = stuck
        i, x, hours, at = i[~stuck], x[~stuck], hours[~stuck], at[~stuck]
        if not len(i):
            return
        missing = np.isnan(x)
        x0 = np.where(missing, 0.0, x)
        d = self.detectors
        knots, knot_w = d.knots(hours)
        r, z_d, seen_at = d.residual(i, x0, knots, knot_w)  # (detector, row, column)
        # the pollution way: DO down, nutrients and oil up; the faster or slower level, whichever sees more
        stacked = np.where(missing, np.nan, z_d) * self._signs
        z = np.where(np.isnan(stacked), -np.inf, stacked).max(axis=0)
        z = np.where((self._signs == 0) | np.isneginf(z), np.nan, z)
        some = ~np.isnan(z).all(axis=1)
        best = np.where(some, np.argmax(np.where(np.isnan(z), -np.inf, z), axis=1), -1)
        top = np.where(some, z[np.arange(len(i)), np.maximum(best, 0)], 0.0)
        supporting = np.count_nonzero(z >= self.z_support, axis=1)  # NaN compares False
        flagged = ((top >= self.z_flag) & (supporting >= 2)) | (top >= self.z_single)
        d.learn(i, x0, r, knots, knot_w, seen_at, ~missing & ~flagged[:, None] & d.allowed(z_d))
        self.stepped[i] = True
        self.bad[i] = bad = np.where(flagged, self.bad[i] + 1, 0)
        self.good[i] = good = np.where(flagged, 0, self.good[i] + 1)
        raised = ~self.active[i] & (bad >= self.persistence)
        cleared = self.active[i] & (good >= self.persistence)
        self.active[i] = (self.active[i] | raised) & ~cleared
        out.change[at] = raised * RAISED + cleared * CLEARED
        out.best[at], out.z[at] = best, top
