"""Source tracing: rank candidate upstream sources of a pollution incident.

Each candidate is fitted to what the stations saw: a release of unknown start time, duration and mass
(per pollutant), carried down the river network by the advection-dispersion model
(models/release_fit.py). Stations downstream of a candidate that saw nothing count against it, as do
detecting stations that are not downstream of it. The fit error gives a likelihood; the pollutant
signature is compared with each source type's emission profile; priors by source type and leading
pollutant complete the posterior. Stateless: call it again as observations arrive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.release_fit import Geometry, Release, grid_release, reachable, refined_release
from models.river import Point, RiverNetwork

SIGNATURE_POLLUTANTS = ("cod", "nh3n", "oil", "total_phosphorus")


@dataclass(frozen=True)
class Candidate:
    id: str
    type: str
    point: Point
    name: str = ""
    subtype: str = ""


@dataclass(frozen=True)
class Catchment:
    """The river network and the candidate sources on it."""

    network: RiverNetwork
    candidates: Sequence[Candidate]


@dataclass(frozen=True)
class StationSeries:
    """What one station saw: concentration above its own baseline (mg/L) per pollutant."""

    station_id: str
    point: Point
    t_s: np.ndarray
    excess: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Observations:
    """What the stations saw, and where and when the incident was first detected (by the detectors,
    which know each station's noise): candidates must lie upstream of ``first_station``.
    ``noise_sd``: each pollutant's noise (mg/L), by which its residuals are weighed (None: all alike)."""

    series: Sequence[StationSeries]
    first_station: str
    first_t_s: float
    noise_sd: Mapping[str, float] | None = None


@dataclass(frozen=True)
class SourceBeliefs:
    """What each type of source emits (``profiles``: "type" or "type.subtype" -> pollutant -> relative
    mass) and how likely each type is the source (``priors``: leading pollutant -> type -> prior)."""

    profiles: Mapping[str, Mapping[str, float]]
    priors: Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class FitSettings:
    """How the releases are searched and the candidates ranked. Today's flow is ``flow_sd`` (relative)
    uncertain: a candidate that fits only on a much faster or slower river than the nominal one pays."""

    durations_s: Sequence[float] = (600, 1800, 3600, 7200, 21600, 86400, 259200)
    t0_step_s: float = 300
    max_travel_s: float = 48 * 3600
    signature_weight: float = 6.0
    top_k: int = 5
    residual_correlation: float = 10.0
    flow_sd: float = 0.15
    flow_factors: Sequence[float] = (0.8, 0.9, 1.0, 1.1, 1.25)
    refine_start_h: float = 6.0
    refine_flow: tuple[float, float] = (2.0, 0.5)  # fastest, slowest flow factor of the refinement


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


def emission_profile(
    profiles: Mapping[str, Mapping[str, float]], source_type: str, subtype: str = ""
) -> Mapping[str, float]:
    """The subtype's profile when known ("factory.food"), else the type's."""
    return profiles.get(f"{source_type}.{subtype}", profiles.get(source_type, {}))


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


# --- the steps of a trace ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    """One trace's inputs, with every station's samples concatenated per pollutant and weighed by its
    noise (``y``; ``yy``: y·y; ``n``: samples × pollutants), as every candidate's fit sees them."""

    catchment: Catchment
    observed: Observations
    beliefs: SourceBeliefs
    settings: FitSettings
    first: StationSeries
    pollutants: list[str]
    weight: dict[str, float]
    y: dict[str, np.ndarray]
    yy: dict[str, float]
    n: int

    @property
    def signature(self) -> list[str]:
        """The pollutants of the signature (not camera channels)."""
        return [p for p in self.pollutants if p in SIGNATURE_POLLUTANTS]


@dataclass(frozen=True)
class _Reach:
    """A candidate within reach of the first detecting station and its best release at nominal flow."""

    candidate: Candidate
    geo: Geometry
    travel_first_s: float  # to the first detecting station, at nominal flow
    release: Release


@dataclass(frozen=True)
class _Fit:
    """A candidate's best release at any flow, its masses (kg; 0 where not evidence) and signature."""

    candidate: Candidate
    release: Release
    masses_kg: dict[str, float]
    signature: float  # log-likelihood of the pollutant mix under the candidate's emission profile
    travel_first_s: float  # to the first detecting station, at the fitted flow


def trace(
    catchment: Catchment, observed: Observations, beliefs: SourceBeliefs, settings: FitSettings = FitSettings()
) -> list[Suspect]:
    """Candidates ranked by posterior probability (the top ``settings.top_k``)."""
    problem = _problem(catchment, observed, beliefs, settings)
    nominal = [r for c in catchment.candidates if (r := _nominal_fit(problem, c)) is not None]
    if not nominal:
        return []
    # residual variance (1 when the model explains all but the noise), floored so that a perfect fit
    # does not make the ranking infinitely sharp, and inflated because misfit residuals come in runs
    # (a plume's worth of samples), not as independent draws; the flow prior in the same units
    s2 = max(min(r.release.objective for r in nominal) / max(problem.n, 1), 1.0) * settings.residual_correlation
    flow_penalty = s2 / settings.flow_sd**2
    fits = [_fit_at_any_flow(problem, r, flow_penalty) for r in nominal]
    posterior = _posterior(problem, fits, s2)
    if posterior is None:
        return []
    suspects = [_suspect(problem, f, probability, flow_penalty) for f, probability in zip(fits, posterior)]
    suspects.sort(key=lambda s: -s.probability)
    return suspects[: settings.top_k]


def _problem(catchment: Catchment, observed: Observations, beliefs: SourceBeliefs, settings: FitSettings) -> _Problem:
    """The trace's inputs with the stations' samples weighed by their noise, ready for every candidate's fit."""
    series, noise_sd = observed.series, observed.noise_sd
    first = next(s for s in series if s.station_id == observed.first_station)
    pollutants = sorted({p for s in series for p in s.excess})
    # residuals are weighed by each pollutant's noise, so 0.01 mg/L of oil counts as much as 1 mg/L of COD
    weight = {p: 1.0 / max(noise_sd.get(p, 1.0), 1e-6) if noise_sd else 1.0 for p in pollutants}
    y = {
        p: weight[p] * np.concatenate([np.asarray(s.excess.get(p, np.zeros(len(s.t_s))), float) for s in series])
        for p in pollutants
    }
    yy = {p: float(v @ v) for p, v in y.items()}
    n = sum(len(s.t_s) for s in series) * len(pollutants)
    return _Problem(catchment, observed, beliefs, settings, first, pollutants, weight, y, yy, n)


def _grid(
    problem: _Problem, best: Release | None, geo: Geometry, travel_first_s: float, v: float, flow_penalty: float
) -> Release:
    """The better of ``best`` and the grid's best release on a river ``v`` times as fast as the nominal one."""
    arrival_s = problem.observed.first_t_s - travel_first_s / v
    durations_s, t0_step_s = problem.settings.durations_s, problem.settings.t0_step_s
    return grid_release(best, geo, problem.y, problem.yy, arrival_s, durations_s, t0_step_s, v, flow_penalty)


def _nominal_fit(problem: _Problem, c: Candidate) -> _Reach | None:
    """The candidate's best release at nominal flow; None when it is not upstream of the first
    detecting station within the maximum travel time."""
    network = problem.catchment.network
    travel_first_s = network.travel_time_s(c.point, problem.first.point)
    if travel_first_s is None or travel_first_s > problem.settings.max_travel_s:
        return None
    geo = geometry(network, c.point, problem.observed.series)
    return _Reach(c, geo, travel_first_s, _grid(problem, None, geo, travel_first_s, 1.0, 0.0))


def _fit_at_any_flow(problem: _Problem, reach: _Reach, flow_penalty: float) -> _Fit:
    """The candidate's release also on a faster or slower river than the nominal one (which a plume
    that came faster or slower brings), refined; and its pollutant signature."""
    settings, weight = problem.settings, problem.weight
    best = reach.release
    for v in settings.flow_factors:
        if v != 1.0:
            best = _grid(problem, best, reach.geo, reach.travel_first_s, v, flow_penalty)
    seen_geo, seen_y = reachable(
        reach.geo, problem.y, best.start_s - settings.refine_start_h * 3600, *settings.refine_flow
    )
    best = refined_release(
        best, seen_geo, seen_y, problem.yy, settings.refine_start_h, settings.refine_flow, flow_penalty=flow_penalty
    )
    # a mass below two standard errors is not evidence of that pollutant, and its share of the
    # signature is uncertain by as much (residuals come in runs, hence the inflation)
    masses = {p: m / weight[p] if m > 2 * best.mass_se[p] else 0.0 for p, m in best.masses.items()}
    uncertain = {p: best.mass_se[p] * np.sqrt(settings.residual_correlation) / weight[p] for p in problem.pollutants}
    signature = problem.signature
    profile = emission_profile(problem.beliefs.profiles, reach.candidate.type, reach.candidate.subtype)
    sig = signature_loglik(
        np.array([masses[p] for p in signature]),
        np.array([profile.get(p, 0.0) for p in signature]),
        uncertain_kg=np.array([uncertain[p] for p in signature]),
    )
    return _Fit(reach.candidate, best, masses, sig, reach.travel_first_s / best.velocity_factor)


def _posterior(problem: _Problem, fits: Sequence[_Fit], s2: float) -> np.ndarray | None:
    """Each fit's posterior probability: its fit error, signature and the prior of its source type
    given the incident's leading pollutant; None when no fit is a number."""
    objective_min = min(f.release.objective for f in fits)
    lead = leading_pollutant({p: sum(f.masses_kg[p] for f in fits) for p in problem.pollutants})
    priors = problem.beliefs.priors.get(lead, {})
    log_post = np.array(
        [
            -(f.release.objective - objective_min) / (2 * s2)
            + problem.settings.signature_weight * f.signature
            + np.log(priors.get(f.candidate.type, 0.05))
            for f in fits
        ]
    )
    # a candidate whose fit is not a number (a degenerate window) is no suspect, rather than a NaN posterior for all
    finite = np.isfinite(log_post)
    if not finite.any():
        return None
    log_post = np.where(finite, log_post, -np.inf)
    post = np.exp(log_post - log_post.max())
    post /= post.sum()
    return post


def _suspect(problem: _Problem, fit: _Fit, probability: float, flow_penalty: float) -> Suspect:
    """The fit as the suspect it names: how far, how long, how well it fits, and why in one line."""
    c, release, masses, first = fit.candidate, fit.release, fit.masses_kg, problem.first
    n = max(problem.n, 1)
    signal_rms = np.sqrt(sum(problem.yy.values()) / n)
    match = float(np.exp(fit.signature / max(len(problem.signature), 1)))
    distance = problem.catchment.network.distance_km(c.point, first.point)
    sse = release.objective - flow_penalty * (release.velocity_factor - 1) ** 2
    fit_error = float(np.sqrt(max(sse, 0) / n) / max(signal_rms, 1e-12))
    main = max(masses, key=masses.get)
    travel_h = fit.travel_first_s / 3600
    return Suspect(
        source_id=c.id,
        source_type=c.type,
        probability=float(probability),
        distance_km=float(distance),
        travel_time_h=travel_h,
        release_start_s=release.start_s,
        release_duration_s=release.duration_s,
        masses_kg={p: round(m, 3) for p, m in masses.items()},
        velocity_factor=release.velocity_factor,
        fit_error=fit_error,
        signature_match=match,
        point=c.point,
        explanation=(
            f"{c.name or c.id} ({c.type}) {distance:.1f} km / {travel_h:.1f} h upstream of "
            f"{first.station_id}: release of ~{masses[main]:.0f} kg {main} "
            f"over {release.duration_s / 60:.0f} min fits with {fit_error:.0%} error, "
            f"signature match {match:.2f}"
        ),
    )
