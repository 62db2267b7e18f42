"""Rainstorm tiers: the CMA tiers a gauge has reached, or that its nowcast brings within reach.

The tiers are config/rain.toml ``[[tiers]]``, passed in as plain ``{"tier", "window_h", "mm"}``
dicts in ascending order of severity. ``tiers_many`` judges G gauges at once from their recent
slot amounts (``models/rain_accumulation.py``) and their nowcast (``models/rain_nowcast.py``);
``tier_reached`` and ``tier_forecast`` are its one-gauge forms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from models.rain_accumulation import GaugeAccumulator

ALIGN_TOL = 1e-6  # mm: sums of 0.1 mm tips are not exact in binary; 49.99999999 counts as 50


class Reached(NamedTuple):
    tier: str | None  # the highest tier reached; None: none
    mm: float  # that tier's accumulation (none reached: the one closest to its threshold)
    window_h: float


class Forecast(NamedTuple):
    tier: str  # the highest tier the nowcast brings within its window (above the one reached now)
    lead_s: float  # when its window first holds the threshold, s after now
    mm: float  # the window's accumulation then, mm (observed + forecast)
    window_h: float


class FieldTiers(NamedTuple):
    """Tiers of G gauges at once (``tiers_many``); ranks index ``tiers``, -1: none."""

    reached: np.ndarray  # (G,) rank of the highest tier reached now
    reached_mm: np.ndarray  # (G,) its accumulation (none reached: that of the tier closest to its threshold)
    reached_i: np.ndarray  # (G,) the tier whose window ``reached_mm`` is (for ``window_h``)
    forecast: np.ndarray  # (G,) rank of the highest tier above ``reached`` forecast within the leads
    lead_s: np.ndarray  # (G,) when its window first holds the threshold, s after now (NaN: none)
    forecast_mm: np.ndarray  # (G,) the window's accumulation then, mm


def tiers_many(
    recent_mm: np.ndarray,
    forecast_mm: np.ndarray | None,
    leads_s: np.ndarray | None,
    step_s: float,
    tiers: Sequence[Mapping],
    within_window: bool = False,
) -> FieldTiers:
    """Tiers reached and forecast for G gauges from their recent slots and their nowcast.

    ``recent_mm`` (G, M) are the last M slot amounts up to now, oldest first, NaN where missing
    (counted as 0: with gaps a tier may be reached later than it was in fact); M covers the
    longest window. ``forecast_mm[:, j]`` (G, L) is the rain forecast from now to ``leads_s[j]``
    (cumulative; leads are multiples of ``step_s``). The window of ``W`` hours ending at lead ``τ``
    holds what was observed in its part before now plus the forecast in its part after now:

        A_W(now + τ) = observed(now - (W - τ), now] + F(τ) - F(τ - W)

    with ``F(s) = 0`` for ``s <= 0``. A tier is forecast at the first lead where ``A_W >= mm``;
    with ``within_window`` only at leads up to ``W`` (the CMA wording: "within W hours the rain
    will reach mm"), so a long window's tier may be forecast further ahead than a short one's.
    """
    recent = np.nan_to_num(np.atleast_2d(np.asarray(recent_mm, dtype=float)))
    g_count = recent.shape[0]
    slots = [max(1, int(round(rule["window_h"] * 3600 / step_s))) for rule in tiers]
    if recent.shape[1] < max(slots):
        raise ValueError(f"recent_mm must hold the longest window ({max(slots)} slots), got {recent.shape[1]}")
    observed_last = np.concatenate(
        [np.zeros((g_count, 1)), np.cumsum(recent[:, ::-1], axis=1)], axis=1
    )  # [:, k]: last k slots
    limit = np.array([rule["mm"] for rule in tiers])
    reached, reached_i, reached_mm = _reached_now(observed_last, slots, limit)
    forecast, lead_s, fc_mm = np.full(g_count, -1), np.full(g_count, np.nan), np.full(g_count, np.nan)
    if forecast_mm is not None and leads_s is not None and len(leads_s):
        j, cum = _forecast_by_slot(forecast_mm, leads_s, step_s, g_count)
        forecast, lead_s, fc_mm = _first_forecast(observed_last, cum, j, slots, limit, reached, within_window, step_s)
    return FieldTiers(reached, reached_mm, reached_i, forecast, lead_s, fc_mm)


def _reached_now(
    observed_last: np.ndarray, slots: list[int], limit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per gauge: the rank of the highest tier reached now (-1: none), the tier whose window stands
    for it (none reached: the one closest to its threshold) and that window's accumulation."""
    window_now = np.round(np.stack([observed_last[:, m] for m in slots], axis=1), 3)  # (G, T)
    hit_now = window_now >= limit - ALIGN_TOL
    reached = np.where(hit_now.any(axis=1), len(slots) - 1 - np.argmax(hit_now[:, ::-1], axis=1), -1)
    ratio = window_now / limit + np.arange(len(slots)) * 1e-9  # ties: the more severe tier
    reached_i = np.where(reached >= 0, reached, np.argmax(ratio, axis=1))
    reached_mm = window_now[np.arange(window_now.shape[0]), reached_i]
    return reached, reached_i, reached_mm


def _forecast_by_slot(
    forecast_mm: np.ndarray, leads_s: np.ndarray, step_s: float, g_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The leads in slots (L,), and the forecast from now at every slot up to the last lead (G, J + 1)."""
    fc = np.atleast_2d(np.asarray(forecast_mm, dtype=float))
    j = np.rint(np.asarray(leads_s, dtype=float) / step_s).astype(np.int64)  # leads in slots
    every = np.arange(int(j.max()) + 1)
    if np.array_equal(j, every[1:]):
        return j, np.concatenate([np.zeros((g_count, 1)), fc], axis=1)  # F at every slot
    return j, np.stack([np.interp(every, np.r_[0, j], np.r_[0.0, row]) for row in fc])


def _first_forecast(
    observed_last: np.ndarray,
    cum: np.ndarray,
    j: np.ndarray,
    slots: list[int],
    limit: np.ndarray,
    reached: np.ndarray,
    within_window: bool,
    step_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per gauge: the rank of the highest tier above ``reached`` that a lead's window holds (-1:
    none), the first such lead, s, and the window's accumulation then (NaN: none)."""
    g_count = observed_last.shape[0]
    forecast, lead_s, fc_mm = np.full(g_count, -1), np.full(g_count, np.nan), np.full(g_count, np.nan)
    for i in range(len(slots) - 1, -1, -1):
        todo = (forecast < 0) & (reached < i)
        if not todo.any():
            continue
        m = slots[i]
        window = observed_last[:, np.clip(m - j, 0, m)] + cum[:, j] - cum[:, np.clip(j - m, 0, None)]  # (G, L)
        hit = window >= limit[i] - ALIGN_TOL
        if within_window:
            hit &= (j <= m)[None, :]
        first = np.argmax(hit, axis=1)
        new = todo & hit.any(axis=1)
        forecast[new] = i
        lead_s[new] = j[first[new]] * step_s
        fc_mm[new] = np.round(window[new, first[new]], 3)
    return forecast, lead_s, fc_mm


def tier_reached(acc: GaugeAccumulator, now_s: float, tiers: Sequence[Mapping]) -> Reached:
    """The highest tier whose threshold the gauge's window accumulation has reached at ``now_s``.

    ``tiers`` are ``{"tier", "window_h", "mm"}`` dicts in ascending severity (config/rain.toml).
    Missing intervals count as 0: with gaps, a tier may be reached later than it was in fact.

    >>> tiers = [{"tier": "blue", "window_h": 12, "mm": 50.0}, {"tier": "orange", "window_h": 3, "mm": 50.0}]
    >>> acc = GaugeAccumulator()
    >>> _ = [acc.add(300 * k, 49.9 / 36) for k in range(1, 37)]   # 49.9 mm in the last 3 h
    >>> tier_reached(acc, 36 * 300, tiers)
    Reached(tier=None, mm=49.9, window_h=3)
    >>> _ = acc.add(37 * 300, 0.1)                                 # 50.0 mm over 12 h; 3 h: 50.0 - 49.9/36
    >>> tier_reached(acc, 37 * 300, tiers)
    Reached(tier='blue', mm=50.0, window_h=12)
    """
    out = tiers_many(acc.recent_mm(now_s, max(r["window_h"] for r in tiers))[None], None, None, acc.step_s, tiers)
    i = int(out.reached_i[0])
    return Reached(tiers[i]["tier"] if out.reached[0] >= 0 else None, float(out.reached_mm[0]), tiers[i]["window_h"])


def tier_forecast(
    acc: GaugeAccumulator, now_s: float, forecast_mm: np.ndarray, leads_s: np.ndarray, tiers: Sequence[Mapping]
) -> Forecast | None:
    """The highest tier above the one reached now that observed + forecast rain reaches within ``leads_s``.

    One gauge's ``tiers_many``; None: no tier above the one reached.

    >>> tiers = [{"tier": "orange", "window_h": 3, "mm": 50.0}, {"tier": "red", "window_h": 3, "mm": 100.0}]
    >>> acc = GaugeAccumulator()
    >>> _ = [acc.add(300 * k, 2.5) for k in range(1, 13)]            # 30 mm/h for the last hour
    >>> leads = np.arange(1, 13) * 300.0
    >>> tier_forecast(acc, 3600, 2.5 * np.arange(1, 13), leads, tiers)  # and 30 mm/h for the next hour
    Forecast(tier='orange', lead_s=2400.0, mm=50.0, window_h=3)
    >>> tier_forecast(acc, 3600, np.zeros(12), leads, tiers) is None
    True
    """
    recent = acc.recent_mm(now_s, max(r["window_h"] for r in tiers))[None]
    out = tiers_many(recent, np.asarray(forecast_mm, dtype=float)[None], leads_s, acc.step_s, tiers)
    i = int(out.forecast[0])
    if i < 0:
        return None
    return Forecast(tiers[i]["tier"], float(out.lead_s[0]), float(out.forecast_mm[0]), tiers[i]["window_h"])
