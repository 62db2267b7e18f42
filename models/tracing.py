"""Source tracing: rank candidate upstream sources of a pollution incident.

Each candidate is fitted to what the stations saw: a release of unknown start time, duration and mass
(per pollutant), carried down the river network by the advection-dispersion model
(models/transport.py). Stations downstream of a candidate that saw nothing count against it, as do
detecting stations that are not downstream of it. The fit error gives a likelihood; the pollutant
signature is compared with each source type's emission profile; priors by source type and leading
pollutant complete the posterior. Stateless: call it again as observations arrive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from models.river import Point, RiverNetwork
from models.transport import dispersion_sigma_s, plume_mg_l

SIGNATURE_POLLUTANTS = ("cod", "nh3n", "oil", "total_phosphorus")


@dataclass(frozen=True)
class Candidate:
    id: str
    type: str
    point: Point
    name: str = ""
    subtype: str = ""


def emission_profile(
    profiles: Mapping[str, Mapping[str, float]], source_type: str, subtype: str = ""
) -> Mapping[str, float]:
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
    distance_km: float  # to the first station that saw it
    travel_time_h: float
    release_start_s: float
    release_duration_s: float
    masses_kg: dict[str, float]
    fit_error: float  # residual RMS / signal RMS
    signature_match: float  # 1 = the pollutant mix is exactly the source type's profile
    explanation: str
    velocity_factor: float = 1.0  # fitted flow relative to the nominal
    point: Point = field(default=("", 0.0))


def signature_loglik(
    observed_kg: np.ndarray,
    profile: np.ndarray,
    spread: float = 0.5,
    floor: float = 0.02,
    uncertain_kg: np.ndarray | None = None,
) -> float:
    """How well an incident's pollutant mix matches an emission profile: a log-normal likelihood of
    each pollutant's share (``spread`` = sd of the log share), so a pollutant the source does not
    emit (share ~0) counts against it as much as a missing main pollutant; ``uncertain_kg`` (each
    mass's standard error) widens the tolerance of a share that the data pin down only loosely.

    >>> sewage, outfall = np.array([0.85, 0.15, 0.0]), np.array([0.8, 0.1, 0.1])  # cod, nh3n, total_phosphorus
    >>> seen = np.array([80.0, 9.0, 11.0])  # kg: phosphorus present
    >>> signature_loglik(seen, outfall) > signature_loglik(seen, sewage)
    True
    >>> oil_only, food = np.array([0.0, 20.0]), np.array([0.7, 0.3])  # cod, oil: no COD seen, but COD is noisy
    >>> signature_loglik(oil_only, food) < signature_loglik(oil_only, food, uncertain_kg=np.array([30.0, 1.0]))
    True
    """
    if observed_kg.sum() <= 0 or profile.sum() <= 0:
        return -len(profile) * np.log(1 / floor) ** 2 / (2 * spread**2)
    observed = observed_kg / observed_kg.sum()
    expected = profile / profile.sum()
    # a share known only to within its mass's uncertainty says that much less for or against a profile
    tolerance = floor + (np.asarray(uncertain_kg) / observed_kg.sum() if uncertain_kg is not None else 0.0)
    return float(-np.sum(np.log((observed + tolerance) / (expected + tolerance)) ** 2) / (2 * spread**2))


def leading_pollutant(masses: Mapping[str, float]) -> str:
    for p in ("oil", "nh3n", "total_phosphorus"):
        if masses.get(p, 0.0) > 0 and p in masses and masses[p] / max(sum(masses.values()), 1e-9) > 0.02:
            return p
    return "cod"


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


def geometry(network: RiverNetwork, source: Point, series: Sequence[StationSeries]) -> Geometry:
    columns = []
    for s in series:
        tau = network.travel_time_s(source, s.point)
        n = len(s.t_s)
        if tau is None:
            columns.append(
                (s.t_s, np.full(n, 1.0), np.full(n, 1.0), np.full(n, 1.0), np.full(n, 1.0), np.zeros(n, bool))
            )
        else:
            columns.append(
                (
                    s.t_s,
                    np.full(n, tau),
                    np.full(n, network.distance_km(source, s.point)),
                    np.full(n, network.dispersion_m2s(s.point)),
                    np.full(n, network.discharge_m3s(s.point)),
                    np.ones(n, bool),
                )
            )
    return Geometry(*(np.concatenate(parts) for parts in zip(*columns)))


def _seen(
    geo: Geometry, y: Mapping[str, np.ndarray], t0_min_s: float, velocity_factor_max: float, velocity_factor_min: float
):
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


def _better_release(
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


def _refine(
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

    # _better_release's objective for one release, without its per-call overhead (Nelder-Mead calls
    # it ~100 times per candidate on a few hundred samples): sigma scales as flow factor^-1.5
    Y = np.array(list(y.values())).reshape(len(y), -1)
    yy_sum = sum(yy.values())
    sigma_nominal = np.maximum(
        dispersion_sigma_s(geo.travel_s, geo.distance_km, 1.0) * np.sqrt(geo.dispersion_m2s), 1.0
    )
    flux_l_s = geo.discharge_m3s * 1000

    def objective(params: np.ndarray) -> float:  # start in hours, log duration, log flow factor: similar scales
        t0, d, v = clamp(params)
        sigma = sigma_nominal * v**-1.5
        t = geo.t_s - t0 - geo.travel_s / v
        g = (ndtr(t / sigma) - ndtr((t - d) / sigma)) * (1e6 / d) / flux_l_s
        gg = float(g @ g)
        gy = Y @ g
        m = np.maximum(gy / gg, 0.0) if gg > 0 else np.zeros_like(gy)
        return yy_sum - float(np.sum(2 * m * gy - m * m * gg)) + flow_penalty * (v - 1) ** 2

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
    refined = _better_release(None, geo, y, yy, d, np.array([t0]), v, flow_penalty)
    return refined if refined.objective < best.objective else best


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
    residual_correlation: float = 10.0,
    flow_sd: float = 0.15,
    flow_factors: Sequence[float] = (0.8, 0.9, 1.0, 1.1, 1.25),
    refine_start_h: float = 6.0,
    refine_flow: tuple[float, float] = (2.0, 0.5),
) -> list[Suspect]:
    """Candidates ranked by posterior probability (the top ``top_k``).

    ``first_station`` / ``first_t_s``: where and when the incident was first detected (by the
    detectors, which know each station's noise); candidates must lie upstream of it. Today's flow
    is ``flow_sd`` (relative) uncertain: a candidate that fits only on a much faster or slower
    river than the nominal one pays for it.
    """
    first = next(s for s in series if s.station_id == first_station)
    pollutants = sorted({p for s in series for p in s.excess})
    # residuals are weighed by each pollutant's noise, so 0.01 mg/L of oil counts as much as 1 mg/L of COD
    weight = {p: 1.0 / max(noise_sd.get(p, 1.0), 1e-6) if noise_sd else 1.0 for p in pollutants}
    y = {
        p: weight[p] * np.concatenate([np.asarray(s.excess.get(p, np.zeros(len(s.t_s))), float) for s in series])
        for p in pollutants
    }
    yy = {p: float(v @ v) for p, v in y.items()}
    n_total = sum(len(s.t_s) for s in series) * len(pollutants)

    def grid_fit(best: Release | None, geo: Geometry, tau_first: float, v: float, flow_penalty: float) -> Release:
        for d in durations_s:
            step = max(t0_step_s, d / 20)  # coarse for long releases: the refinement finds the minute
            arrival = first_t_s - tau_first / v
            t0 = np.arange(arrival - d - 2 * 3600, arrival + step, step)
            best = _better_release(best, *_seen(geo, y, t0[0], v, v), yy, d, t0, v, flow_penalty)
        return best

    nominal = []
    for c in candidates:
        tau_first = network.travel_time_s(c.point, first.point)
        if tau_first is None or tau_first > max_travel_s:
            continue
        geo = geometry(network, c.point, series)
        nominal.append((c, geo, tau_first, grid_fit(None, geo, tau_first, 1.0, 0.0)))
    if not nominal:
        return []
    # residual variance (1 when the model explains all but the noise), floored so that a perfect fit
    # does not make the ranking infinitely sharp, and inflated because misfit residuals come in runs
    # (a plume's worth of samples), not as independent draws; the flow prior in the same units
    s2 = max(min(f[3].objective for f in nominal) / max(n_total, 1), 1.0) * residual_correlation
    flow_penalty = s2 / flow_sd**2
    fits = []
    for c, geo, tau_first, best in nominal:
        for v in flow_factors:  # a plume that came faster or slower than the nominal flow brings it
            if v != 1.0:
                best = grid_fit(best, geo, tau_first, v, flow_penalty)
        best = _refine(
            best,
            *_seen(geo, y, best.start_s - refine_start_h * 3600, *refine_flow),
            yy,
            refine_start_h,
            refine_flow,
            flow_penalty=flow_penalty,
        )
        # a mass below two standard errors is not evidence of that pollutant, and its share of the
        # signature is uncertain by as much (residuals come in runs, hence the inflation)
        masses = {p: m / weight[p] if m > 2 * best.mass_se[p] else 0.0 for p, m in best.masses.items()}
        uncertain = {p: best.mass_se[p] * np.sqrt(residual_correlation) / weight[p] for p in pollutants}
        signature = [p for p in pollutants if p in SIGNATURE_POLLUTANTS]  # not camera channels
        profile = emission_profile(profiles, c.type, c.subtype)
        sig = signature_loglik(
            np.array([masses[p] for p in signature]),
            np.array([profile.get(p, 0.0) for p in signature]),
            uncertain_kg=np.array([uncertain[p] for p in signature]),
        )
        fits.append((c, best, masses, sig, tau_first / best.velocity_factor))

    objective_min = min(f[1].objective for f in fits)
    lead = leading_pollutant({p: sum(f[2][p] for f in fits) for p in pollutants})
    log_post = np.array(
        [
            -(release.objective - objective_min) / (2 * s2)
            + signature_weight * sig
            + np.log(priors.get(lead, {}).get(c.type, 0.05))
            for c, release, _, sig, _ in fits
        ]
    )
    # a candidate whose fit is not a number (a degenerate window) is no suspect, rather than a NaN posterior for all
    finite = np.isfinite(log_post)
    if not finite.any():
        return []
    log_post = np.where(finite, log_post, -np.inf)
    post = np.exp(log_post - log_post.max())
    post /= post.sum()
    signal_rms = np.sqrt(sum(yy.values()) / max(n_total, 1))
    suspects = []
    for (c, release, masses, sig, tau_h_s), prob in zip(fits, post):
        match = float(np.exp(sig / max(len(signature), 1)))
        distance = network.distance_km(c.point, first.point)
        sse = release.objective - flow_penalty * (release.velocity_factor - 1) ** 2
        fit_error = float(np.sqrt(max(sse, 0) / max(n_total, 1)) / max(signal_rms, 1e-12))
        main = max(masses, key=masses.get)
        suspects.append(
            Suspect(
                source_id=c.id,
                source_type=c.type,
                probability=float(prob),
                distance_km=float(distance),
                travel_time_h=tau_h_s / 3600,
                release_start_s=release.start_s,
                release_duration_s=release.duration_s,
                masses_kg={p: round(m, 3) for p, m in masses.items()},
                velocity_factor=release.velocity_factor,
                fit_error=fit_error,
                signature_match=match,
                point=c.point,
                explanation=(
                    f"{c.name or c.id} ({c.type}) {distance:.1f} km / {tau_h_s / 3600:.1f} h upstream of "
                    f"{first.station_id}: release of ~{masses[main]:.0f} kg {main} "
                    f"over {release.duration_s / 60:.0f} min fits with {fit_error:.0%} error, "
                    f"signature match {match:.2f}"
                ),
            )
        )
    suspects.sort(key=lambda s: -s.probability)
    return suspects[:top_k]
