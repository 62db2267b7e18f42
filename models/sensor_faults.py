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
and ammonia up with oxygen down; oil up). ``classify_station`` runs the detectors over a station's
series test-then-train and returns one ``Finding`` per labelled episode. Like a stream that
confirms a little late, it looks a few readings ahead: a spike needs the next reading, a stuck
run ``stuck_min_samples`` readings, a pollution episode ``persistence`` readings (a finding starts
at its first anomalous reading; a stream would raise it ``persistence - 1`` readings later).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.anomaly import SeasonalRobustZ, score_from_z

# the sign of a change that pollution causes: pollutants up, dissolved oxygen down. Temperature,
# pH, conductivity and turbidity move with weather and runoff too: they neither make nor veto it.
POLLUTION_SIGN = {"do": -1, "nh3n": 1, "cod": 1, "codmn": 1, "tp": 1, "oil": 1}
MAD_TO_SD = 1 / 0.6745  # median absolute deviation x this = standard deviation, for Gaussian noise
# SeasonalRobustZ settings classify_station runs, windows in readings (tuned for 10-minute
# readings): the defaults (level over 6 h) and a slow level (2 days) that a plume broadened by a
# long way downstream cannot drag along
DETECTORS: tuple[Mapping[str, float], ...] = ({}, {"level_window": 288, "scale_window": 144})


@dataclass(frozen=True)
class Finding:
    """One labelled episode of a station: ``kind`` is "pollution" or "fault".

    ``parameter`` is the parameter concerned (for pollution: the one furthest from normal; None
    for faults of the whole instrument); ``start_s``/``end_s`` are the first and last reading
    concerned (for a dropout: the first and last missing reading); ``fault`` is stuck, spike,
    drift or dropout for faults, None for pollution; ``score`` in [0, 1] is how far from normal
    for pollution (``score_from_z`` of the largest z), 1 for the exact fault patterns (stuck,
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


def dropouts(ts_s: np.ndarray, step_s: float) -> list[tuple[float, float]]:
    """(first, last) missing reading time of each gap longer than 1.5 steps.

    >>> dropouts(np.array([0, 600, 1200, 3600, 4200.0]), 600)
    [(1800.0, 3000.0)]
    """
    ts_s = np.asarray(ts_s, dtype=float)
    gaps = np.flatnonzero(np.diff(ts_s) > 1.5 * step_s)
    return [(float(ts_s[i] + step_s), float(ts_s[i + 1] - step_s)) for i in gaps]


def stuck_mask(X: np.ndarray, min_samples: int = 3, min_share: float = 0.8) -> np.ndarray:
    """True where the instrument is frozen: at least ``min_share`` of the parameters (columns, two
    or more) repeat the previous reading exactly, in runs of at least ``min_samples`` readings (the
    first frozen reading included). A share, so one parameter still moving (a drifting channel
    fed by its own electronics) does not hide a frozen instrument.

    >>> X = np.array([[1.0, 5.0], [1.1, 5.2], [1.1, 5.2], [1.1, 5.2], [1.3, 5.1]])
    >>> stuck_mask(X).astype(int)
    array([0, 1, 1, 1, 0])
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] < 2 or len(X) < 2:
        return np.zeros(len(X), dtype=bool)
    both = np.isfinite(X[1:]) & np.isfinite(X[:-1])
    repeated = ((X[1:] == X[:-1]) & both).sum(axis=1)
    same = (repeated >= 2) & (repeated >= min_share * both.sum(axis=1))
    out = np.zeros(len(X), dtype=bool)
    for a, b in _runs(same):  # same[i] compares readings i and i + 1
        if b - a + 2 >= min_samples:
            out[a : b + 2] = True
    return out


def spike_mask(
    X: np.ndarray,
    valid: np.ndarray | None = None,
    k: float = 5.0,
    window: int = 144,
    min_scale: float = 1e-9,
    ts_s: np.ndarray | None = None,
    step_s: float | None = None,
) -> np.ndarray:
    """True where one parameter's reading sticks out from both neighbours in the same direction, more
    than ``k`` sd from their mean (that difference has sd sqrt(1.5) x the noise sd) while the
    neighbours agree with each other better than with it, on that parameter only. The peak of a
    very short plume can look the same: ``classify_station`` keeps only spikes whose neighbours
    its detectors find normal.

    The noise sd of each column comes from the running median of the same excursion over the last
    ``window`` valid readings (/ 0.6745 / sqrt 1.5): it ignores daily cycles and level changes. With
    ``ts_s`` and ``step_s``, only readings whose valid neighbours are at most 1.5 steps away are
    tested (across a gap the series may have moved for real).

    >>> rng = np.random.default_rng(1)
    >>> X = np.column_stack([7 + rng.normal(0, 0.1, 40), np.linspace(20, 22, 40) + rng.normal(0, 0.05, 40)])
    >>> X[30, 0] += 0.8   # one DO reading 8 sd high
    >>> X[33:, 1] += 1.0  # a step in temperature is not a spike
    >>> np.argwhere(spike_mask(X, window=24)).tolist()
    [[30, 0]]
    """
    X = np.asarray(X, dtype=float)
    X = X.reshape(len(X), -1)
    valid = np.isfinite(X) if valid is None else (np.broadcast_to(np.asarray(valid, dtype=bool).reshape(len(X), -1), X.shape) & np.isfinite(X))
    T, K = X.shape
    out = np.zeros((T, K), dtype=bool)
    index = np.arange(T)
    for j in range(K):
        rows = index[valid[:, j]]
        if len(rows) < 3:
            continue
        x = X[rows, j]
        up, down = x[1:-1] - x[:-2], x[1:-1] - x[2:]
        excursion = np.abs(x[1:-1] - 0.5 * (x[:-2] + x[2:]))  # noise sd of this: sqrt(1.5) sd
        # noise sd from the running median of past excursions: blind to daily cycles and level changes
        median = pd.Series(excursion).rolling(window, min_periods=min(window, 18)).median().shift(1).to_numpy()
        sd = np.maximum(median * MAD_TO_SD / np.sqrt(1.5), min_scale)
        base = np.abs(x[2:] - x[:-2])  # the neighbours agree with each other better than with it
        hit = (np.sign(up) == np.sign(down)) & (excursion > k * np.sqrt(1.5) * sd) & (base < excursion)
        if ts_s is not None and step_s is not None:
            t = np.asarray(ts_s, dtype=float)[rows]
            hit &= (t[1:-1] - t[:-2] <= 1.5 * step_s) & (t[2:] - t[1:-1] <= 1.5 * step_s)
        bigger = excursion >= np.maximum(np.r_[0.0, excursion[:-1]], np.r_[excursion[1:], 0.0])
        out[rows[1:-1][hit & bigger], j] = True  # of two neighbouring hits, the larger is the spike
    several = out.sum(axis=1) > 1  # several parameters at once is not a sensor spike
    out[several] = False
    return out


def drift_mask(
    ts_s: np.ndarray, X: np.ndarray, step_s: float, min_noise_sd: float = 1.5, k_resid: float = 4.0, min_r2: float = 0.5,
    persistence: int = 36, coverage: float = 0.98,
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


def classify_station(
    ts_s: np.ndarray,
    values: Mapping[str, np.ndarray],
    hours: np.ndarray,
    step_s: float,
    *,
    z_flag: float = 4.5,
    z_support: float = 3.5,
    z_single: float = 6.0,
    persistence: int = 3,
    merge_gap: int = 6,
    stuck_min_samples: int = 3,
    spike_k: float = 5.0,
    detectors: Sequence[Mapping[str, float]] = DETECTORS,
) -> list[Finding]:
    """Label the anomalies of one station's series as pollution or sensor faults.

    ``ts_s`` (T,) reading times in seconds, sorted and unique; ``values`` maps each parameter to
    a (T,) array (NaN = missing); ``hours`` (T,) local hour of each reading; ``step_s`` the
    reporting interval. Fresh ``SeasonalRobustZ(**options)``, one per entry of ``detectors``,
    score every parameter test-then-train without learning stuck readings and spikes; each
    reading keeps the z furthest from 0 (by default a level following 6 h, for plumes that come
    in fast, and one following 2 days, for broad plumes far downstream). Readings at least
    ``z_flag`` robust sd from normal for ``persistence`` readings in a row make an episode
    (episodes closer than ``merge_gap`` readings merge). An episode is pollution when two or more
    parameters move the way pollution moves them (``POLLUTION_SIGN``; the second one needs only
    ``z_support``), or when one does by at least ``z_single``. Other episodes are not reported.

    Returns the findings sorted by start time.
    """
    ts_s = np.asarray(ts_s, dtype=float)
    hours = np.asarray(hours, dtype=float)
    params = list(values)
    T = len(ts_s)
    if hours.shape != (T,) or any(np.shape(values[p]) != (T,) for p in params):
        raise ValueError("ts_s, hours and every series in values must have the same length")
    if not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s!r}")
    findings = [Finding(None, a, b, "fault", "dropout", 1.0) for a, b in dropouts(ts_s, step_s)]
    if T == 0 or not params:
        return findings
    X = np.column_stack([np.asarray(values[p], dtype=float) for p in params])

    stuck = stuck_mask(X, stuck_min_samples)
    findings += [Finding(None, float(ts_s[a]), float(ts_s[b]), "fault", "stuck", 1.0) for a, b in _runs(stuck)]
    candidates = spike_mask(X, valid=~stuck[:, None], k=spike_k, ts_s=ts_s, step_s=step_s)

    learn = ~stuck[:, None] & ~candidates
    Z = np.full(X.shape, np.nan)
    for options in detectors:  # per reading, the detector that finds it furthest from normal
        z = SeasonalRobustZ(**options).z_many(X, hours, learn)
        Z = np.where(np.nan_to_num(np.abs(z)) > np.nan_to_num(np.abs(Z), nan=-1.0), z, Z)
    # a spike is a lone excursion: with an anomalous neighbour it is the top of a short plume
    near = np.nan_to_num(np.abs(Z))
    edge = np.zeros((1, X.shape[1]))
    neighbour = np.maximum(np.vstack([edge, near[:-1]]), np.vstack([near[1:], edge]))
    spikes = candidates & (neighbour < z_support)
    for t, j in zip(*np.nonzero(spikes)):
        findings.append(Finding(params[j], float(ts_s[t]), float(ts_s[t]), "fault", "spike", 1.0))
    Z[stuck] = np.nan
    Z[spikes] = np.nan
    absz = np.nan_to_num(np.abs(Z))
    strong = _long_runs(absz >= z_flag, persistence)
    support = _long_runs(absz >= z_support, persistence)

    pollution_params: dict[str, list[tuple[int, int]]] = {}
    episode = strong.any(axis=1)
    episodes = _runs(episode)
    merged: list[list[int]] = []
    for a, b in episodes:
        if merged and a - merged[-1][1] - 1 <= merge_gap:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    for a, b in merged:
        signs = {}
        for j, p in enumerate(params):
            rows = support[a : b + 1, j]
            if not rows.any():
                continue
            sign = np.sign(np.nanmedian(Z[a : b + 1, j][rows]))
            if POLLUTION_SIGN.get(p) == sign:
                signs[p] = float(absz[a : b + 1, j][rows].max())
        strong_polluting = [p for p in signs if strong[a : b + 1, params.index(p)].any()]
        if not strong_polluting:
            continue
        peak = max(signs.values())
        if len(signs) >= 2 or peak >= z_single:
            lead = max(signs, key=signs.get)
            findings.append(Finding(lead, float(ts_s[a]), float(ts_s[b]), "pollution", None, float(score_from_z(peak))))
            for p in signs:
                pollution_params.setdefault(p, []).append((a, b))

    day = int(round(86400 / step_s))
    drifting = drift_mask(ts_s, np.where(stuck[:, None] | spikes, np.nan, X), step_s)
    for j, p in enumerate(params):
        for a, b in _runs(drifting[:, j]):
            if any(pa - day <= b and a <= pb + day for pa, pb in pollution_params.get(p, [])):
                continue  # a plume passing moves the daily mean too
            findings.append(Finding(p, float(ts_s[a]), float(ts_s[b]), "fault", "drift", 0.5))
    return sorted(findings, key=lambda f: (f.start_s, f.kind, f.parameter or ""))
