"""Source tracing: rank candidate upstream sources of a pollution incident.

Each candidate is fitted to what the stations saw: a release of unknown start time, duration and mass
(per pollutant), carried down the river network by the advection-dispersion model
(models/transport.py). Stations downstream of a candidate that saw nothing count against it, as do
detecting stations that are not downstream of it. The fit error gives a likelihood; the pollutant
signature is compared with each source type's emission profile; priors by source type and leading
pollutant complete the posterior. Stateless: call it again as observations arrive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.river import Point, RiverNetwork
from models.transport import dispersion_sigma_s, plume_mg_l

SIGNATURE_POLLUTANTS = ("cod", "nh3n", "oil", "tp")


@dataclass(frozen=True)
class Candidate:
    id: str
    type: str
    point: Point
    name: str = ""
    subtype: str = ""


def emission_profile(profiles: Mapping[str, Mapping[str, float]], source_type: str, subtype: str = "") -> Mapping[str, float]:
    """The subtype's profile when known ("factory.food"), else the type's."""
    return profiles.get(f"{source_type}.{subtype}", profiles.get(source_type, {}))


@dataclass(frozen=True)
class StationSeries:
    """What one station saw: concentration above its own baseline (mg/L) per pollutant."""

    station_id: str
    point: Point
    t_s: np.ndarray
    excess: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Suspect:
    source_id: str
    source_type: str
    probability: float
    distance_km: float          # to the first station that saw it
    travel_time_h: float
    release_start_s: float
    release_duration_s: float
    masses_kg: dict[str, float]
    fit_error: float            # residual RMS / signal RMS
    signature_match: float      # cosine similarity with the type's emission profile
    explanation: str
    point: Point = field(default=("", 0.0))


def leading_pollutant(masses: Mapping[str, float]) -> str:
    for p in ("oil", "nh3n", "tp"):
        if masses.get(p, 0.0) > 0 and p in masses and masses[p] / max(sum(masses.values()), 1e-9) > 0.02:
            return p
    return "cod"


def _better_release(best, series, routes, y, yy, duration_s, t0):
    """Least-squares masses for each start time in ``t0``; the better of that optimum and ``best``.

    ``best`` and the result are (sse, start_s, duration_s, {pollutant: kg}). A unit-mass plume per
    station (zeros where the candidate is not upstream) is scaled per pollutant in closed form.
    """
    g = np.concatenate([
        np.zeros((len(t0), len(s.t_s))) if r is None else plume_mg_l(s.t_s[None, :] - t0[:, None], r[0], r[1], duration_s, 1.0, r[2])
        for s, r in zip(series, routes)
    ], axis=1)
    gg = np.einsum("ij,ij->i", g, g)
    sse = np.zeros(len(t0))
    masses = {}
    for p, yp in y.items():
        gy = g @ yp
        m = np.where(gg > 0, np.clip(gy / np.maximum(gg, 1e-30), 0, None), 0.0)
        masses[p] = m
        sse += yy[p] - 2 * m * gy + m * m * gg
    i = int(np.argmin(sse))
    if best is None or sse[i] < best[0]:
        return float(sse[i]), float(t0[i]), float(duration_s), {p: float(m[i]) for p, m in masses.items()}
    return best


def _refine(best, series, routes, y, yy):
    """Continuous start time and duration from the grid optimum (Nelder-Mead): plumes a few km from
    their source are sharper than any grid step."""
    from scipy.optimize import minimize

    def sse(params: np.ndarray) -> float:
        return _better_release(None, series, routes, y, yy, float(np.exp(params[1])), np.array([params[0]]))[0]

    start = np.array([best[1], np.log(best[2])])
    result = minimize(sse, start, method="Nelder-Mead", options={"xatol": 1.0, "fatol": 1e-9, "maxiter": 200,
                                                                   "initial_simplex": [start, start + [300, 0], start + [0, 0.3]]})
    refined = _better_release(None, series, routes, y, yy, float(np.exp(result.x[1])), np.array([result.x[0]]))
    return refined if refined[0] < best[0] else best


def trace(
    network: RiverNetwork,
    candidates: Sequence[Candidate],
    series: Sequence[StationSeries],
    first_station: str,
    first_t_s: float,
    profiles: Mapping[str, Mapping[str, float]],
    priors: Mapping[str, Mapping[str, float]],
    durations_s: Sequence[float] = (600, 1800, 3600, 7200, 21600, 86400, 259200),
    t0_step_s: float = 300,
    max_travel_s: float = 48 * 3600,
    signature_weight: float = 6.0,
    top_k: int = 5,
    noise_sd: Mapping[str, float] | None = None,
) -> list[Suspect]:
    """Candidates ranked by posterior probability (the top ``top_k``).

    ``first_station`` / ``first_t_s``: where and when the incident was first detected (by the
    detectors, which know each station's noise); candidates must lie upstream of it.
    """
    first = next(s for s in series if s.station_id == first_station)
    first_t = first_t_s
    pollutants = sorted({p for s in series for p in s.excess})
    # residuals are weighed by each pollutant's noise, so 0.01 mg/L of oil counts as much as 1 mg/L of COD
    weight = {p: 1.0 / max(noise_sd.get(p, 1.0), 1e-6) if noise_sd else 1.0 for p in pollutants}
    y = {p: weight[p] * np.concatenate([np.asarray(s.excess.get(p, np.zeros(len(s.t_s))), float) for s in series]) for p in pollutants}
    yy = {p: float(v @ v) for p, v in y.items()}
    n_total = sum(len(s.t_s) for s in series) * len(pollutants)

    fits = []
    for c in candidates:
        tau_first = network.travel_time_s(c.point, first.point)
        if tau_first is None or tau_first > max_travel_s:
            continue
        routes = []
        for s in series:
            tau = network.travel_time_s(c.point, s.point)
            if tau is None:
                routes.append(None)
            else:
                sigma = float(dispersion_sigma_s(tau, network.distance_km(c.point, s.point), network.dispersion_m2s(s.point)))
                routes.append((tau, sigma, network.discharge_m3s(s.point)))
        best = None
        for d in durations_s:
            step = max(t0_step_s, d / 20)  # coarse for long releases: the refinement finds the minute
            t0 = np.arange(first_t - tau_first - d - 2 * 3600, first_t - tau_first + step, step)
            best = _better_release(best, series, routes, y, yy, d, t0)
        best = _refine(best, series, routes, y, yy)
        sse, t0_best, d_best, m_weighted = best
        m_best = {p: m / weight[p] for p, m in m_weighted.items()}
        signature = [p for p in pollutants if p in SIGNATURE_POLLUTANTS]  # not camera channels
        observed = np.array([m_best[p] for p in signature])
        profile = np.array([emission_profile(profiles, c.type, c.subtype).get(p, 0.0) for p in signature])
        cos = float(observed @ profile / (np.linalg.norm(observed) * np.linalg.norm(profile))) if observed.any() and profile.any() else 0.0
        fits.append((c, sse, t0_best, d_best, m_best, cos, tau_first))
    if not fits:
        return []

    sse_min = min(f[1] for f in fits)
    # residual variance of the best fit (1 when the model explains all but the noise), floored so that
    # a perfect fit does not make the ranking infinitely sharp
    s2 = max(sse_min / max(n_total, 1), 1.0)
    lead = leading_pollutant({p: sum(f[4][p] for f in fits) for p in pollutants})
    log_post = np.array([
        -(f[1] - sse_min) / (2 * s2) + signature_weight * (f[5] - 1) + np.log(priors.get(lead, {}).get(f[0].type, 0.05))
        for f in fits
    ])
    post = np.exp(log_post - log_post.max())
    post /= post.sum()
    signal_rms = np.sqrt(sum(yy.values()) / max(n_total, 1))
    suspects = []
    for (c, sse, t0_best, d_best, m_best, cos, tau_first), prob in zip(fits, post):
        distance = network.distance_km(c.point, first.point)
        fit_error = float(np.sqrt(max(sse, 0) / max(n_total, 1)) / max(signal_rms, 1e-12))
        main = max(m_best, key=m_best.get)
        suspects.append(Suspect(
            source_id=c.id, source_type=c.type, probability=float(prob), distance_km=float(distance), travel_time_h=tau_first / 3600,
            release_start_s=t0_best, release_duration_s=float(d_best), masses_kg={p: round(m, 3) for p, m in m_best.items()},
            fit_error=fit_error, signature_match=cos, point=c.point,
            explanation=(f"{c.name or c.id} ({c.type}) {distance:.1f} km / {tau_first / 3600:.1f} h upstream of {first.station_id}: "
                         f"release of ~{m_best[main]:.0f} kg {main} over {d_best / 60:.0f} min fits with {fit_error:.0%} error, "
                         f"signature match {cos:.2f}"),
        ))
    suspects.sort(key=lambda s: -s.probability)
    return suspects[:top_k]
