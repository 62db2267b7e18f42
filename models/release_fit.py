"""One candidate source's best-fitting release: the likelihood behind source tracing (models/tracing.py).

A release of unknown start time, duration, flow factor and mass per pollutant is carried from the
candidate to every station's samples by the advection-dispersion model (models/transport.py). For a
given start, duration and flow the masses follow in closed form (least squares on noise-weighted
data); start times and durations are searched on a grid, then refined continuously (Nelder-Mead).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from models.transport import dispersion_sigma_s, plume_mg_l


@dataclass(frozen=True)
class Geometry:
    """From one candidate to every sample of every station, at nominal flow: arrays of length N
    (all stations' samples concatenated); ``reached`` is False where the candidate is not upstream."""

    t_s: np.ndarray
    travel_s: np.ndarray
    distance_km: np.ndarray
    dispersion_m2s: np.ndarray
    discharge_m3s: np.ndarray
    reached: np.ndarray

    def subset(self, keep: np.ndarray) -> Geometry:
        return Geometry(
            *(
                a[keep]
                for a in (
                    self.t_s,
                    self.travel_s,
                    self.distance_km,
                    self.dispersion_m2s,
                    self.discharge_m3s,
                    self.reached,
                )
            )
        )

    def may_see(
        self, t0_min_s: float, velocity_factor_max: float = 1.0, velocity_factor_min: float = 1.0
    ) -> np.ndarray:
        """Samples a release starting at ``t0_min_s`` or later could reach (within 6 sigma of the
        fastest arrival): the others are zero in every fit, so they can be left out of the arithmetic."""
        slowest = self.travel_s / velocity_factor_min
        sigma_max = dispersion_sigma_s(slowest, self.distance_km, 1.0) * np.sqrt(self.dispersion_m2s)
        return self.reached & (self.t_s >= t0_min_s + self.travel_s / velocity_factor_max - 6 * sigma_max)

    def unit_plume(self, t0: np.ndarray, duration_s: float, velocity_factor: float) -> np.ndarray:
        """Concentration per kg released at each start time in ``t0``: (len(t0), N)."""
        tau = self.travel_s / velocity_factor
        sigma = dispersion_sigma_s(tau, self.distance_km, 1.0) * np.sqrt(self.dispersion_m2s)
        g = plume_mg_l(self.t_s[None, :] - t0[:, None], tau, sigma, duration_s, 1.0, self.discharge_m3s)
        return np.where(self.reached, g, 0.0)


def reachable(
    geo: Geometry, y: Mapping[str, np.ndarray], t0_min_s: float, velocity_factor_max: float, velocity_factor_min: float
) -> tuple[Geometry, dict[str, np.ndarray]]:
    """The geometry and data of the samples a release starting at ``t0_min_s`` or later may reach.
    The others add the same y² to every fit (``yy`` keeps the whole sum): stations beside the
    candidate's path and the look-back before the earliest arrival are left out of the arithmetic."""
    keep = geo.may_see(t0_min_s, velocity_factor_max, velocity_factor_min)
    return geo.subset(keep), {p: v[keep] for p, v in y.items()}


@dataclass(frozen=True)
class Release:
    """A candidate's best-fitting release; masses and their standard errors are on noise-weighted data."""

    objective: float  # weighted SSE plus the flow prior's penalty
    start_s: float
    duration_s: float
    velocity_factor: float
    masses: dict[str, float]
    mass_se: dict[str, float]


def better_release(
    best: Release | None, geo: Geometry, y, yy, duration_s, t0, velocity_factor=1.0, flow_penalty=0.0
) -> Release:
    """Least-squares masses for each start time in ``t0``; the better of that optimum and ``best``.
    The objective is the weighted SSE plus ``flow_penalty`` × (factor - 1)², the prior on today's
    flow. A unit-mass plume (zero where the candidate is not upstream) is scaled per pollutant in
    closed form; a mass's standard error is 1 / sqrt(g·g) on noise-weighted data."""
    g = geo.unit_plume(t0, duration_s, velocity_factor)
    gg = np.einsum("ij,ij->i", g, g)
    sse = np.full(len(t0), flow_penalty * (velocity_factor - 1) ** 2)
    masses = {}
    for p, yp in y.items():
        gy = g @ yp
        m = np.where(gg > 0, np.clip(gy / np.maximum(gg, 1e-30), 0, None), 0.0)
        masses[p] = m
        sse += yy[p] - 2 * m * gy + m * m * gg
    i = int(np.argmin(sse))
    if best is None or sse[i] < best.objective:
        se = 1 / np.sqrt(gg[i]) if gg[i] > 0 else np.inf
        return Release(
            float(sse[i]),
            float(t0[i]),
            float(duration_s),
            float(velocity_factor),
            {p: float(m[i]) for p, m in masses.items()},
            {p: float(se) for p in masses},
        )
    return best


def grid_release(
    best: Release | None,
    geo: Geometry,
    y: Mapping[str, np.ndarray],
    yy: Mapping[str, float],
    arrival_s: float,
    durations_s: Sequence[float],
    t0_step_s: float,
    velocity_factor: float = 1.0,
    flow_penalty: float = 0.0,
) -> Release:
    """The best release over a grid of durations and start times (up to two hours before the one
    that puts the plume's front at the first detecting station at ``arrival_s``), or ``best``."""
    for d in durations_s:
        step = max(t0_step_s, d / 20)  # coarse for long releases: the refinement finds the minute
        t0 = np.arange(arrival_s - d - 2 * 3600, arrival_s + step, step)
        seen_geo, seen_y = reachable(geo, y, t0[0], velocity_factor, velocity_factor)
        best = better_release(best, seen_geo, seen_y, yy, d, t0, velocity_factor, flow_penalty)
    return best


def refined_release(
    best: Release,
    geo: Geometry,
    y,
    yy,
    start_within_h: float,
    flow_max_min: tuple[float, float],
    duration_bounds_s: tuple[float, float] = (300.0, 6 * 86400.0),
    flow_penalty: float = 0.0,
) -> Release:
    """Continuous start time (within ``start_within_h`` of the grid optimum), duration and flow
    factor (between ``flow_max_min``) from the grid optimum (Nelder-Mead): plumes a few km from
    their source are sharper than any grid step, and today's flow is not the nominal one."""
    from scipy.optimize import minimize

    t0_bounds_h = (best.start_s / 3600 - start_within_h, best.start_s / 3600 + start_within_h)

    def clamp(params: np.ndarray) -> tuple[float, float, float]:  # an unseen end must not stretch a release to months
        def within(x: float, low: float, high: float) -> float:  # np.clip costs more than the plume on scalars
            return min(max(float(x), low), high)

        return (
            within(params[0], *t0_bounds_h) * 3600,
            within(math.exp(params[1]), *duration_bounds_s),
            within(math.exp(params[2]), flow_max_min[1], flow_max_min[0]),
        )

    objective = _release_objective(geo, y, yy, clamp, flow_penalty)
    start = np.array([best.start_s / 3600, np.log(best.duration_s), np.log(best.velocity_factor)])
    simplex = [start, start + [0.1, 0, 0], start + [0, 0.3, 0], start + [0, 0, 0.1]]
    with np.errstate(over="ignore", invalid="ignore"):  # far-off simplex corners give plumes of inf; they lose
        result = minimize(
            objective,
            start,
            method="Nelder-Mead",
            options={"xatol": 5e-3, "fatol": 1e-2, "maxiter": 90, "initial_simplex": simplex},
        )
    t0, d, v = clamp(result.x)
    refined = better_release(None, geo, y, yy, d, np.array([t0]), v, flow_penalty)
    return refined if refined.objective < best.objective else best


def _release_objective(geo: Geometry, y, yy, clamp, flow_penalty: float):
    """better_release's objective for one release, without its per-call overhead (Nelder-Mead calls
    it ~100 times per candidate on a few hundred samples): sigma scales as flow factor^-1.5. Its
    parameters: start in hours, log duration, log flow factor (similar scales), clamped by ``clamp``."""
    Y = np.array(list(y.values())).reshape(len(y), -1)
    yy_sum = sum(yy.values())
    sigma_nominal = np.maximum(
        dispersion_sigma_s(geo.travel_s, geo.distance_km, 1.0) * np.sqrt(geo.dispersion_m2s), 1.0
    )
    flux_l_s = geo.discharge_m3s * 1000

    def objective(params: np.ndarray) -> float:
        t0, d, v = clamp(params)
        sigma = sigma_nominal * v**-1.5
        t = geo.t_s - t0 - geo.travel_s / v
        g = (ndtr(t / sigma) - ndtr((t - d) / sigma)) * (1e6 / d) / flux_l_s
        gg = float(g @ g)
        gy = Y @ g
        m = np.maximum(gy / gg, 0.0) if gg > 0 else np.zeros_like(gy)
        return yy_sum - float(np.sum(2 * m * gy - m * m * gg)) + flow_penalty * (v - 1) ** 2

    return objective
