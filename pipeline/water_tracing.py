"""One water incident, traced: candidates from the city model, series from station histories, the
fit (models/tracing.py) and arrival at every downstream intake (models/arrival.py); and the result
for the warning agent (``tracing_result``).

Used by the tracing agent (histories from the stream, pipeline/trace_stream.py) and by ``yuflow eval
water`` (histories from the simulator), so the evaluation measures the code that runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from models.arrival import Arrival, predict_arrival
from models.tracing import Candidate, Catchment, FitSettings, Observations, SourceBeliefs, StationSeries, Suspect, trace
from pipeline.city import City
from pipeline.rule_files import TracingFit
from pipeline.rules import rules
from pipeline.schemas import Alert, CameraSighting, IntakeArrival, SourceSuspect, TracingResult

POLLUTANTS = ("oil", "nh3n", "cod", "total_phosphorus")
TRACED_PARAMETERS = (*POLLUTANTS, "do")  # an alert on one of these is traced; DO: a sag is a plume too


@dataclass(frozen=True)
class History:
    """One station's recent values: times (s, any common epoch) and values per parameter."""

    t_s: np.ndarray
    values: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class TracedIncident:
    suspects: list[Suspect]
    arrivals: list[Arrival]  # at intakes downstream of the top suspect


def excess_series(
    h: History, t_detect: float, until_s: float, lookback_s: float
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """Concentrations above the station's own baseline (median before the incident) from
    ``lookback_s`` before the detection up to ``until_s``, and the baseline's robust noise (sd)."""
    before = h.t_s < t_detect - 3600
    window = (h.t_s >= t_detect - lookback_s) & (h.t_s <= until_s)
    excess, noise = {}, {}
    for p in POLLUTANTS:
        if p in h.values and len(h.t_s):
            history = h.values[p][before] if before.sum() >= 6 else h.values[p][: max(6, len(h.t_s) // 10)]
            base = float(np.nanmedian(history))
            excess[p] = np.nan_to_num(h.values[p][window] - base)  # not clipped: noise must average out, not add up
            noise[p] = 1.4826 * float(np.nanmedian(np.abs(history - base)))
    return h.t_s[window], excess, noise


@dataclass(frozen=True)
class Scope:
    """Where to look for one incident: the candidate sources, the stations that could have seen
    any of them, and how far back (s) their histories must reach."""

    candidates: list[Candidate]
    stations: list[str]
    lookback_s: float


def incident_scope(city: City, first_station: str) -> Scope:
    """Sources upstream of the first detecting station within the maximum travel time, and the
    stations downstream of any of them."""
    fit = rules().tracing.fit
    point = city.stations[first_station].point
    # a plume never leaves its basin: only its sources and stations can be involved
    basin_sources, basin_stations = city.basin_sites.get(city.station_basin(first_station), ([], []))
    travel = {s.id: city.network.travel_time_s(s.point, point) for s in basin_sources}
    candidates = [
        Candidate(s.id, s.type, s.point, s.name, s.subtype)
        for s in basin_sources
        if travel[s.id] is not None and travel[s.id] <= fit.max_travel_h * 3600
    ]
    stations = [st.id for st in basin_stations if any(city.network.path(c.point, st.point) for c in candidates)]
    # long enough to see a plume from the furthest candidate pass every station upstream of the first
    lookback_s = max((travel[c.id] for c in candidates), default=0.0) + 6 * 3600
    return Scope(candidates, stations, lookback_s)


def fit_settings(fit: TracingFit) -> FitSettings:
    """The fit's settings as config/tracing.toml gives them (minutes and hours)."""
    return FitSettings(
        durations_s=tuple(m * 60 for m in fit.durations_min),
        t0_step_s=fit.t0_step_min * 60,
        max_travel_s=fit.max_travel_h * 3600,
        signature_weight=fit.signature_weight,
        residual_correlation=fit.residual_correlation,
        flow_sd=fit.flow_sd,
        flow_factors=tuple(fit.flow_factors),
    )


def trace_incident(
    city: City,
    histories: Mapping[str, History],
    first_station: str,
    first_t_s: float,
    until_s: float,
    scope: Scope | None = None,
) -> TracedIncident:
    scope = scope or incident_scope(city, first_station)
    observed = observations(city, histories, scope, first_station, first_t_s, until_s)
    if first_station not in {s.station_id for s in observed.series}:
        return TracedIncident([], [])
    tracing = rules().tracing
    suspects = trace(
        Catchment(city.network, scope.candidates),
        observed,
        SourceBeliefs(rules().sources.profiles, tracing.priors),
        fit_settings(tracing.fit),
    )
    arrivals = intake_arrivals(city, suspects[0]) if suspects else []
    return TracedIncident(suspects, sorted(arrivals, key=lambda a: a.arrival_s))


def observations(
    city: City, histories: Mapping[str, History], scope: Scope, first_station: str, first_t_s: float, until_s: float
) -> Observations:
    """The excess series of the scope's stations that have a history, with the pollutants' noise (the
    median over the stations of each one's baseline noise)."""
    series, noise = [], {}
    for sid in scope.stations:
        if sid not in histories:
            continue
        t, excess, sd = excess_series(histories[sid], first_t_s, until_s, scope.lookback_s)
        series.append(StationSeries(sid, city.stations[sid].point, t, excess))
        for p, v in sd.items():
            noise.setdefault(p, []).append(v)
    return Observations(series, first_station, first_t_s, {p: float(np.median(v)) for p, v in noise.items()})


def intake_arrivals(city: City, suspect: Suspect) -> list[Arrival]:
    """When the suspect's release (its main pollutant) reaches each intake downstream of it."""
    main = max(suspect.masses_kg, key=suspect.masses_kg.get)
    arrivals = []
    for intake in city.intakes.values():
        a = predict_arrival(
            city.network,
            suspect.point,
            intake.point,
            intake.id,
            suspect.release_start_s,
            suspect.release_duration_s,
            suspect.masses_kg[main],
            threshold_mg_l=0.05,
            velocity_factor=suspect.velocity_factor,
        )
        if a is not None:
            arrivals.append(a)
    return arrivals


# --- the result for the warning agent -------------------------------------------------------------------


class NoTrace(Exception):
    """A trace that could not name a suspect, with why."""


def tracing_result(
    city: City,
    alert: Alert,
    histories: Mapping[str, History],
    sightings: list[CameraSighting],
    scope: Scope,
    until_s: float,
) -> TracingResult:
    """The fit on the histories as a result for the warning agent; NoTrace says why there is none."""
    started = time.perf_counter()
    if not scope.candidates:
        raise NoTrace(f"no source within {rules().tracing.fit.max_travel_h} h upstream of {alert.station}")
    if alert.station not in histories:
        raise NoTrace(f"no readings of {alert.station} in the window to trace from")
    traced = trace_incident(city, histories, alert.station, alert.ts.timestamp(), until_s, scope)
    if not traced.suspects:
        raise NoTrace(f"the fit found no suspect among {len(scope.candidates)} candidates upstream of {alert.station}")
    return TracingResult(
        incident_key=alert.incident_key,
        category=alert.category,
        station=alert.station,
        district=alert.district,
        township=alert.township,
        parameter=alert.parameter,
        ts=alert.ts,
        suspects=[source_suspect(city, s) for s in traced.suspects],
        arrivals=[
            intake_arrival(city, a, until_s)
            for a in traced.arrivals
            if a.arrival_s >= until_s - 3600  # not the intakes it has long passed
        ],
        camera_sightings=sightings,
        compute_ms=round((time.perf_counter() - started) * 1000, 1),
        observed_until=datetime.fromtimestamp(until_s, UTC),
    )


def source_suspect(city: City, s: Suspect) -> SourceSuspect:
    """A suspect as the warning agent reads it: with the source's name and enterprise."""
    source = city.sources[s.source_id]
    return SourceSuspect(
        source_id=s.source_id,
        name=source.name,
        type=s.source_type,
        enterprise=source.enterprise,
        probability=round(s.probability, 4),
        distance_km=round(s.distance_km, 2),
        travel_time_h=round(s.travel_time_h, 2),
        explanation=s.explanation,
    )


def intake_arrival(city: City, a: Arrival, observed_until_s: float) -> IntakeArrival:
    """An arrival as the warning agent reads it: times as datetimes, hours left after the data's end."""
    return IntakeArrival(
        intake_id=a.target_id,
        name=city.intakes[a.target_id].name,
        arrival=datetime.fromtimestamp(a.arrival_s, UTC),
        earliest=datetime.fromtimestamp(a.arrival_low_s, UTC),
        latest=datetime.fromtimestamp(a.arrival_high_s, UTC),
        peak_mg_l=round(a.peak_mg_l, 4),
        hours_left=round((a.arrival_s - observed_until_s) / 3600, 2),
    )
