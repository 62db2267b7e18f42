"""One round of the water screen (models/water_screen.py, whose docstring says what it computes): a
batch's readings of distinct sensors (rows ``i``) stepped at once, phase by phase over the state
arrays: the clock, sensor faults, the daily profile's knots and the scale, the z scores, the event
discriminator, learning. Every array is (n,) or (n, P) over the round's rows; NaN marks what is unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.water_screen_settings import DIRECTIONS, ParameterSpec, ScreenSettings
from models.water_screen_state import N_BINS, ScreenState
from models.water_verdicts import CLEARED, FAULT_DROPOUT, FAULT_NONE, FAULT_SPIKE, FAULT_STUCK, RAISED, Verdicts

GAUSS_MAD = math.sqrt(math.pi / 2)  # mean absolute deviation x this = standard deviation, for Gaussian noise
UNSEEN_SPREAD = 3.0  # an hour of the day not seen yet may be this many sd of the profile learned so far off
KNOT_S = 86400.0 / N_BINS


@dataclass(frozen=True)
class Columns:
    """What the round needs of the parameters (columns): pollution direction (+1 up, -1 down, 0 both),
    whether it counts as evidence of an event, and the sensor's resolution."""

    sign: np.ndarray
    counted: np.ndarray
    resolution: np.ndarray

    @classmethod
    def of(cls, specs: list[ParameterSpec]) -> Columns:
        return cls(
            np.array([DIRECTIONS.get(p.direction, 0.0) for p in specs]),
            np.array([p.direction != "none" for p in specs]),
            np.array([p.resolution for p in specs]),
        )


@dataclass
class Clock:
    restart: np.ndarray  # back after restart_after_s (or that far before its last): learns afresh
    ended: np.ndarray  # an event that the restart ended
    dt: np.ndarray  # time since the row's last reading (0: first, or out of order)
    late: np.ndarray  # out of order: scored, but it learns no time
    dropout: np.ndarray
    dt_learn: np.ndarray  # (n, 1) the time learned (a gap learns at most max_step_s)


@dataclass
class Knots:
    """The daily profile at the readings' hours: two knots and their weights."""

    k1: np.ndarray
    k2: np.ndarray
    w1: np.ndarray
    w2: np.ndarray
    p1: np.ndarray
    p2: np.ndarray
    seen1: np.ndarray
    seen2: np.ndarray

    @property
    def profile(self) -> np.ndarray:
        return self.w1 * self.p1 + self.w2 * self.p2


@dataclass
class Scores:
    r: np.ndarray  # (2, n, P) residuals against both levels
    z: np.ndarray  # (n, P) signed z of the level picked
    toward: np.ndarray  # (n, P) z in the parameter's direction
    outlier: np.ndarray  # (n, P) past z_outlier in its direction, and counted
    far: np.ndarray  # (n, P) past z_outlier either way: learned at reduced weight


@dataclass
class Events:
    evidence: np.ndarray
    raised: np.ndarray
    cleared: np.ndarray
    alarm: np.ndarray  # after the reading


def step_round(s: ScreenState, c: ScreenSettings, cols: Columns, i, x, ts, out: Verdicts, at) -> None:
    """Step rows ``i`` with ``x`` (n, P) at ``ts`` (n,); their verdicts go to ``out`` at ``at``."""
    x = np.where(s.own[i], x, np.nan)
    read = np.isfinite(x)
    clock = _clock(s, c, i, ts)
    stuck, spike, spike_column, floor = _faults(s, c, cols, i, x, ts, read, clock)
    knots = _knots(s, c, i, ts)
    scale = _scale(s, i, floor, knots)
    scores = _scores(s, c, cols, i, x, ts, stuck, knots.profile, scale)
    events = _events(s, c, i, ts, clock.dt, scores)
    fault = np.where(
        stuck, FAULT_STUCK, np.where(spike, FAULT_SPIKE, np.where(clock.dropout, FAULT_DROPOUT, FAULT_NONE))
    )
    _learn(s, c, i, x, ts, read, stuck, clock, knots, scale, scores, events)
    # outputs
    outlier, toward = scores.outlier, scores.toward
    top_score = np.where(outlier, toward, -np.inf)
    best = np.where(np.isfinite(toward), np.where(cols.counted, toward, -np.inf), -np.inf)
    out.change[at] = events.raised * RAISED + (events.cleared | clock.ended) * CLEARED
    out.alarm[at] = events.alarm
    out.evidence[at] = events.evidence
    out.z[at] = scores.z
    out.outlier[at] = outlier
    out.top[at] = np.where(
        np.isfinite(best).any(axis=1), np.argmax(np.where(np.isfinite(top_score), top_score, best), axis=1), -1
    )
    out.fault[at] = fault
    out.fault_parameter[at] = spike_column


def _clock(s: ScreenState, c: ScreenSettings, i, ts) -> Clock:
    """The gap since each row's last reading, its cadence, dropouts; the rows' times move on."""
    # a sensor back after restart_after_s (or a reading that far before its last): what it learned
    # is stale, so it starts afresh; an event it was in ends
    restart = np.abs(ts - s.last_ts[i]) > c.restart_after_s
    ended = restart & s.alarm[i]
    if restart.any():
        s.reset(i[restart])
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
    return Clock(restart, ended, dt, late, dropout, np.minimum(dt, c.max_step_s)[:, None])


def _faults(s: ScreenState, c: ScreenSettings, cols: Columns, i, x, ts, read, clock: Clock):
    """(stuck, spike, spike's column, noise floor of the scale); learns the reading-to-reading noise."""
    # a frozen instrument: every parameter read repeats the previous reading exactly
    same = np.all((x == s.previous[i]) | ~read, axis=1) & (read.sum(axis=1) >= 2)
    s.same_since[i] = np.where(
        same, np.where(np.isnan(s.same_since[i]), s.last_ts[i] - clock.dt, s.same_since[i]), np.nan
    )
    stuck = same & (ts - s.same_since[i] >= c.stuck_s)
    # a spike: the previous reading of one parameter stuck out from both neighbours the same way,
    # by z_spike noise sd (the noise from reading-to-reading changes: blind to cycles and levels)
    previous, before = s.previous[i], s.before[i]
    step = np.abs(x - previous)
    noise = np.maximum(GAUSS_MAD * s.step_dev[i] / math.sqrt(2), cols.resolution)
    excursion = np.abs(previous - 0.5 * (before + x))
    hit = (
        (np.sign(previous - before) == np.sign(previous - x))
        & (excursion > c.z_spike * math.sqrt(1.5) * noise)
        & (np.abs(x - before) < excursion)
    )
    spike = (hit.sum(axis=1) == 1) & ~s.alarm[i] & ~clock.dropout
    spike_column = np.where(spike, np.argmax(hit, axis=1), -1)
    # the steps' noise (for spikes), and the noise of the steps that changed something: a sensor
    # that reports in quanta repeats values, and its scale must not fall below its quantum
    stepped = read & np.isfinite(step) & ~hit
    a_step = np.maximum(1.0 - np.exp(-clock.dt_learn / c.scale_s), 1.0 / np.maximum(s.n_seen[i], 1.0))
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
    floor = np.maximum(GAUSS_MAD * quantum / math.sqrt(2), cols.resolution)
    s.before[i] = np.where(read, previous, before)
    s.previous[i] = np.where(read, x, previous)
    return stuck, spike, spike_column, floor


def _knots(s: ScreenState, c: ScreenSettings, i, ts) -> Knots:
    """The daily profile at this hour: two knots."""
    pos = ((ts / 3600.0 + c.utc_offset_h) % 24.0) / 24.0 * N_BINS
    low = np.floor(pos)
    k1 = low.astype(np.int64) % N_BINS
    k2 = (k1 + 1) % N_BINS
    w2 = (pos - low)[:, None]
    w1 = 1.0 - w2
    return Knots(k1, k2, w1, w2, s.profile[i, k1], s.profile[i, k2], s.knot_seen_s[i, k1], s.knot_seen_s[i, k2])


def _scale(s: ScreenState, i, floor, knots: Knots) -> np.ndarray:
    """(2, n, P) the robust scale of the residuals against each level, floored at the sensor's resolution."""
    scale = np.maximum(GAUSS_MAD * s.abs_dev[:, i], floor)
    w1, w2 = knots.w1, knots.w2
    unknown = 1.0 - (w1 * np.minimum(knots.seen1 / KNOT_S, 1.0) + w2 * np.minimum(knots.seen2 / KNOT_S, 1.0))
    if np.any(unknown > 0):
        # an hour not seen yet may be anywhere in the daily cycle of the hours seen in full (an
        # hour on its first visit knows only what this visit saw, which may be the plume itself)
        seen = s.knot_seen_s[i] >= KNOT_S
        count = np.maximum(seen.sum(axis=1), 1)
        mean = (s.profile[i] * seen).sum(axis=1) / count
        spread = np.sqrt((((s.profile[i] - mean[:, None]) ** 2) * seen).sum(axis=1) / count)
        scale = np.hypot(scale, UNSEEN_SPREAD * unknown * spread)
    return scale


def _scores(s: ScreenState, c: ScreenSettings, cols: Columns, i, x, ts, stuck, profile, scale) -> Scores:
    """Residuals and z against both levels; a parameter back at the normal it had before its last
    accepted shift goes back to that level (and is scored against it)."""
    level = s.level[:, i]
    warm = (s.n_seen[i] >= c.warmup_readings) & (ts[:, None] - s.first_seen[i] >= c.warmup_s)
    usable = warm & ~stuck[:, None]

    def scored(r, pick=None):
        z2 = np.where(usable, r / scale, np.nan)
        # the level that sees more in the parameter's direction (both: the larger |z|)
        directed = np.where(cols.sign == 0, np.abs(z2), z2 * cols.sign)
        if pick is None:
            pick = np.where(np.nan_to_num(directed[1], nan=-np.inf) > np.nan_to_num(directed[0], nan=-np.inf), 1, 0)
        z = np.where(pick == 1, z2[1], z2[0])
        toward = np.where(pick == 1, directed[1], directed[0])
        outlier = (toward >= c.z_outlier) & cols.counted
        return Scores(r, z, toward, outlier, np.abs(z) >= c.z_outlier), pick

    scores, pick = scored(x - (level + profile))
    prior = s.prior[i]
    home = scores.far & np.isfinite(prior) & (np.abs(x - profile - prior) < c.z_outlier * scale[0])
    if home.any():
        s.level[:, i] = level = np.where(home, prior, level)
        s.prior[i] = np.where(home, np.nan, prior)
        scores, _ = scored(np.where(home, x - (level + profile), scores.r), pick)
    return scores


def _events(s: ScreenState, c: ScreenSettings, i, ts, dt, scores: Scores) -> Events:
    """The event discriminator: each outlier's excess over z_outlier, at most z_cap from one
    parameter, summed across parameters and over a window (decaying with time)."""
    outlier, toward = scores.outlier, scores.toward
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
    return Events(evidence, raised, cleared, alarm)


def _learn(
    s: ScreenState,
    c: ScreenSettings,
    i,
    x,
    ts,
    read,
    stuck,
    clock: Clock,
    knots: Knots,
    scale,
    scores: Scores,
    events: Events,
) -> None:
    """Learning, at reduced weight for an outlier or during an event; never on stuck readings."""
    profile, far, alarm, dt_learn = knots.profile, scores.far, events.alarm, clock.dt_learn
    learn = read & ~stuck[:, None] & ~clock.late[:, None]
    weight = np.where(far | alarm[:, None], c.alarm_weight, 1.0) * learn
    n_seen = s.n_seen[i] + learn
    s.n_seen[i] = n_seen
    s.first_seen[i] = np.where(learn & np.isnan(s.first_seen[i]), ts[:, None], s.first_seen[i])
    bootstrap = 1.0 / np.maximum(n_seen, 1.0)
    x0 = np.where(learn, x, 0.0)
    has_r = learn & np.isfinite(scores.r)
    r0 = np.where(has_r, scores.r, 0.0)
    a_scale = weight * np.maximum(1.0 - np.exp(-dt_learn / c.scale_s), bootstrap)
    abs_dev = s.abs_dev[:, i]
    s.abs_dev[:, i] = abs_dev + has_r * a_scale * (np.minimum(np.abs(r0), c.z_clip * scale) - abs_dev)
    taus = np.array([c.fast_level_s, c.slow_level_s])[:, None, None]
    a_level = weight * np.maximum(1.0 - np.exp(-dt_learn / taus), bootstrap)
    level = s.level[:, i]
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
    rebase = events.cleared[:, None] & far & read
    level = np.where(rebase, x - profile, level)
    s.level[:, i] = level
    s.out_since[i] = np.where(accept, np.nan, since)
    _learn_profile(s, c, i, x0 - level[1], learn, dt_learn, np.where(far | alarm[:, None], c.alarm_weight, 1.0), knots)


def _learn_profile(s: ScreenState, c: ScreenSettings, i, deviation, learn, dt_learn, weight, knots: Knots) -> None:
    """The profile learns what the slow level leaves (``deviation``), each knot as an EWMA over profile_days."""
    for kn, wk, pk, seen_k in (
        (knots.k1, knots.w1, knots.p1, knots.seen1),
        (knots.k2, knots.w2, knots.p2, knots.seen2),
    ):
        gained = learn * wk * dt_learn
        seen_after = seen_k + gained
        rate_k = np.where(
            gained > 0,
            np.maximum(
                1.0 - np.exp(-gained * N_BINS / (c.profile_days * 86400.0)), gained / np.maximum(seen_after, 1e-9)
            ),
            0.0,
        )
        rate_k = rate_k * weight
        s.knot_seen_s[i, kn] = seen_after
        s.profile[i, kn] = pk + rate_k * (deviation - pk)
