"""Sensor faults or pollution? Labels for the anomalies of one water-quality station.

A sensor that is stuck, spikes, drifts or drops out must not raise a pollution warning. Each fault
leaves its own trace in a station's series (all parameters together):

- **stuck**: the whole instrument freezes: (nearly) every parameter exactly constant over several
  readings. Real water never is (sensor noise alone moves the last digits).
- **spike**: one reading of one parameter far off, back to normal at the next reading.
- **drift**: one parameter slowly departs over days (a step-free ramp) while the others do not, or
  not the way the river's slow wander moves them together.
- **dropout**: a gap in the timestamps longer than 1.5 reporting steps.

Pollution, by contrast, lasts several readings and usually moves related parameters together (COD
and ammonia up with oxygen down; oil up). The water screen (models/water_screen.py) labels stuck,
spike and dropout readings as it streams; ``station_findings`` turns its verdicts on a station's
series into one ``Finding`` per episode, and adds drift, a judgement over days (``drift_mask``,
fitted on past days and scored on the next, so causal too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.water_verdicts import CLEARED, FAULT_DROPOUT, FAULT_SPIKE, FAULT_STUCK, RAISED, Verdicts

MAD_TO_SD = 1 / 0.6745  # median absolute deviation x this = standard deviation, for Gaussian noise


@dataclass(frozen=True)
class Finding:
    """One labelled episode of a station: ``kind`` is "pollution" or "fault".

    ``parameter`` is the parameter concerned (for pollution: the one furthest from normal; None
    for faults of the whole instrument); ``start_s``/``end_s`` are the first and last reading
    concerned (for a dropout: the first and last missing reading); ``fault`` is stuck, spike,
    drift or dropout for faults, None for pollution; ``score`` in [0, 1] is how far from normal
    for pollution (the screen's evidence at the raise / 100, at most 1), 1 for the exact fault patterns (stuck,
    spike, dropout) and 0.5 for drift, which is a judgement over days.
    """

    parameter: str | None
    start_s: float
    end_s: float
    kind: str  # "pollution" | "fault"
    fault: str | None  # stuck | spike | drift | dropout
    score: float


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True.

    >>> _runs(np.array([0, 1, 1, 0, 1], dtype=bool))
    [(1, 2), (4, 4)]
    """
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def _long_runs(mask: np.ndarray, min_len: int) -> np.ndarray:
    """``mask`` keeping only runs of at least ``min_len`` True values (along axis 0, per column).

    >>> _long_runs(np.array([1, 1, 0, 1, 1, 1], dtype=bool), 3).astype(int)
    array([0, 0, 0, 1, 1, 1])
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros_like(mask)
    columns = mask.reshape(len(mask), -1)
    flat = out.reshape(len(mask), -1)
    for j in range(columns.shape[1]):
        for a, b in _runs(columns[:, j]):
            if b - a + 1 >= min_len:
                flat[a : b + 1, j] = True
    return out


def drift_mask(
    ts_s: np.ndarray,
    X: np.ndarray,
    step_s: float,
    min_noise_sd: float = 1.5,
    k_resid: float = 4.0,
    min_r2: float = 0.5,
    persistence: int = 36,
    coverage: float = 0.98,
) -> np.ndarray:
    """(T, D) True where one parameter's daily mean departs from what the station's other parameters say it should be.

    Analytical redundancy: a river's slow multi-day wander (flow, runoff) moves a station's
    parameters together, a drifting sensor moves one. At each day boundary (from the third day),
    each parameter's daily mean so far is fitted as a line of the one other parameter's daily mean
    that explains it best (or as a constant when none explains half of its variance); over the next
    day the residual is flagged past ``min_noise_sd`` sensor-noise sd and ``k_resid`` x the fit's
    residual sd, for ``persistence`` readings in a row. Of several parameters flagged at once only
    the one furthest past its threshold is kept: a drifting predictor drags its dependants along.
    Daily means cancel the daily cycle; a day with less than ``coverage`` of its readings (gaps, or
    stuck and spike readings masked as NaN) has none, since a missing part of the cycle biases it.

    Fit on the past and scored on the next day, so it runs test-then-train; it needs two days before
    its first flag, and drift that starts with the record is taken as the station's normal.
    """
    ts_s, X = np.asarray(ts_s, dtype=float), np.asarray(X, dtype=float)
    T, D = X.shape
    if T == 0:
        return np.zeros((T, D), dtype=bool)
    day = max(2, int(round(86400 / step_s)))
    slot = np.round((ts_s - ts_s[0]) / step_s).astype(np.int64)
    grid = np.full((int(slot[-1]) + 1, D), np.nan)
    grid[slot] = X
    frame = pd.DataFrame(grid)
    daily = frame.rolling(day, min_periods=int(np.ceil(coverage * day))).mean().to_numpy()
    noise_sd = (frame.diff().abs().expanding(min_periods=day // 2).median() * MAD_TO_SD / np.sqrt(2)).to_numpy()
    resid, limit = np.full(grid.shape, np.nan), np.full(grid.shape, np.inf)
    for start in range(2 * day, len(grid), day):  # fit on the daily means so far, score the next day
        past, scored = slice(day, start), slice(start, min(len(grid), start + day))
        for p in range(D):
            y = daily[past, p]
            seen = ~np.isnan(y)
            if seen.sum() < day // 2:
                continue
            sd, prediction = float(np.std(y[seen])), np.full(scored.stop - scored.start, float(np.mean(y[seen])))
            for q in (q for q in range(D) if q != p):
                x = daily[past, q]
                both = seen & ~np.isnan(x)
                if both.sum() < day // 2 or np.ptp(x[both]) == 0:
                    continue
                slope, intercept = np.polyfit(x[both], y[both], 1)
                q_sd = float(np.std(y[both] - slope * x[both] - intercept))
                if q_sd < sd and 1 - q_sd**2 / max(float(np.var(y[both])), 1e-300) >= min_r2:
                    sd, prediction = q_sd, intercept + slope * daily[scored, q]
            resid[scored, p] = daily[scored, p] - prediction
            limit[scored, p] = max(min_noise_sd * noise_sd[start - 1, p], k_resid * sd)
    past_limit = np.nan_to_num(np.abs(resid) / limit)  # NaN residuals (no daily mean) never flag
    flag = past_limit >= 1
    flag &= past_limit == past_limit.max(axis=1, keepdims=True)
    return _long_runs(flag, persistence)[slot]


def station_findings(
    ts_s: np.ndarray, parameters: Sequence[str], X: np.ndarray, verdicts: Verdicts, step_s: float
) -> list[Finding]:
    """One station's findings from the water screen's verdicts on its series (in time order):
    its events as pollution (from raised to cleared, the parameter furthest off at the raise), its
    stuck runs, spikes and dropouts as faults, and drift (``drift_mask``, on the readings that were
    neither stuck nor spikes) as a fault unless a pollution finding of that parameter is within a day."""
    ts_s, X = np.asarray(ts_s, dtype=float), np.asarray(X, dtype=float)
    findings: list[Finding] = []
    opened: tuple[float, str | None, float] | None = None
    for t in range(len(ts_s)):
        change = int(verdicts.change[t])
        if change == RAISED:
            top = int(verdicts.top[t])
            opened = (float(ts_s[t]), parameters[top] if top >= 0 else None, float(verdicts.evidence[t]))
        elif change == CLEARED and opened is not None:
            findings.append(Finding(opened[1], opened[0], float(ts_s[t]), "pollution", None, min(1.0, opened[2] / 100)))
            opened = None
    if opened is not None:
        findings.append(Finding(opened[1], opened[0], float(ts_s[-1]), "pollution", None, min(1.0, opened[2] / 100)))
    stuck = verdicts.fault == FAULT_STUCK
    findings += [Finding(None, float(ts_s[a]), float(ts_s[b]), "fault", "stuck", 1.0) for a, b in _runs(stuck)]
    spikes = np.zeros(X.shape, dtype=bool)
    for t in np.flatnonzero(verdicts.fault == FAULT_SPIKE):
        j = int(verdicts.fault_parameter[t])
        if t > 0 and j >= 0:
            spikes[t - 1, j] = True
            findings.append(Finding(parameters[j], float(ts_s[t - 1]), float(ts_s[t - 1]), "fault", "spike", 1.0))
    for t in np.flatnonzero(verdicts.fault == FAULT_DROPOUT):
        if t > 0:
            findings.append(Finding(None, float(ts_s[t - 1]), float(ts_s[t]), "fault", "dropout", 1.0))
    if len(ts_s):
        polluted = {
            p: [(f.start_s, f.end_s) for f in findings if f.kind == "pollution" and f.parameter == p]
            for p in parameters
        }
        drifting = drift_mask(ts_s, np.where(stuck[:, None] | spikes, np.nan, X), step_s)
        for j, p in enumerate(parameters):
            for a, b in _runs(drifting[:, j]):
                start, end = float(ts_s[a]), float(ts_s[b])
                if any(pa - 86400 <= end and start <= pb + 86400 for pa, pb in polluted[p]):
                    continue  # a plume passing moves the daily mean too
                findings.append(Finding(p, start, end, "fault", "drift", 0.5))
    return sorted(findings, key=lambda f: (f.start_s, f.kind, f.parameter or ""))
