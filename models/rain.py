"""Rain: per-gauge accumulations, CMA rainstorm tiers reached or forecast, and a storm-cell nowcast.

``GaugeAccumulator`` keeps one gauge's interval amounts on a fixed grid of reporting slots, so late
readings land in their own slot, a duplicate replaces its slot instead of adding twice, and a gap
is reported as missing coverage rather than as dry weather. ``tier_reached`` and ``tier_forecast``
apply the rainstorm tiers (config/rain.toml ``[[tiers]]``, passed in as plain dicts in ascending
order of severity). ``StormNowcaster`` tracks the storm cells over the gauge field and advects
them 0-6 h ahead, giving each gauge (or any point) its forecast accumulation with a p10/p50/p90 band.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

ALIGN_TOL = 1e-6  # mm: sums of 0.1 mm tips are not exact in binary; 49.99999999 counts as 50


# --- accumulations ------------------------------------------------------------------------------
class GaugeAccumulator:
    """Rolling rain accumulations of one gauge, from the amounts (mm) it reports per interval.

    A reading ``(end_s, mm)`` is the rain fallen in the reporting interval that ends at ``end_s``.
    It is stored in the slot ``round(end_s / step_s)`` of a ring of ``horizon_h`` hours, with the
    slot number beside it: a slot whose number does not match is empty, so nothing has to be
    cleared when the clock moves on. Adding is O(1); a window sum reads at most one ring.

    - a late reading (older than the newest, but within the horizon) lands in its own slot;
    - a duplicate (same interval end again) replaces the slot's amount, never adds twice;
    - a missing interval stays empty: sums add what is there and ``coverage`` says how much of the
      window was reported (1.0 = complete), so callers know a total is only a lower bound;
    - a reading older than the horizon cannot be placed: ``add`` returns ``"too_late"``.

    When it fails: the slot grid is the reporting interval, so a gauge that reports more often
    than ``step_s`` overwrites itself (readings covering several slots are spread evenly); a
    reading with a wrong clock far in the future moves the horizon and makes the rest too late.

    Parameters
    ----------
    step_s
        The gauges' reporting interval, s (the slot width).
    horizon_h
        How far back readings are kept, h (the longest window).
    windows_h
        Windows reported by ``totals_mm`` and ``coverage``, h.

    Examples
    --------
    Five-minute amounts; one arrives late, one twice, one never.

    >>> acc = GaugeAccumulator(step_s=300, windows_h=(0.25, 0.5))
    >>> [acc.add(end_s, mm) for end_s, mm in [(300, 1.0), (900, 2.0), (600, 0.5), (900, 2.0), (1800, 4.0)]]
    ['added', 'added', 'added', 'replaced', 'added']
    >>> acc.totals_mm(1800), acc.coverage(1800)
    ({0.25: 4.0, 0.5: 7.5}, {0.25: 0.333, 0.5: 0.667})
    >>> acc.add(1800 - 24 * 3600, 9.9)
    'too_late'
    """

    def __init__(self, step_s: float = 300.0, horizon_h: float = 24.0, windows_h: Sequence[float] = (1, 3, 6, 12, 24)):
        if not step_s > 0:
            raise ValueError(f"step_s must be > 0, got {step_s!r}")
        if not horizon_h * 3600 >= step_s:
            raise ValueError(f"horizon_h must cover at least one step, got {horizon_h!r}")
        if any(not 0 < w <= horizon_h for w in windows_h):
            raise ValueError(f"windows_h must lie in (0, horizon_h={horizon_h}], got {list(windows_h)!r}")
        self.step_s = float(step_s)
        self.horizon_h = float(horizon_h)
        self.windows_h = tuple(windows_h)
        self.n_slots = int(round(self.horizon_h * 3600 / self.step_s))
        self._slot = np.full(self.n_slots, -1, dtype=np.int64)  # which slot each ring cell holds (-1: none)
        self._mm = np.zeros(self.n_slots)
        self.newest_slot: int | None = None

    def _slots(self, hours: float) -> int:
        return max(1, int(round(hours * 3600 / self.step_s)))

    def add(self, end_s: float, mm: float, interval_s: float | None = None) -> str:
        """Store one reading; returns ``"added"``, ``"replaced"`` (a duplicate) or ``"too_late"``."""
        n = 1 if interval_s is None else int(round(interval_s / self.step_s))
        if n < 1 or abs(n * self.step_s - (interval_s or self.step_s)) > 0.01 * self.step_s:
            raise ValueError(f"interval_s must be a multiple of step_s={self.step_s:g}, got {interval_s!r}")
        last = int(round(end_s / self.step_s))
        if self.newest_slot is not None and last <= self.newest_slot - self.n_slots:
            return "too_late"
        self.newest_slot = last if self.newest_slot is None else max(self.newest_slot, last)
        status = "added"
        for k in range(max(last - n, self.newest_slot - self.n_slots) + 1, last + 1):  # a long interval: spread evenly
            i = k % self.n_slots
            status = "replaced" if self._slot[i] == k else status
            self._slot[i], self._mm[i] = k, mm / n
        return status

    def recent_mm(self, now_s: float, hours: float) -> np.ndarray:
        """The amounts of the slots in ``(now_s - hours, now_s]``, oldest first; NaN where missing."""
        m = min(self._slots(hours), self.n_slots)
        k = np.arange(int(round(now_s / self.step_s)) - m + 1, int(round(now_s / self.step_s)) + 1)
        i = k % self.n_slots
        return np.where(self._slot[i] == k, self._mm[i], np.nan)

    def totals_mm(self, now_s: float) -> dict[float, float]:
        """Accumulation per window (h -> mm) up to ``now_s``, rounded to 0.001 mm."""
        recent = np.nan_to_num(self.recent_mm(now_s, self.horizon_h))
        return {w: round(float(recent[-self._slots(w) :].sum()), 3) for w in self.windows_h}

    def coverage(self, now_s: float) -> dict[float, float]:
        """Fraction of each window's intervals reported (h -> 0..1, 3 decimals)."""
        seen = ~np.isnan(self.recent_mm(now_s, self.horizon_h))
        return {w: round(float(seen[-self._slots(w) :].mean()), 3) for w in self.windows_h}

    def state(self) -> dict:
        """Plain JSON-able data; ``from_state`` restores it."""
        recent = self.recent_mm(self.newest_slot * self.step_s, self.horizon_h) if self.newest_slot is not None else []
        return {
            "step_s": self.step_s,
            "horizon_h": self.horizon_h,
            "windows_h": list(self.windows_h),
            "newest_slot": self.newest_slot,
            "mm": [None if np.isnan(v) else float(v) for v in recent],
        }

    @classmethod
    def from_state(cls, state: Mapping) -> GaugeAccumulator:
        """The accumulator ``state()`` described.

        >>> a = GaugeAccumulator()
        >>> _ = [a.add(t, 0.1 * i) for i, t in enumerate(range(300, 7200, 300))]
        >>> b = GaugeAccumulator.from_state(a.state())
        >>> b.totals_mm(7200) == a.totals_mm(7200), b.coverage(7200) == a.coverage(7200)
        (True, True)
        """
        acc = cls(state["step_s"], state["horizon_h"], state["windows_h"])
        if state["newest_slot"] is not None:
            newest = int(state["newest_slot"])
            for k, v in zip(range(newest - len(state["mm"]) + 1, newest + 1), state["mm"]):
                if v is not None:
                    acc._slot[k % acc.n_slots], acc._mm[k % acc.n_slots] = k, v
            acc.newest_slot = newest
        return acc


def rolling_sum_mm(mm: np.ndarray, window_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch form: sums and covered fractions of ``window_slots`` intervals ending at each row.

    ``mm`` is (T, ...) on the slot grid with NaN for missing intervals; row ``t`` is what
    ``GaugeAccumulator.totals_mm`` / ``coverage`` give at that slot's end.

    >>> sums, cover = rolling_sum_mm(np.array([1.0, np.nan, 2.0, 3.0]), 2)
    >>> sums.tolist(), cover.tolist()
    ([1.0, 1.0, 2.0, 5.0], [0.5, 0.5, 0.5, 1.0])
    """
    seen = ~np.isnan(mm)
    c = np.cumsum(np.where(seen, mm, 0.0), axis=0)
    n = np.cumsum(seen, axis=0)
    c[window_slots:] = c[window_slots:] - c[:-window_slots].copy()
    n[window_slots:] = n[window_slots:] - n[:-window_slots].copy()
    return c, n / window_slots


# --- tiers ---------------------------------------------------------------------------------------
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
    window_now = np.round(np.stack([observed_last[:, m] for m in slots], axis=1), 3)  # (G, T)
    limit = np.array([rule["mm"] for rule in tiers])
    hit_now = window_now >= limit - ALIGN_TOL
    reached = np.where(hit_now.any(axis=1), len(tiers) - 1 - np.argmax(hit_now[:, ::-1], axis=1), -1)
    ratio = window_now / limit + np.arange(len(tiers)) * 1e-9  # ties: the more severe tier
    reached_i = np.where(reached >= 0, reached, np.argmax(ratio, axis=1))
    reached_mm = window_now[np.arange(g_count), reached_i]
    forecast, lead_s, fc_mm = np.full(g_count, -1), np.full(g_count, np.nan), np.full(g_count, np.nan)
    if forecast_mm is not None and leads_s is not None and len(leads_s):
        fc = np.atleast_2d(np.asarray(forecast_mm, dtype=float))
        j = np.rint(np.asarray(leads_s, dtype=float) / step_s).astype(np.int64)  # leads in slots
        every = np.arange(int(j.max()) + 1)
        if np.array_equal(j, every[1:]):
            cum = np.concatenate([np.zeros((g_count, 1)), fc], axis=1)  # F at every slot
        else:
            cum = np.stack([np.interp(every, np.r_[0, j], np.r_[0.0, row]) for row in fc])
        for i in range(len(tiers) - 1, -1, -1):
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
    return FieldTiers(reached, reached_mm, reached_i, forecast, lead_s, fc_mm)


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


# --- nowcast --------------------------------------------------------------------------------------
class StormNowcaster:
    """Track storm cells over the gauge field and advect them 0-6 h ahead (Lagrangian persistence).

    Each ``update(t_s, rates_mm_h)`` takes the field's rates at the gauges (NaN: no reading).
    Gauges far above all their neighbours are set aside as suspect (a spike or a drifting gauge,
    ``suspect``). Wet gauges (``>= wet_mm_h``) joined as grid neighbours form a cell; each cell with a
    peak of at least ``min_peak_mm_h`` is fitted with a Gaussian (peak, centre, radius) over the
    whole field plus a uniform background: on a 5 km grid a 3-8 km cell is seen by a handful of
    gauges, and the fit finds its centre between them and beyond the grid edge, where an
    intensity-weighted centroid is pulled towards the gauges that happen to be wet. Cells are
    matched to tracks by the position each track predicts; a track's velocity is the least-squares
    line through its centres over the last ``track_h`` and its intensity trend the slope of
    log(peak), damped with an e-folding time of ``trend_h`` and capped at ``max_growth``.

    The forecast rate at point ``p`` and lead ``τ`` is the current cell moved on: ``A(τ) exp(-|p - c
    - v τ|² / 2 r²)`` (semi-Lagrangian: the fitted field at ``p - v τ``), plus what the cells do not
    explain, left in place and fading with e-folding ``residual_h``. A track seen fewer than
    ``min_fixes`` times moves with the others' mean velocity, or stays and fades if it is alone.
    ``members`` ensemble members perturb speed, direction and intensity; ``forecast`` returns the
    p10/p50/p90 of the cumulative rain at each lead.

    When it fails: cells that split, merge or form between gauges are seen late; a cell smaller
    than the grid spacing is poorly fitted; the life cycle is extrapolated from the recent trend, so
    the peak of a growing cell and the end of a decaying one are guessed, not known.

    Parameters
    ----------
    x_km, y_km
        Gauge positions, km (G each).
    step_s
        Interval between updates, s.
    track_h
        History used for velocity and trend, h.
    min_fixes
        Fixes a track needs before its own velocity is used.
    wet_mm_h, min_peak_mm_h
        Rate that makes a gauge part of a cell, and the peak a cell needs, mm/h.
    trend_h, max_growth
        E-folding time of the intensity trend, h; largest factor the trend may grow a cell by.
    residual_h
        E-folding time of the rain the cells do not explain (light showers), h.
    members, speed_sd, angle_sd_deg, intensity_sd
        Ensemble size; relative sd of the speed, sd of the direction (degrees), sd of log-intensity.
    suspect_mm_h, suspect_ratio
        A gauge above ``suspect_mm_h + suspect_ratio * (its wettest neighbour)`` is suspect.
    seed
        Seed of the ensemble perturbations (drawn once, so forecasts reproduce).

    Examples
    --------
    A 60 mm/h cell, radius 6 km, moving east at 8 km/h across a 5 km grid, seen for 45 minutes:

    >>> gx, gy = np.meshgrid(np.arange(8) * 5.0, np.arange(6) * 5.0)
    >>> x, y = gx.ravel(), gy.ravel()
    >>> now = StormNowcaster(x, y)
    >>> for k in range(10):
    ...     cx = 5 + 8 * k * 300 / 3600
    ...     now.update(k * 300.0, 60 * np.exp(-((x - cx) ** 2 + (y - 12.5) ** 2) / (2 * 6.0**2)))
    >>> [round(v, 1) + 0.0 for v in now.velocity_kmh]  # + 0.0: a speed of -0.0 km/h shows as 0.0
    [8.0, 0.0]
    >>> band = now.forecast(np.array([3600.0, 3 * 3600.0]))
    >>> east = int(np.argmin(np.hypot(x - 30, y - 10)))     # 20 km downstream of the cell
    >>> [band[q][east].round().tolist() for q in ("p10", "p50", "p90")]   # mm by 1 h and by 3 h
    [[2.0, 46.0], [3.0, 77.0], [5.0, 108.0]]
    >>> again = StormNowcaster.from_state(now.state())      # what a restarted agent rebuilds
    >>> bool(np.allclose(again.forecast(np.array([3600.0]))["p50"], now.forecast(np.array([3600.0]))["p50"]))
    True
    """

    def __init__(
        self,
        x_km: np.ndarray,
        y_km: np.ndarray,
        step_s: float = 300.0,
        track_h: float = 1.0,
        min_fixes: int = 3,
        wet_mm_h: float = 5.0,
        min_peak_mm_h: float = 10.0,
        trend_h: float = 0.5,
        max_growth: float = 2.0,
        residual_h: float = 0.5,
        members: int = 24,
        speed_sd: float = 0.15,
        angle_sd_deg: float = 10.0,
        intensity_sd: float = 0.25,
        suspect_mm_h: float = 25.0,
        suspect_ratio: float = 3.0,
        decay_h: float = 1e9,
        life_h: float = 3.0,
        life_fixes: int = 6,
        seed: int = 0,
    ):
        self.x_km, self.y_km = np.asarray(x_km, dtype=float), np.asarray(y_km, dtype=float)
        if self.x_km.shape != self.y_km.shape or self.x_km.ndim != 1 or self.x_km.size < 2:
            raise ValueError(
                f"x_km and y_km must be 1-D of the same length >= 2, got {self.x_km.shape} and {self.y_km.shape}"
            )
        self.step_s, self.track_h, self.min_fixes = float(step_s), float(track_h), int(min_fixes)
        self.wet_mm_h, self.min_peak_mm_h = wet_mm_h, min_peak_mm_h
        self.trend_h, self.max_growth, self.residual_h = trend_h, max_growth, residual_h
        self.members, self.speed_sd, self.angle_sd_deg, self.intensity_sd = (
            int(members),
            speed_sd,
            angle_sd_deg,
            intensity_sd,
        )
        self.suspect_mm_h, self.suspect_ratio, self.decay_h, self.seed = (
            suspect_mm_h,
            suspect_ratio,
            float(decay_h),
            seed,
        )
        self.life_h, self.life_fixes = float(life_h), int(life_fixes)
        d = np.hypot(self.x_km[:, None] - self.x_km[None, :], self.y_km[:, None] - self.y_km[None, :])
        spacing = float(np.median(np.where(d > 0, d, np.inf).min(axis=1)))
        self.near = (d > 0) & (d <= 1.5 * spacing)  # grid neighbours, diagonals included
        self.spacing_km = spacing
        rng = np.random.default_rng(seed)  # member 0 is the unperturbed forecast
        self._speed = np.r_[1.0, 1 + speed_sd * rng.standard_normal(self.members - 1)]
        self._angle = np.r_[0.0, np.deg2rad(angle_sd_deg) * rng.standard_normal(self.members - 1)]
        self._gain = np.r_[1.0, np.exp(intensity_sd * rng.standard_normal(self.members - 1))]
        self.t_s: float | None = None
        self.tracks: list[dict] = []  # {"id", "t", "x", "y", "peak", "r"}: fixes over the last track_h
        self.residual = np.zeros(self.x_km.size)  # mm/h the cells do not explain
        self.suspect = np.zeros(self.x_km.size, dtype=bool)
        self._next_id = 0

    _PARAMS = (
        "step_s",
        "track_h",
        "min_fixes",
        "wet_mm_h",
        "min_peak_mm_h",
        "trend_h",
        "max_growth",
        "residual_h",
        "members",
        "speed_sd",
        "angle_sd_deg",
        "intensity_sd",
        "suspect_mm_h",
        "suspect_ratio",
        "decay_h",
        "life_h",
        "life_fixes",
        "seed",
    )

    def state(self) -> dict:
        """Plain JSON-able data; ``from_state`` restores it (the ensemble is redrawn from ``seed``)."""
        return {
            "x_km": self.x_km.tolist(),
            "y_km": self.y_km.tolist(),
            "params": {k: getattr(self, k) for k in self._PARAMS},
            "t_s": self.t_s,
            "tracks": self.tracks,
            "residual": self.residual.tolist(),
            "suspect": self.suspect.tolist(),
            "next_id": self._next_id,
        }

    @classmethod
    def from_state(cls, state: Mapping) -> StormNowcaster:
        now = cls(np.array(state["x_km"]), np.array(state["y_km"]), **state["params"])
        now.t_s, now._next_id = state["t_s"], int(state["next_id"])
        now.tracks = [{k: (v if k == "id" else list(v)) for k, v in tr.items()} for tr in state["tracks"]]
        now.residual, now.suspect = np.array(state["residual"], dtype=float), np.array(state["suspect"], dtype=bool)
        return now

    # --- one step of the field -------------------------------------------------------------------
    def update(self, t_s: float, rates_mm_h: np.ndarray) -> None:
        """Take the field at ``t_s``: rates at the gauges, mm/h, NaN where a gauge has no reading."""
        rates = np.asarray(rates_mm_h, dtype=float)
        if rates.shape != self.x_km.shape:
            raise ValueError(f"rates_mm_h must have one value per gauge ({self.x_km.size}), got shape {rates.shape}")
        wettest_near = np.where(self.near, np.nan_to_num(rates)[None, :], 0.0).max(axis=1)
        self.suspect = rates > self.suspect_mm_h + self.suspect_ratio * wettest_near
        rates = np.where(self.suspect, np.nan, rates)
        cells, background = self._fit_cells(rates)
        self._associate(t_s, cells)
        explained = background + sum(
            (c[0] * np.exp(-((self.x_km - c[1]) ** 2 + (self.y_km - c[2]) ** 2) / (2 * c[3] ** 2)) for c in cells),
            np.zeros_like(rates),
        )
        self.residual = np.clip(np.nan_to_num(rates - explained), 0.0, None) + background
        self.t_s = float(t_s)

    def _fit_cells(self, rates: np.ndarray) -> tuple[list[tuple[float, float, float, float]], float]:
        """Cells as (peak mm/h, x km, y km, radius km), and the uniform background, mm/h."""
        from scipy.optimize import least_squares
        from scipy.sparse.csgraph import connected_components

        seen = ~np.isnan(rates)
        wet = seen & (rates >= self.wet_mm_h)
        if not wet.any():
            return [], 0.0
        idx = np.flatnonzero(wet)
        n, label = connected_components(self.near[np.ix_(idx, idx)], directed=False)
        guesses = []
        for k in range(n):
            g = idx[label == k]
            w = rates[g]
            if (
                w.max() < self.min_peak_mm_h or g.size < 2
            ):  # one wet gauge alone is a shower or a faulty gauge, not a cell
                continue
            cx, cy = np.average(self.x_km[g], weights=w), np.average(self.y_km[g], weights=w)
            r2 = np.average((self.x_km[g] - cx) ** 2 + (self.y_km[g] - cy) ** 2, weights=w)
            guesses.append(
                (
                    float(w.max()),
                    cx,
                    cy,
                    float(np.clip(np.sqrt(max(r2, 1e-6)), 0.5 * self.spacing_km, 2.0 * self.spacing_km)),
                )
            )
        if not guesses:
            return [], 0.0
        x, y, obs = self.x_km[seen], self.y_km[seen], rates[seen]
        lo_x, hi_x, lo_y, hi_y = (
            x.min() - 3 * self.spacing_km,
            x.max() + 3 * self.spacing_km,
            y.min() - 3 * self.spacing_km,
            y.max() + 3 * self.spacing_km,
        )

        def residuals(p: np.ndarray) -> np.ndarray:
            model = np.full(obs.shape, p[-1])
            for a, cx, cy, log_r in p[:-1].reshape(-1, 4):
                model += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * np.exp(2 * log_r)))
            return model - obs

        p0 = np.r_[np.ravel([(a, cx, cy, np.log(r)) for a, cx, cy, r in guesses]), 0.0]
        lo = np.r_[np.ravel([(0.0, lo_x, lo_y, np.log(0.3 * self.spacing_km))] * len(guesses)), 0.0]
        hi = np.r_[
            np.ravel([(10 * max(g[0] for g in guesses), hi_x, hi_y, np.log(4 * self.spacing_km))] * len(guesses)),
            self.wet_mm_h,
        ]
        fit = least_squares(residuals, np.clip(p0, lo, hi), bounds=(lo, hi), max_nfev=50 * p0.size)
        cells = [
            (float(a), float(cx), float(cy), float(np.exp(log_r))) for a, cx, cy, log_r in fit.x[:-1].reshape(-1, 4)
        ]
        return [c for c in cells if c[0] >= self.min_peak_mm_h], float(fit.x[-1])

    def _associate(self, t_s: float, cells: list[tuple[float, float, float, float]]) -> None:
        """Extend each track with the cell nearest to where it predicts itself; the rest start tracks."""
        keep_s = max(self.track_h, self.life_h) * 3600
        free = list(range(len(cells)))
        for track in sorted(self.tracks, key=lambda tr: -tr["peak"][-1]):
            px, py = self._predicted(track, t_s)
            if not free:
                break
            dist = [np.hypot(cells[i][1] - px, cells[i][2] - py) for i in free]
            best = int(np.argmin(dist))
            if dist[best] <= max(1.5 * self.spacing_km, cells[free[best]][3]):
                a, cx, cy, r = cells[free.pop(best)]
                for key, v in (("t", t_s), ("peak", a), ("x", cx), ("y", cy), ("r", r)):
                    track[key].append(v)
        for i in free:
            a, cx, cy, r = cells[i]
            self.tracks.append({"id": self._next_id, "t": [t_s], "peak": [a], "x": [cx], "y": [cy], "r": [r]})
            self._next_id += 1
        # a track not seen this step is over (its cell died or left the field); old fixes age out
        self.tracks = [tr for tr in self.tracks if tr["t"][-1] == t_s]
        for tr in self.tracks:
            first = int(np.searchsorted(tr["t"], t_s - keep_s - 1e-6))
            for key in ("t", "peak", "x", "y", "r"):
                del tr[key][:first]

    def _motion(self, track: dict) -> tuple[float, float, float, float] | None:
        """Velocity (km/h), log-intensity slope (1/h) and curvature (1/h², <= 0) of a track; None with too few fixes.

        The curvature is that of a parabola through log(peak) over the last ``life_h`` (at least
        ``life_fixes`` fixes): a cell that grows ever more slowly, or has begun to decay, is past
        its youth, and the parabola carries it through maturity to its end. 0: no life cycle seen.
        """
        t_h = (np.asarray(track["t"]) - track["t"][-1]) / 3600
        moving = t_h >= -self.track_h - 1e-9
        if moving.sum() < self.min_fixes:
            return None
        vx, vy = (
            np.polyfit(t_h[moving], np.asarray(track["x"])[moving], 1)[0],
            np.polyfit(t_h[moving], np.asarray(track["y"])[moving], 1)[0],
        )
        log_peak = np.log(np.maximum(track["peak"], 1e-3))
        if len(t_h) >= self.life_fixes:
            curvature, slope, _ = np.polyfit(t_h, log_peak, 2)
            if curvature < 0:
                return float(vx), float(vy), float(slope), float(curvature)
        recent = t_h >= -max(self.trend_h, 2 * self.step_s / 3600) - 1e-9
        trend = np.polyfit(t_h[recent], log_peak[recent], 1)[0] if recent.sum() >= 2 else 0.0
        return float(vx), float(vy), float(trend), 0.0

    def _predicted(self, track: dict, t_s: float) -> tuple[float, float]:
        motion = self._motion(track)
        dt_h = (t_s - track["t"][-1]) / 3600
        if motion is None:
            return track["x"][-1], track["y"][-1]
        return track["x"][-1] + motion[0] * dt_h, track["y"][-1] + motion[1] * dt_h

    @property
    def velocity_kmh(self) -> tuple[float, float]:
        """Peak-weighted mean velocity of the tracks with enough fixes, km/h (0, 0 if none)."""
        moving = [(tr["peak"][-1], m) for tr in self.tracks if (m := self._motion(tr)) is not None]
        if not moving:
            return 0.0, 0.0
        w = np.array([p for p, _ in moving])
        return float(np.average([m[0] for _, m in moving], weights=w)), float(
            np.average([m[1] for _, m in moving], weights=w)
        )

    # --- forecast ----------------------------------------------------------------------------------
    def forecast_at(
        self,
        x_km: np.ndarray,
        y_km: np.ndarray,
        leads_s: np.ndarray,
        residual_mm_h: np.ndarray | None = None,
        quantiles: Mapping[str, float] = {"p10": 0.1, "p50": 0.5, "p90": 0.9},
    ) -> dict[str, np.ndarray]:
        """Cumulative rain (mm) from now to each lead at points ``(x_km, y_km)``: quantile -> (P, L).

        ``residual_mm_h`` (P,) is the light rain left in place at the points (default: that of the
        nearest gauge).
        """
        x, y = np.atleast_1d(np.asarray(x_km, dtype=float)), np.atleast_1d(np.asarray(y_km, dtype=float))
        leads = np.asarray(leads_s, dtype=float)
        if residual_mm_h is None:
            nearest = np.argmin(np.hypot(x[:, None] - self.x_km[None, :], y[:, None] - self.y_km[None, :]), axis=1)
            residual_mm_h = self.residual[nearest]
        n = max(1, int(np.ceil(leads.max(initial=0) / self.step_s)))
        tau_h = (np.arange(n) + 0.5) * self.step_s / 3600  # mid-points of the forecast steps
        rate = np.zeros((self.members, x.size, n))
        rate += (np.asarray(residual_mm_h, dtype=float)[:, None] * np.exp(-tau_h / self.residual_h))[None]
        v_mean = self.velocity_kmh
        cos, sin = np.cos(self._angle), np.sin(self._angle)
        for track in self.tracks:
            motion = self._motion(track)
            if motion is None:  # a new cell: the others' motion, no trend; alone, it stays and fades
                vx, vy = v_mean
                trend, curvature = (0.0 if any(self._motion(tr) for tr in self.tracks) else -1.0 / self.trend_h), 0.0
            else:
                vx, vy, trend, curvature = motion
            if curvature < 0:  # the life cycle's parabola
                growth = trend * tau_h + curvature * tau_h**2
            else:  # youth: the recent trend, damped
                growth = trend * self.trend_h * (1 - np.exp(-tau_h / self.trend_h))
            growth = np.minimum(growth, np.log(self.max_growth)) - tau_h / self.decay_h
            peak = track["peak"][-1] * self._gain[:, None] * np.exp(growth)[None, :]  # (M, n)
            ux, uy = (cos * vx - sin * vy) * self._speed, (sin * vx + cos * vy) * self._speed  # (M,)
            cx = track["x"][-1] + ux[:, None] * tau_h[None, :]
            cy = track["y"][-1] + uy[:, None] * tau_h[None, :]
            d2 = (x[None, :, None] - cx[:, None, :]) ** 2 + (y[None, :, None] - cy[:, None, :]) ** 2
            rate += peak[:, None, :] * np.exp(-d2 / (2 * track["r"][-1] ** 2))
        cum = np.concatenate(
            [np.zeros((self.members, x.size, 1)), np.cumsum(rate, axis=2) * self.step_s / 3600], axis=2
        )
        pos = np.clip(leads / self.step_s, 0, n)
        i0 = np.minimum(np.floor(pos).astype(np.int64), n - 1)
        at = cum[..., i0] + (cum[..., i0 + 1] - cum[..., i0]) * (pos - i0)  # linear between steps
        bands = np.quantile(at, list(quantiles.values()), axis=0)  # one partition for all quantiles
        return dict(zip(quantiles, bands))

    def forecast(self, leads_s: np.ndarray) -> dict[str, np.ndarray]:
        """Cumulative rain (mm) from now to each lead at every gauge: ``{"p10", "p50", "p90"}`` -> (G, L)."""
        return self.forecast_at(self.x_km, self.y_km, leads_s, self.residual)
