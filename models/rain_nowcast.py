"""Rain nowcast: storm cells tracked over the gauge field and advected 0-6 h ahead.

``StormNowcaster`` fits the cells of each step's field, tracks them from step to step and gives
each gauge (or any point) its forecast accumulation with a p10/p50/p90 band; the rainstorm tiers
turn that into tiers forecast (``models/rain_tiers.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


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
