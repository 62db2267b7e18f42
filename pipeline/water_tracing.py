"""One water incident, traced: candidates from the city model, series from station histories, the
fit (models/tracing.py) and arrival at every downstream intake (models/arrival.py).

Used by the tracing agent (histories from InfluxDB) and by ``yuflow eval water`` (histories from the
simulator), so the evaluation measures the code that runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.arrival import Arrival, predict_arrival
from models.tracing import Candidate, StationSeries, Suspect, trace
from pipeline.city import City, load_toml

POLLUTANTS = ("oil", "nh3n", "cod", "total_phosphorus")


@dataclass(frozen=True)
class History:
    """One station's recent values: times (s, any common epoch) and values per parameter."""

    t_s: np.ndarray
    values: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class TracedIncident:
    suspects: list[Suspect]
    arrivals: list[Arrival]  # at intakes downstream of the top suspect


def excess_series(h: History, t_detect: float, until_s: float, lookback_s: float) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
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
    cfg = load_toml("tracing")["fit"]
    point = city.stations[first_station].point
    travel = {s.id: city.network.travel_time_s(s.point, point) for s in city.sources.values()}
    candidates = [Candidate(s.id, s.type, s.point, s.name, s.subtype) for s in city.sources.values()
                  if travel[s.id] is not None and travel[s.id] <= cfg["max_travel_h"] * 3600]
    stations = [sid for sid, st in city.stations.items() if not st.treated and any(city.network.path(c.point, st.point) for c in candidates)]
    # long enough to see a plume from the furthest candidate pass every station upstream of the first
    lookback_s = max((travel[c.id] for c in candidates), default=0.0) + 6 * 3600
    return Scope(candidates, stations, lookback_s)


def trace_incident(city: City, histories: Mapping[str, History], first_station: str, first_t_s: float, until_s: float,
                   scope: Scope | None = None) -> TracedIncident:
    cfg = load_toml("tracing")
    scope = scope or incident_scope(city, first_station)
    candidates, stations, lookback_s = scope.candidates, scope.stations, scope.lookback_s
    series, noise = [], {}
    for sid in stations:
        if sid not in histories:
            continue
        t, excess, sd = excess_series(histories[sid], first_t_s, until_s, lookback_s)
        series.append(StationSeries(sid, city.stations[sid].point, t, excess))
        for p, v in sd.items():
            noise.setdefault(p, []).append(v)
    if first_station not in {s.station_id for s in series}:
        return TracedIncident([], [])
    fit = cfg["fit"]
    suspects = trace(city.network, candidates, series, first_station, first_t_s, load_toml("sources")["profiles"], cfg["priors"],
                     durations_s=[m * 60 for m in fit["durations_min"]], t0_step_s=fit["t0_step_min"] * 60,
                     max_travel_s=fit["max_travel_h"] * 3600, signature_weight=fit["signature_weight"],
                     noise_sd={p: float(np.median(v)) for p, v in noise.items()}, residual_correlation=fit["residual_correlation"])
    arrivals = []
    if suspects:
        best = suspects[0]
        main = max(best.masses_kg, key=best.masses_kg.get)
        for intake in city.intakes.values():
            a = predict_arrival(city.network, best.point, intake.point, intake.id, best.release_start_s, best.release_duration_s,
                                best.masses_kg[main], threshold_mg_l=0.05, velocity_factor=best.velocity_factor)
            if a is not None:
                arrivals.append(a)
    return TracedIncident(suspects, sorted(arrivals, key=lambda a: a.arrival_s))
