"""The water step of a simulation: station baselines, each release's plume on top, and what they leave.

Per release (``release``, ``oil_spill``, ``do_sag`` events): its ground truth (the stations it
reaches, when the clean signal first breaks a GB 3838 limit, the tier that deserves) and, for oil,
the sheen the station cameras see. Then the stations' readings as the water feed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.river import RiverNetwork
from models.standards import Limit, class_limits
from models.transport import dispersion_sigma_s, plume_mg_l
from models.warnings import tier_from_severity
from pipeline.city import Source, Station, load_toml, water_sensor_id
from sensors_sim import water
from sensors_sim.run import Feed, Run
from sensors_sim.truth import TruthEvent

DECAY_PER_DAY = {"oil": 0.3, "nh3n": 0.2, "cod": 0.1, "total_phosphorus": 0.05}
WATER_EVENTS = ("release", "oil_spill", "do_sag")


@dataclass(frozen=True)
class _Stations:
    """The river stations (treated-water stations left out), sampled at ``t_s``, on today's river."""

    stations: list[Station]
    t_s: np.ndarray
    limits: list[dict[str, Limit]]
    network: RiverNetwork  # the city's, with the scenario's flow factor applied
    tier_rules: Mapping[str, float]

    @classmethod
    def of(cls, run: Run) -> _Stations:
        scn, city = run.scn, run.city
        stations = [s for s in city.stations.values() if not s.treated]
        gb3838 = load_toml("gb3838")
        return cls(
            stations=stations,
            t_s=np.arange(0, scn.duration_s, scn.steps_s["water"], dtype=float),
            limits=[class_limits(gb3838, s.target_class) for s in stations],
            network=city.network if scn.flow_factor == 1.0 else city.network.with_velocity_factor(scn.flow_factor),
            tier_rules=load_toml("warnings")["tier_from_severity"],
        )


@dataclass(frozen=True)
class _Release:
    """The ``n``-th water event as the plume model takes it: a mass of each pollutant over a duration."""

    n: int
    event: Mapping
    source: Source
    start_s: float
    duration_s: float
    loads_kg: dict[str, float]

    @classmethod
    def of(cls, run: Run, n: int, event: Mapping) -> _Release:
        if event["type"] == "do_sag":  # a plant under-treating: loads given per hour
            duration_s = event["duration_h"] * 3600
            loads = {p: kg_h * event["duration_h"] for p, kg_h in event["loads_kg_h"].items()}
        else:
            duration_s = event["duration_min"] * 60
            loads = dict(event["loads_kg"])
        return cls(n, event, run.city.sources[event["source"]], event["at_h"] * 3600, duration_s, loads)


def simulate_water(run: Run) -> None:
    """The water feed and the water events (also when only the cameras are simulated: oil sheen)."""
    scn = run.scn
    events = [e for e in scn.events if e["type"] in WATER_EVENTS]
    if not (run.simulates("water") or (events and run.simulates("camera"))):
        return
    st = _Stations.of(run)
    series = water.baseline(
        run.local_hour(st.t_s),
        st.t_s / 86400,
        len(st.stations),
        scn.start.month,
        [s.target_class for s in st.stations],
        run.rng["water"],
    )
    clean = {p: a.copy() for p, a in series.clean.items()}
    for n, event in enumerate(events):
        _simulate_release(run, st, clean, _Release.of(run, n, event))
    if run.simulates("water"):
        values = {p: clean[p] + series.noise[p] for p in water.PARAMS}
        run.feeds.append(
            Feed(
                "water",
                [water_sensor_id(s.id) for s in st.stations],
                [s.id for s in st.stations],
                [s.district for s in st.stations],
                st.t_s,
                values,
            )
        )


def _simulate_release(run: Run, st: _Stations, clean: dict[str, np.ndarray], rel: _Release) -> None:
    """Add the release's plume to the clean signal; record its truth and any sheen the cameras see."""
    points = [s.point for s in st.stations]
    plume = water.release(
        st.network, rel.source.point, points, st.t_s, rel.start_s, rel.duration_s, rel.loads_kg, DECAY_PER_DAY
    )
    before = {p: clean[p].copy() for p in ("do", *rel.loads_kg)}
    water.apply(clean, plume)
    run.truth.append(_release_truth(run, st, rel, plume, before, clean))
    if rel.event["type"] == "oil_spill" and run.simulates("camera"):
        _oil_detections(run, st.network, rel)


@dataclass
class _Effects:
    """What a release does at the stations it reaches."""

    affected: list[str]
    arrival_h: dict[str, float]
    peak_mg_l: dict[str, dict[str, float]]
    first_cross_s: float | None = None  # when the clean signal first breaks a limit anywhere
    worst_severity: float = 0.0


def _station_effects(st: _Stations, rel: _Release, plume, before, clean) -> _Effects:
    """Stations the release reaches, when the clean signal first breaks a limit, and how far."""
    effects = _Effects([], {}, {})
    watched = [p for p in ("do", *plume.added) if p != "temperature"]
    for j, station in enumerate(st.stations):
        if np.isnan(plume.travel_s[j]):
            continue
        added_peak = max(
            float(np.max(np.abs(clean[p][:, j] - before[p][:, j]))) / max(water.NOISE[p], 1e-9) for p in watched
        )
        if added_peak < 3:  # below three noise sd: the station cannot see it
            continue
        effects.affected.append(water_sensor_id(station.id))
        effects.arrival_h[station.id] = round(float(plume.travel_s[j]) / 3600, 4)
        effects.peak_mg_l[station.id] = {p: round(float(plume.peak_mg_l[p][j]), 4) for p in plume.peak_mg_l}
        for p in watched:
            limit = st.limits[j].get(p)
            if limit is None:
                continue
            after = st.t_s >= rel.start_s
            sev = limit.severity_many(clean[p][after, j])
            if not np.isnan(sev).all():
                cross = float(st.t_s[after][int(np.argmax(~np.isnan(sev)))])
                effects.first_cross_s = cross if effects.first_cross_s is None else min(effects.first_cross_s, cross)
                effects.worst_severity = max(effects.worst_severity, float(np.nanmax(sev)))
    return effects


def _release_truth(run: Run, st: _Stations, rel: _Release, plume, before, clean) -> TruthEvent:
    effects = _station_effects(st, rel, plume, before, clean)
    intakes = {}
    for intake in run.city.intakes.values():
        tau = st.network.travel_time_s(rel.source.point, intake.point)
        if tau is not None:
            intakes[intake.id] = round(tau / 3600, 4)
    last_arrival = max(effects.arrival_h.values(), default=0.0) * 3600
    end_s = min(run.scn.duration_s, rel.start_s + rel.duration_s + last_arrival + 3 * 3600)
    crossed = effects.first_cross_s is not None
    return TruthEvent(
        id=f"{rel.event['type']}-{rel.n}-{rel.source.id}",
        type=rel.event["type"],
        start=run.at(rel.start_s),
        end=run.at(end_s),
        source_id=rel.source.id,
        affected_sensors=effects.affected,
        expected_detection=run.at(effects.first_cross_s) if crossed else None,
        expected_tier=tier_from_severity(effects.worst_severity, st.tier_rules) if crossed else None,
        details={
            "source_type": rel.source.type,
            "source_point": list(rel.source.point),
            "pollutants": sorted(plume.added),
            "flow_factor": run.scn.flow_factor,
            "release_duration_s": rel.duration_s,
            "arrival_h": effects.arrival_h,
            "peak_mg_l": effects.peak_mg_l,
            "intake_arrival_h": intakes,
            **({"area_m2": rel.event["area_m2"]} if "area_m2" in rel.event else {}),
        },
    )


def _oil_detections(run: Run, network: RiverNetwork, rel: _Release) -> None:
    """Cameras on downstream stations see a sheen while oil passes; area scaled to the first sighting."""
    city, t_cam, r = run.city, run.t_cam, run.rng["camera"]
    sightings = []
    for cam in city.cameras.values():
        if cam.target != "station" or "oil_sheen" not in cam.detects:
            continue
        station = city.stations[cam.site]
        tau = network.travel_time_s(rel.source.point, station.point)
        if tau is None:
            continue
        sigma = float(
            dispersion_sigma_s(
                tau, network.distance_km(rel.source.point, station.point), network.dispersion_m2s(station.point)
            )
        )
        oil = plume_mg_l(
            t_cam - rel.start_s,
            tau,
            sigma,
            rel.duration_s,
            rel.event["loads_kg"]["oil"],
            network.discharge_m3s(station.point),
            DECAY_PER_DAY["oil"],
        )
        sightings.append((tau, cam, oil))
    if not sightings:
        return
    reference_peak = min(sightings, key=lambda s: s[0])[2].max()
    for _, cam, oil in sightings:
        share = oil / max(reference_peak, 1e-12)
        visible = share > 0.05
        area = np.round(rel.event["area_m2"] * share[visible] * (1 + r.normal(0, 0.08, int(visible.sum()))), 1)
        confidence = np.round(np.clip(0.55 + 0.4 * np.minimum(share[visible], 1), 0, 0.99), 3)
        run.cams.add(
            run.camera_index[cam.id], t_cam[visible], "oil_area", np.maximum(area, 1.0), "oil_sheen", confidence
        )


__all__ = ["DECAY_PER_DAY", "simulate_water"]
