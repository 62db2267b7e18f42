"""The water screen: one water-quality station's parameters, reading by reading, as many stations at once.

Every parameter of a station is compared with what it normally reads: a daily profile (24 knots,
linear between them) on top of two levels, a fast one that follows the day's wander and a slow one
that a broad plume cannot drag along. The residual over a robust scale (an EWMA of absolute
residuals, never below the sensor's resolution: real sensors repeat quantised values) is the
parameter's z. A z past ``z_outlier`` in the parameter's pollution direction (up, down or both;
"none" for context such as flow) is an outlier.

Station events come from the evidence across parameters over a short window, the job CANARY's
binomial event discriminator does: each outlier adds its excess over ``z_outlier`` (at most
``z_cap`` from one parameter on one reading), summed across the station's parameters, and the sum
decays with time constant ``window_s``, or one of the sensor's cadences if that is longer (so any
cadence and missing samples work, and a 10-minute station's readings still add up). An event is
raised when the evidence reaches ``raise_evidence``; it clears when every parameter has been back
for ``clear_s``. As ``z_cap`` < ``raise_evidence``, one reading of one parameter never raises an
event alone: it takes parameters together, or one parameter off on readings close in time.

Learning never stops: during an event, and for outlying readings, it goes on at ``alarm_weight``
(so a plume is not learned as normal within the event), and a parameter that has stayed outlying
for ``accept_after_s`` is taken as its new normal (its levels jump to its recent mean), so a lasting
shift (a recalibration, a new source of water) is learned in that time and its alarm clears.

Sensor faults are labelled per reading: ``stuck`` (every parameter read repeats the previous reading
exactly for ``stuck_s``), ``spike`` (one parameter far off both its neighbours on one reading:
labelled on the next reading), ``dropout`` (a gap longer than ``dropout_factor`` x the sensor's
cadence). A sensor silent for ``restart_after_s`` (or a reading that far before its last: another
time line, as a replay) starts learning afresh. Stuck readings are neither scored nor learned.

``WaterScreen.step_many`` takes a batch of readings of many sensors (rows) and runs it in rounds,
each round holding a row at most once, in arrival order; ``step_one`` is ``step_many`` with one
reading: the same code path. Times are seconds (epoch), never reading counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

GAUSS_MAD = math.sqrt(math.pi / 2)  # mean absolute deviation x this = standard deviation, for Gaussian noise
UNSEEN_SPREAD = 3.0  # an hour of the day not seen yet may be this many sd of the profile learned so far off
N_BINS = 24
DIRECTIONS = {"up": 1.0, "down": -1.0, "both": 0.0}  # "none": screened, never evidence of an event

RAISED, CLEARED = 1, 2  # change codes (0: no change)
FAULT_NONE, FAULT_STUCK, FAULT_SPIKE, FAULT_DROPOUT = 0, 1, 2, 3
FAULT_NAMES = {FAULT_STUCK: "stuck", FAULT_SPIKE: "spike", FAULT_DROPOUT: "dropout"}


@dataclass(frozen=True)
class ParameterSpec:
    """What the screen knows of a parameter: its pollution direction and its sensor's resolution
    (the noise floor of its scale, in its canonical unit); both come from config/parameters.toml."""

    name: str
    direction: str = "both"  # up | down | both | none
    resolution: float = 1e-6

    def __post_init__(self):
        if self.direction not in (*DIRECTIONS, "none"):
            raise ValueError(f"{self.name}: direction must be up, down, both or none, got {self.direction!r}")
        if not self.resolution > 0:
            raise ValueError(f"{self.name}: resolution must be > 0, got {self.resolution!r}")


@dataclass(frozen=True)
class ScreenSettings:
    """The screen's settings; every time in seconds (config/water.toml ``[screen]``)."""

    fast_level_s: float = 3600.0  # time constant of the fast level (the day's wander)
    slow_level_s: float = 48 * 3600.0  # of the slow level (broad plumes far downstream)
    scale_s: float = 3 * 86400.0  # of the EWMA of absolute residuals (it must have seen the usual wander)
    profile_days: float = 6.0  # memory of each knot of the daily profile, in days
    recent_s: float = 900.0  # the recent mean a parameter jumps to when its shift is accepted
    warmup_s: float = 2 * 3600.0  # no z until a parameter has been read this long ...
    warmup_readings: int = 6  # ... and this many times
    max_step_s: float = 3600.0  # a gap learns at most this much time (after a dropout)
    z_outlier: float = 3.0  # |z| of an outlier, in the parameter's direction
    z_clip: float = 6.0  # absolute residuals learned by the scale are clipped at this many sd
    z_cap: float = 6.0  # one parameter's evidence from one reading is at most this
    window_s: float = 60.0  # the event discriminator's window (decay time of its evidence) ...
    window_cadences: float = 1.0  # ... and at least this many of the sensor's cadences (a window shorter
    # than the gap between readings forgets each before the next comes)
    raise_evidence: float = 8.0  # raise when the evidence in the window reaches this
    clear_s: float = 60.0  # an event clears after this long with every parameter back
    back_fraction: float = 0.3  # a parameter is back within this fraction of its peak z in the event
    alarm_weight: float = 0.1  # learning weight of an outlier, or of any reading during an event
    accept_after_s: float = 1800.0  # a parameter outlying this long is its new normal
    stuck_s: float = 1200.0  # every parameter repeating for this long is a frozen instrument
    z_spike: float = 4.5  # a reading this many noise sd off both neighbours, one parameter alone, is a spike
    dropout_factor: float = 3.0  # a gap of this many cadences is a dropout
    restart_after_s: float = 7 * 86400.0  # a sensor silent this long (or sent back this far) learns afresh
    utc_offset_h: float = 0.0  # local time of the daily profile

    def __post_init__(self):
        if not self.z_cap < self.raise_evidence:
            raise ValueError(
                f"z_cap ({self.z_cap:g}) must be below raise_evidence ({self.raise_evidence:g}): "
                "one reading of one parameter must not raise an event alone"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> ScreenSettings:
        """Settings from a config table; an unknown key fails at once (a typo is not a default)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown water screen settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)


def rounds(rows: np.ndarray) -> list[np.ndarray | slice]:
    """The batch's positions in rounds: the k-th reading of a row goes in round k, so a round holds
    each row at most once and a row's readings keep their order.

    >>> [np.arange(5)[r].tolist() for r in rounds(np.array([3, 1, 3, 3, 2]))]
    [[0, 1, 4], [2], [3]]
    """
    rows = np.asarray(rows, np.int64)
    n = len(rows)
    if n == 0:
        return []
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.r_[0, np.flatnonzero(sorted_rows[1:] != sorted_rows[:-1]) + 1]
    if len(starts) == n:
        return [slice(None)]  # every row once: one round
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    return [np.flatnonzero(rank == k) for k in range(int(rank.max()) + 1)]


@dataclass
class Verdicts:
    """Per reading of a batch (n readings over P parameters)."""

    change: np.ndarray  # (n,) int8: RAISED, CLEARED or 0
    alarm: np.ndarray  # (n,) bool: the station's event state after the reading
    evidence: np.ndarray  # (n,) float: -log10 P of the outliers in the window (unsaturated)
    z: np.ndarray  # (n, P) signed z (NaN: not read, warming up, or stuck)
    outlier: np.ndarray  # (n, P) bool
    top: np.ndarray  # (n,) int: the parameter furthest from normal in its direction (-1: none)
    fault: np.ndarray  # (n,) int8: FAULT_* of this reading (a spike: of the previous one)
    fault_parameter: np.ndarray  # (n,) int: the spike's parameter (-1: none)

    def take(self, index: np.ndarray) -> Verdicts:
        """The verdicts of the readings at ``index``."""
        return Verdicts(*(getattr(self, f.name)[index] for f in fields(self)))


_ROW_ARRAYS = (
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
class _State:
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
        fresh = _State(len(rows), self.columns)
        for name in _ROW_ARRAYS[1:]:
            if name in ("level", "abs_dev"):
                getattr(self, name)[:, rows] = getattr(fresh, name)
            else:
                getattr(self, name)[rows] = getattr(fresh, name)

    def grown(self, rows: int) -> _State:
        bigger = _State(rows, self.columns)
        for name in _ROW_ARRAYS:
            old, new = getattr(self, name), getattr(bigger, name)
            if name in ("level", "abs_dev"):
                new[:, : old.shape[1]] = old
            else:
                new[: len(old)] = old
        return bigger


class WaterScreen:
    """Many water stations (sensors) screened at once; see the module's docstring.

    >>> specs = [ParameterSpec("do", "down", 0.01), ParameterSpec("nh3n", "up", 0.01), ParameterSpec("cod", "up", 0.1)]
    >>> screen = WaterScreen(specs, ScreenSettings(window_s=1800))
    >>> rng = np.random.default_rng(3)
    >>> changes = []
    >>> for i in range(6 * 24 * 2 + 12):  # two quiet days at 10-minute readings, then DO down, NH3-N and COD up
    ...     ts = i * 600.0
    ...     bump = 1.0 if 6 * 24 * 2 <= i < 6 * 24 * 2 + 6 else 0.0
    ...     hour = (ts / 3600) % 24
    ...     v = {"do": 8 + 0.5 * np.sin(hour / 24 * 2 * np.pi) - 2 * bump + rng.normal(0, 0.08),
    ...          "nh3n": 0.3 + 1.0 * bump + rng.normal(0, 0.02), "cod": 12 + 6 * bump + rng.normal(0, 0.6)}
    ...     changes.append(screen.step_one("s1", v, ts).change)
    >>> [(i - 6 * 24 * 2, c) for i, c in enumerate(changes) if c]
    [(0, 'raised'), (4, 'cleared')]
    """

    def __init__(
        self, parameters: Sequence[ParameterSpec], settings: ScreenSettings = ScreenSettings(), capacity: int = 64
    ):
        self.specs = list(parameters)
        self.parameters = [p.name for p in self.specs]
        self.column = {p: j for j, p in enumerate(self.parameters)}
        self.settings = settings
        self.sign = np.array([DIRECTIONS.get(p.direction, 0.0) for p in self.specs])
        self.counted = np.array([p.direction != "none" for p in self.specs])
        self.resolution = np.array([p.resolution for p in self.specs])
        self.rows: dict[str, int] = {}
        self._state = _State(capacity, len(self.specs))

    # --- rows -------------------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def add(self, key: str, parameters: Sequence[str]) -> int:
        """A new row for a sensor that screens ``parameters`` (those of its first reading)."""
        if len(self.rows) == self._state.rows:
            self._state = self._state.grown(2 * self._state.rows)
        i = self.rows[key] = len(self.rows)
        self._state.own[i] = [p in set(parameters) for p in self.parameters]
        return i

    def row(self, key: str, parameters: Sequence[str]) -> int:
        return self.rows[key] if key in self.rows else self.add(key, parameters)

    def forget(self) -> None:
        """Drop every row (partitions moved: rows are loaded again from their checkpoints)."""
        self.rows = {}
        self._state = _State(self._state.rows, len(self.specs))

    def _row_views(self, i: int):
        """Each state array's view of row ``i`` (levels and scales: both levels), by name."""
        s = self._state
        for name in _ROW_ARRAYS[1:]:
            a = getattr(s, name)
            yield name, (a[:, i] if name in ("level", "abs_dev") else a[i] if a.ndim > 1 else a[i : i + 1])

    def state(self, key: str) -> dict:
        """The row as plain data over its own parameters (for a Faust table); ``load`` restores it."""
        i = self.rows[key]
        cols = np.flatnonzero(self._state.own[i])
        out: dict = {"parameters": [self.parameters[j] for j in cols]}
        for name, view in self._row_views(i):
            v = view[..., cols] if view.shape[-1] == len(self.parameters) else view if view.ndim > 1 else view[0]
            out[name] = np.where(np.isnan(v), None, v).tolist() if v.dtype.kind == "f" else v.tolist()
        return out

    def load(self, key: str, state: Mapping | None, parameters: Sequence[str]) -> int:
        """A row from ``state`` (None: a new sensor that screens ``parameters``)."""
        i = self.add(key, state["parameters"] if state else parameters)
        if state:
            cols = np.flatnonzero(self._state.own[i])
            for name, view in self._row_views(i):
                v = np.array(state[name], dtype=float if view.dtype.kind == "f" else view.dtype)
                if view.shape[-1] == len(self.parameters):
                    view[..., cols] = v
                else:
                    view[...] = v
        return i

    # --- readings ---------------------------------------------------------------------------------
    def step_one(self, key: str, values: Mapping[str, float], ts_s: float) -> Verdict:
        """One reading ``{parameter: value}`` of sensor ``key`` at ``ts_s`` (epoch seconds)."""
        x = np.full((1, len(self.parameters)), np.nan)
        for p, v in values.items():
            x[0, self.column[p]] = v
        i = self.row(key, sorted(values))
        return Verdict.of(self.step_many(np.array([i]), x, np.array([float(ts_s)])), 0, self.parameters)

    def step_many(self, rows: np.ndarray, values: np.ndarray, ts_s: np.ndarray) -> Verdicts:
        """Step ``rows`` (n,) with ``values`` (n, P; NaN = not in the reading) at ``ts_s`` (n,)."""
        rows, values, ts_s = np.asarray(rows, np.int64), np.asarray(values, float), np.asarray(ts_s, float)
        n, P = len(rows), len(self.parameters)
        out = Verdicts(
            np.zeros(n, np.int8),
            np.zeros(n, bool),
            np.zeros(n),
            np.full((n, P), np.nan),
            np.zeros((n, P), bool),
            np.full(n, -1),
            np.zeros(n, np.int8),
            np.full(n, -1),
        )
        if not n:
            return out
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN marks what is unknown
            for at in rounds(rows):
                self._round(rows[at], values[at], ts_s[at], out, at)
        return out

    def _round(self, i, x, ts, out: Verdicts, at) -> None:
        s, c = self._state, self.settings
        own = s.own[i]
        x = np.where(own, x, np.nan)
        read = np.isfinite(x)
        # a sensor back after restart_after_s (or a reading that far before its last): what it learned
        # is stale, so it starts afresh; an event it was in ends
        restart = np.abs(ts - s.last_ts[i]) > c.restart_after_s
        ended = restart & s.alarm[i]
        if restart.any():
            s.reset(i[restart])
        # time: the gap since the last reading, the cadence, dropouts
        first = np.isnan(s.last_ts[i])
        dt = np.where(first, 0.0, ts - s.last_ts[i])
        late = dt < 0  # an out-of-order reading: scored, but it learns no time
        dt = np.maximum(dt, 0.0)
        cadence = s.cadence_s[i]
        dropout = (np.isfinite(cadence) & (dt > c.dropout_factor * cadence)) | restart
        s.cadence_s[i] = np.where(
            first | (dt <= 0),
            cadence,
            np.where(np.isnan(cadence), dt, cadence + 0.05 * (np.minimum(dt, 2 * cadence) - cadence)),
        )
        s.first_ts[i] = np.where(first, ts, s.first_ts[i])
        s.last_ts[i] = np.where(late, s.last_ts[i], ts)
        dt_learn = np.minimum(dt, c.max_step_s)[:, None]
        # a frozen instrument: every parameter read repeats the previous reading exactly
        same = np.all((x == s.previous[i]) | ~read, axis=1) & (read.sum(axis=1) >= 2)
        s.same_since[i] = np.where(
            same, np.where(np.isnan(s.same_since[i]), s.last_ts[i] - dt, s.same_since[i]), np.nan
        )
        stuck = same & (ts - s.same_since[i] >= c.stuck_s)
        # a spike: the previous reading of one parameter stuck out from both neighbours the same way,
        # by z_spike noise sd (the noise from reading-to-reading changes: blind to cycles and levels)
        previous, before = s.previous[i], s.before[i]
        step = np.abs(x - previous)
        noise = np.maximum(GAUSS_MAD * s.step_dev[i] / math.sqrt(2), self.resolution)
        excursion = np.abs(previous - 0.5 * (before + x))
        hit = (
            (np.sign(previous - before) == np.sign(previous - x))
            & (excursion > c.z_spike * math.sqrt(1.5) * noise)
            & (np.abs(x - before) < excursion)
        )
        spike = (hit.sum(axis=1) == 1) & ~s.alarm[i] & ~dropout
        spike_column = np.where(spike, np.argmax(hit, axis=1), -1)
        # the steps' noise (for spikes), and the noise of the steps that changed something: a sensor
        # that reports in quanta repeats values, and its scale must not fall below its quantum
        stepped = read & np.isfinite(step) & ~hit
        a_step = np.maximum(1.0 - np.exp(-dt_learn / c.scale_s), 1.0 / np.maximum(s.n_seen[i], 1.0))
        # a jump is mostly not noise (the series moved, or a spike): learned clipped, at reduced weight
        settled = s.n_seen[i] >= c.warmup_readings  # the first steps are learned as they come
        jump = settled & (step >= c.z_clip * noise)
        a_jump = a_step * np.where(jump, c.alarm_weight, 1.0)
        learned_step = np.where(settled, np.minimum(step, c.z_clip * noise), step)
        s.step_dev[i] = np.where(stepped, s.step_dev[i] + a_jump * (learned_step - s.step_dev[i]), s.step_dev[i])
        moved = read & np.isfinite(step) & (step > 0)
        quantum = s.quantum[i]
        learned = np.where(quantum > 0, np.minimum(step, c.z_clip * quantum), step)
        s.quantum[i] = np.where(moved, quantum + a_step * (learned - quantum), quantum)
        floor = np.maximum(GAUSS_MAD * quantum / math.sqrt(2), self.resolution)
        s.before[i] = np.where(read, previous, before)
        s.previous[i] = np.where(read, x, previous)
        # the daily profile at this hour: two knots
        pos = ((ts / 3600.0 + c.utc_offset_h) % 24.0) / 24.0 * N_BINS
        low = np.floor(pos)
        k1 = low.astype(np.int64) % N_BINS
        k2 = (k1 + 1) % N_BINS
        w2 = (pos - low)[:, None]
        w1 = 1.0 - w2
        p1, p2 = s.profile[i, k1], s.profile[i, k2]
        profile = w1 * p1 + w2 * p2
        seen1, seen2 = s.knot_seen_s[i, k1], s.knot_seen_s[i, k2]
        # residuals against both levels, over a robust scale floored at the sensor's resolution
        level, abs_dev = s.level[:, i], s.abs_dev[:, i]
        scale = np.maximum(GAUSS_MAD * abs_dev, floor)
        knot_s = 86400.0 / N_BINS
        unknown = 1.0 - (w1 * np.minimum(seen1 / knot_s, 1.0) + w2 * np.minimum(seen2 / knot_s, 1.0))
        if np.any(unknown > 0):
            # an hour not seen yet may be anywhere in the daily cycle of the hours seen in full (an
            # hour on its first visit knows only what this visit saw, which may be the plume itself)
            seen = s.knot_seen_s[i] >= knot_s
            count = np.maximum(seen.sum(axis=1), 1)
            mean = (s.profile[i] * seen).sum(axis=1) / count
            spread = np.sqrt((((s.profile[i] - mean[:, None]) ** 2) * seen).sum(axis=1) / count)
            scale = np.hypot(scale, UNSEEN_SPREAD * unknown * spread)
        r = x - (level + profile)  # (2, n, P)
        warm = (s.n_seen[i] >= c.warmup_readings) & (ts[:, None] - s.first_seen[i] >= c.warmup_s)
        z2 = np.where(warm & ~stuck[:, None], r / scale, np.nan)
        # the level that sees more in the parameter's direction (both: the larger |z|)
        directed = np.where(self.sign == 0, np.abs(z2), z2 * self.sign)
        pick = np.where(np.nan_to_num(directed[1], nan=-np.inf) > np.nan_to_num(directed[0], nan=-np.inf), 1, 0)
        z = np.where(pick == 1, z2[1], z2[0])
        toward = np.where(pick == 1, directed[1], directed[0])
        outlier = (toward >= c.z_outlier) & self.counted
        far = np.abs(z) >= c.z_outlier  # either way: learned at reduced weight
        # a parameter back at the normal it had before its last accepted shift is back, not an event
        prior = s.prior[i]
        home = far & np.isfinite(prior) & (np.abs(x - profile - prior) < c.z_outlier * scale[0])
        if home.any():
            s.level[:, i] = level = np.where(home, prior, level)
            s.prior[i] = np.where(home, np.nan, prior)
            r = np.where(home, x - (level + profile), r)
            z2 = np.where(warm & ~stuck[:, None], r / scale, np.nan)
            directed = np.where(self.sign == 0, np.abs(z2), z2 * self.sign)
            z = np.where(pick == 1, z2[1], z2[0])
            toward = np.where(pick == 1, directed[1], directed[0])
            outlier = (toward >= c.z_outlier) & self.counted
            far = np.abs(z) >= c.z_outlier
        # the event discriminator: each outlier's excess over z_outlier, at most z_cap from one
        # parameter, summed across parameters and over a window (decaying with time)
        excess = np.where(outlier, np.minimum(toward - c.z_outlier, c.z_cap), 0.0).sum(axis=1)
        window_s = np.fmax(c.window_s, c.window_cadences * s.cadence_s[i])
        evidence = s.evidence[i] * np.exp(-dt / window_s) + excess
        alarm = s.alarm[i]
        raised = ~alarm & (evidence >= c.raise_evidence)
        # during an event a parameter is back once it is within back_fraction of its peak z (or
        # no outlier): water after an event seldom returns exactly to where it was before it
        peak = np.where(raised[:, None], 0.0, s.peak[i])
        peak = np.where(alarm[:, None] | raised[:, None], np.fmax(peak, np.where(outlier, toward, 0.0)), 0.0)
        s.peak[i] = peak
        still = outlier & (toward >= c.back_fraction * peak)
        s.last_outlier[i] = np.where(still.any(axis=1), ts, s.last_outlier[i])
        cleared = alarm & ~still.any(axis=1) & (ts - s.last_outlier[i] >= c.clear_s)
        alarm = (alarm | raised) & ~cleared
        s.alarm[i] = alarm
        s.evidence[i] = np.where(cleared, 0.0, evidence)
        fault = np.where(stuck, FAULT_STUCK, np.where(spike, FAULT_SPIKE, np.where(dropout, FAULT_DROPOUT, FAULT_NONE)))
        # learning, at reduced weight for an outlier or during an event; never on stuck readings
        learn = read & ~stuck[:, None] & ~late[:, None]
        weight = np.where(far | alarm[:, None], c.alarm_weight, 1.0) * learn
        n_seen = s.n_seen[i] + learn
        s.n_seen[i] = n_seen
        s.first_seen[i] = np.where(learn & np.isnan(s.first_seen[i]), ts[:, None], s.first_seen[i])
        bootstrap = 1.0 / np.maximum(n_seen, 1.0)
        x0 = np.where(learn, x, 0.0)
        has_r = learn & np.isfinite(r)
        r0 = np.where(has_r, r, 0.0)
        a_scale = weight * np.maximum(1.0 - np.exp(-dt_learn / c.scale_s), bootstrap)
        clip = c.z_clip * scale
        s.abs_dev[:, i] = abs_dev + has_r * a_scale * (np.minimum(np.abs(r0), clip) - abs_dev)
        taus = np.array([c.fast_level_s, c.slow_level_s])[:, None, None]
        a_level = weight * np.maximum(1.0 - np.exp(-dt_learn / taus), bootstrap)
        level = level + a_level * (x0 - profile - level)
        a_recent = learn * np.maximum(1.0 - np.exp(-dt_learn / c.recent_s), bootstrap)
        recent = np.where(np.isnan(s.recent[i]), x, s.recent[i])
        s.recent[i] = np.where(learn, recent + a_recent * (x0 - recent), s.recent[i])
        # a parameter outlying for accept_after_s is its new normal: both levels jump to its recent mean
        since = np.where(far, np.where(np.isnan(s.out_since[i]), ts[:, None], s.out_since[i]), np.nan)
        accept = far & (ts[:, None] - since >= c.accept_after_s)
        s.prior[i] = np.where(accept, level[0], s.prior[i])
        level = np.where(accept, s.recent[i] - profile, level)
        # an event cleared with a parameter still off: where it is now is its normal
        rebase = cleared[:, None] & far & read
        level = np.where(rebase, x - profile, level)
        s.level[:, i] = level
        s.out_since[i] = np.where(accept, np.nan, since)
        # the profile learns what the slow level leaves, each knot as an EWMA over profile_days
        deviation = x0 - level[1]
        for kn, wk, pk, seen_k in ((k1, w1, p1, seen1), (k2, w2, p2, seen2)):
            gained = learn * wk * dt_learn
            seen_after = seen_k + gained
            rate_k = np.where(
                gained > 0,
                np.maximum(
                    1.0 - np.exp(-gained * N_BINS / (c.profile_days * 86400.0)), gained / np.maximum(seen_after, 1e-9)
                ),
                0.0,
            )
            rate_k = rate_k * np.where(far | alarm[:, None], c.alarm_weight, 1.0)
            s.knot_seen_s[i, kn] = seen_after
            s.profile[i, kn] = pk + rate_k * (deviation - pk)
        # outputs
        top_score = np.where(outlier, toward, -np.inf)
        best = np.where(np.isfinite(toward), np.where(self.counted, toward, -np.inf), -np.inf)
        out.change[at] = raised * RAISED + (cleared | ended) * CLEARED
        out.alarm[at] = alarm
        out.evidence[at] = evidence
        out.z[at] = z
        out.outlier[at] = outlier
        out.top[at] = np.where(
            np.isfinite(best).any(axis=1), np.argmax(np.where(np.isfinite(top_score), top_score, best), axis=1), -1
        )
        out.fault[at] = fault
        out.fault_parameter[at] = spike_column


@dataclass(frozen=True)
class Verdict:
    """One reading's verdict (``WaterScreen.step_one``)."""

    change: str | None  # "raised" | "cleared" | None
    alarm: bool
    evidence: float
    z: dict[str, float]  # per parameter read and scored
    parameter: str | None  # the parameter furthest from normal in its direction
    fault: str | None  # stuck | spike | dropout
    fault_parameter: str | None

    @classmethod
    def of(cls, v: Verdicts, n: int, parameters: Sequence[str]) -> Verdict:
        change = {RAISED: "raised", CLEARED: "cleared"}.get(int(v.change[n]))
        z = {p: float(v.z[n, j]) for j, p in enumerate(parameters) if np.isfinite(v.z[n, j])}
        top = int(v.top[n])
        fp = int(v.fault_parameter[n])
        return cls(
            change,
            bool(v.alarm[n]),
            float(v.evidence[n]),
            z,
            parameters[top] if top >= 0 else None,
            FAULT_NAMES.get(int(v.fault[n])),
            parameters[fp] if fp >= 0 else None,
        )
