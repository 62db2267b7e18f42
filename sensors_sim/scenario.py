"""Scenarios: load them from config/scenarios.toml (or draw a random one) and simulate them.

``simulate(scenario, city)`` builds every feed as (time, sensor) arrays with numpy, injects the
events and faults, records the ground truth, and flattens everything into a ``Recording``. No
per-reading Python loops: the loops run over events, parameters and feeds.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from models.standards import class_limits
from models.tracing import emission_profile
from models.warnings import tier_from_severity
from pipeline.city import City, counter_sensor_id, load_toml, water_sensor_id
from pipeline.settings import CONFIG_DIR
from sensors_sim import crowd, rain, water
from sensors_sim.faults import FaultRates, FaultRecord, apply_array_faults
from sensors_sim.recording import Recording
from sensors_sim.truth import GroundTruth, TruthEvent

FEEDS = ("water", "rain", "crowd", "camera")
DECAY_PER_DAY = {"oil": 0.3, "nh3n": 0.2, "cod": 0.1, "total_phosphorus": 0.05}
SPIKE_SCALE = {**water.NOISE, "rain": 2.0, "interval_s": 0.0, "count": 50.0, "flow_in": 5.0, "flow_out": 5.0}
TIER_ORDER = ("blue", "yellow", "orange", "red")


@dataclass(frozen=True)
class Scenario:
    name: str
    start: datetime
    duration_s: float
    feeds: tuple[str, ...]
    steps_s: dict[str, int]
    faults: FaultRates
    events: tuple[dict, ...] = ()
    seed: int = 1
    description: str = ""
    visitors_per_day: float | None = None
    visitor_zones: tuple[str, ...] = ()
    zone_share: float = 1.0  # of the day's visitors, the share that passes through the monitored zones
    scale: int = 1
    flow_factor: float = 1.0  # today's river velocities relative to the city model's nominal ones


def scenario_names() -> dict[str, str]:
    raw = _raw()
    return {name: s.get("description", "") for name, s in raw["scenarios"].items()} | {
        "random": "events of every type, drawn from --seed"
    }


def _raw() -> dict:
    with open(CONFIG_DIR / "scenarios.toml", "rb") as f:
        return tomllib.load(f)


def load_scenario(
    name: str, seed: int | None = None, duration_h: float | None = None, city: City | None = None, scale: int = 1
) -> Scenario:
    """A named scenario from config (``random`` draws one from the seed; it needs the city)."""
    raw = _raw()
    defaults = raw["defaults"]
    if name == "random":
        if city is None:
            raise ValueError("the random scenario needs the city model")
        return random_scenario(city, seed if seed is not None else defaults["seed"], duration_h or 48.0, scale)
    if name not in raw["scenarios"]:
        raise KeyError(f"unknown scenario {name!r}; known: {sorted(scenario_names())}")
    s = raw["scenarios"][name]
    return Scenario(
        name=name,
        start=datetime.fromisoformat(s["start"]).astimezone(UTC),
        duration_s=3600 * (duration_h if duration_h is not None else s["duration_h"]),
        feeds=tuple(s.get("feeds", FEEDS)),
        steps_s={**defaults["steps_s"], **s.get("steps_s", {})},
        faults=FaultRates(**{**defaults["faults"], **s.get("faults", {})}),
        events=tuple(s.get("events", [])),
        seed=seed if seed is not None else defaults["seed"],
        description=s.get("description", ""),
        visitors_per_day=s.get("visitors_per_day"),
        visitor_zones=tuple(s.get("visitor_zones", [])),
        zone_share=s.get("zone_share", 1.0),
        flow_factor=s.get("flow_factor", 1.0),
        scale=scale,
    )


def random_release_event(city: City, rng: np.random.Generator, duration_h: float, kind: str = "release") -> dict:
    """A release at a random source with pollutants typical of its type, timed inside the run.

    Loads are drawn as the concentration they add at the source (mass = concentration × discharge ×
    duration), and sources on rivers too large for any plausible release to show (> 200 m³/s) are
    left out: the evaluation needs events that a station could see.
    """
    network = city.network
    sources = [s for s in city.sources.values() if network.discharge_m3s(s.point) <= 200]
    profiles = load_toml("sources")["profiles"]

    def profile(s) -> Mapping[str, float]:
        return emission_profile(profiles, s.type, s.subtype)

    if kind == "oil_spill":  # sources that handle oil: vessels, food and machinery plants, ...
        sources = [s for s in sources if "oil" in profile(s)]
    elif kind == "do_sag":
        sources = [s for s in sources if s.type == "sewage_plant"] or sources
    source = sources[int(rng.integers(0, len(sources)))]
    q_m3s = network.discharge_m3s(source.point)
    at_h = float(rng.uniform(0.1, 0.4) * duration_h)
    if kind == "do_sag":  # a plant under-treating for days: NH3-N and COD up, DO down
        nh3n_mg_l, cod_mg_l = float(rng.uniform(0.8, 3.0)), float(rng.uniform(5, 20))
        return {
            "type": "do_sag",
            "source": source.id,
            "at_h": at_h,
            "duration_h": float(rng.uniform(0.3, 0.5) * duration_h),
            "loads_kg_h": {"nh3n": nh3n_mg_l * q_m3s * 3.6, "cod": cod_mg_l * q_m3s * 3.6},
        }
    duration_min = float(rng.uniform(15, 90)) if kind == "oil_spill" else float(rng.uniform(10, 120))
    mix = profile(source)
    if kind == "oil_spill":  # oil, with whatever else the source's effluent carries in its usual proportion
        oil_kg = float(rng.uniform(1, 10)) * q_m3s * duration_min * 60 / 1000
        loads = {p: oil_kg * share / mix["oil"] * float(rng.lognormal(0, 0.3)) for p, share in mix.items()}
        return {
            "type": "oil_spill",
            "source": source.id,
            "at_h": at_h,
            "duration_min": duration_min,
            "loads_kg": loads,
            "area_m2": float(rng.uniform(100, 800)),
        }
    total_kg = float(rng.uniform(10, 60)) * q_m3s * duration_min * 60 / 1000
    # each release deviates from the inventory's typical mix (lognormal, ~30%)
    loads = {p: total_kg * share * float(rng.lognormal(0, 0.3)) for p, share in mix.items()}
    return {"type": "release", "source": source.id, "at_h": at_h, "duration_min": duration_min, "loads_kg": loads}


def random_scenario(city: City, seed: int, duration_h: float = 48.0, scale: int = 1) -> Scenario:
    raw = _raw()
    rng = np.random.default_rng([seed, 99])
    events = [random_release_event(city, rng, duration_h, kind) for kind in ("release", "oil_spill", "do_sag")]
    xs = [g.x_km for g in city.gauges.values()]
    ys = [g.y_km for g in city.gauges.values()]
    events.append(
        {
            "type": "storm",
            "at_h": float(rng.uniform(0.2, 0.6) * duration_h),
            "duration_h": float(rng.uniform(2, 6)),
            "x_km": float(min(xs)),
            "y_km": float(rng.uniform(min(ys), max(ys))),
            "vx_kmh": float(rng.uniform(4, 10)),
            "vy_kmh": float(rng.uniform(-2, 2)),
            "peak_mm_h": float(rng.uniform(30, 90)),
            "radius_km": float(rng.uniform(3, 8)),
        }
    )
    zones = list(city.zones)
    for _ in range(2):
        events.append(
            {
                "type": "crowd_surge",
                "zone": zones[int(rng.integers(0, len(zones)))],
                "peak_h": float(rng.uniform(0.2, 0.9) * duration_h),
                "width_min": float(rng.uniform(20, 60)),
                "extra_density": float(rng.uniform(0.4, 1.2)),
            }
        )
    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=int(rng.integers(0, 365)))
    return Scenario(
        name="random",
        start=start,
        duration_s=duration_h * 3600,
        feeds=FEEDS,
        steps_s=dict(raw["defaults"]["steps_s"]),
        faults=FaultRates(**raw["defaults"]["faults"]),
        events=tuple(events),
        seed=seed,
        description=f"random events, seed {seed}",
        scale=scale,
    )


# ---------------------------------------------------------------------------------------------
@dataclass
class _Feed:
    """One feed's arrays before flattening."""

    kind: str
    sensor_ids: list[str]
    sites: list[str]
    districts: list[str]
    t_s: np.ndarray
    values: dict[str, np.ndarray]
    dropped: np.ndarray | None = None


@dataclass
class _Detections:
    """Sparse camera detections: one message each."""

    t_s: list[np.ndarray] = field(default_factory=list)
    camera: list[np.ndarray] = field(default_factory=list)
    parameter: list[str] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    detection: list[str] = field(default_factory=list)
    confidence: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        camera_index: int,
        t_s: np.ndarray,
        parameter: str,
        value: np.ndarray,
        detection: str,
        confidence: np.ndarray,
    ) -> None:
        if len(t_s):
            self.t_s.append(t_s)
            self.camera.append(np.full(len(t_s), camera_index))
            self.parameter.append(parameter)
            self.value.append(value)
            self.detection.append(detection)
            self.confidence.append(confidence)


def _local_s(scn: Scenario, city: City, t_s: np.ndarray) -> np.ndarray:
    """Seconds since the epoch in the city's local time, for times ``t_s`` into the run."""
    return scn.start.timestamp() + city.utc_offset_h * 3600 + t_s


def _local_hour(scn: Scenario, city: City, t_s: np.ndarray) -> np.ndarray:
    return (_local_s(scn, city, t_s) % 86400) / 3600


def _iso(scn: Scenario, t_s: float) -> datetime:
    return scn.start + timedelta(seconds=float(t_s))


def _tier_rank(tier: str | None) -> int:
    return TIER_ORDER.index(tier) if tier in TIER_ORDER else -1


def simulate(scn: Scenario, city: City) -> Recording:
    rng = {
        name: np.random.default_rng([scn.seed, i])
        for i, name in enumerate(("water", "rain", "crowd", "camera", "faults", "messages"))
    }
    rules = load_toml("warnings")["tier_from_severity"]
    feeds: list[_Feed] = []
    truth: list[TruthEvent] = []
    cams = _Detections()
    camera_ids = list(city.cameras)
    camera_index = {c: i for i, c in enumerate(camera_ids)}
    cam_step = scn.steps_s["camera"]
    t_cam = np.arange(0, scn.duration_s, cam_step, dtype=float)

    # --- water -------------------------------------------------------------------------------
    water_events = [e for e in scn.events if e["type"] in ("release", "oil_spill", "do_sag")]
    if "water" in scn.feeds or (water_events and "camera" in scn.feeds):
        stations = [s for s in city.stations.values() if not s.treated]
        t_w = np.arange(0, scn.duration_s, scn.steps_s["water"], dtype=float)
        series = water.baseline(
            _local_hour(scn, city, t_w),
            t_w / 86400,
            len(stations),
            scn.start.month,
            [s.target_class for s in stations],
            rng["water"],
        )
        clean = {p: a.copy() for p, a in series.clean.items()}
        limits = [class_limits(load_toml("gb3838"), s.target_class) for s in stations]
        points = [s.point for s in stations]
        network = city.network if scn.flow_factor == 1.0 else city.network.with_velocity_factor(scn.flow_factor)
        for n, event in enumerate(water_events):
            source = city.sources[event["source"]]
            start_s = event["at_h"] * 3600
            if event["type"] == "do_sag":
                duration_s = event["duration_h"] * 3600
                loads = {p: kg_h * event["duration_h"] for p, kg_h in event["loads_kg_h"].items()}
            else:
                duration_s = event["duration_min"] * 60
                loads = dict(event["loads_kg"])
            plume = water.release(network, source.point, points, t_w, start_s, duration_s, loads, DECAY_PER_DAY)
            before = {p: clean[p].copy() for p in ("do", *loads)}
            water.apply(clean, plume)
            truth.append(
                _water_truth(
                    scn,
                    city,
                    network,
                    event,
                    n,
                    source,
                    stations,
                    plume,
                    before,
                    clean,
                    limits,
                    t_w,
                    start_s,
                    duration_s,
                    rules,
                )
            )
            if event["type"] == "oil_spill" and "camera" in scn.feeds:
                _oil_detections(
                    scn, city, network, cams, camera_index, event, source, t_cam, start_s, duration_s, rng["camera"]
                )
        if "water" in scn.feeds:
            values = {p: clean[p] + series.noise[p] for p in water.PARAMS}
            feeds.append(
                _Feed(
                    "water",
                    [water_sensor_id(s.id) for s in stations],
                    [s.id for s in stations],
                    [s.district for s in stations],
                    t_w,
                    values,
                )
            )

    # --- rain --------------------------------------------------------------------------------
    storms = [e for e in scn.events if e["type"] == "storm"]
    if "rain" in scn.feeds or (storms and "camera" in scn.feeds):
        gauges = list(city.gauges.values())
        step = scn.steps_s["rain"]
        t_r = np.arange(step, scn.duration_s + step, step, dtype=float)  # interval ends
        x = np.array([g.x_km for g in gauges])
        y = np.array([g.y_km for g in gauges])
        cells = [
            rain.StormCell(
                e["at_h"] * 3600,
                e["duration_h"] * 3600,
                e["x_km"],
                e["y_km"],
                e["vx_kmh"],
                e["vy_kmh"],
                e["peak_mm_h"],
                e["radius_km"],
            )
            for e in storms
        ]
        hours = int(np.ceil(scn.duration_s / 3600)) + 1
        showers = rain.showers(hours, len(gauges), rng["rain"])
        amounts = rain.amounts_mm(t_r, step, x, y, cells, showers)
        if storms:
            truth.append(_storm_truth(scn, gauges, storms, cells, amounts, t_r, step))
        if "rain" in scn.feeds:
            measured = np.round(amounts / 0.1) * 0.1  # tipping bucket: 0.1 mm resolution
            feeds.append(
                _Feed(
                    "rain",
                    [g.id for g in gauges],
                    [g.id for g in gauges],
                    [g.district for g in gauges],
                    t_r,
                    {"rain": measured, "interval_s": np.full_like(measured, step)},
                )
            )
        if "camera" in scn.feeds and storms:
            _flood_detections(scn, city, cams, camera_index, cells, showers, t_cam, rng["camera"])

    # --- crowd -------------------------------------------------------------------------------
    if "crowd" in scn.feeds or (any(e["type"] == "crowd_surge" for e in scn.events) and "camera" in scn.feeds):
        zones = list(city.zones.values())
        step = scn.steps_s["crowd"]
        t_c = np.arange(0, scn.duration_s, step, dtype=float)
        persons = _crowd_present(scn, city, zones, t_c, truth)
        r = rng["crowd"]
        counts = np.round(persons * (1 + r.normal(0, 0.02, persons.shape)))
        inflow, outflow = crowd.flows_per_min(persons, step)
        if "crowd" in scn.feeds:
            feeds.append(
                _Feed(
                    "crowd",
                    [counter_sensor_id(z.id) for z in zones],
                    [z.id for z in zones],
                    [z.district for z in zones],
                    t_c,
                    {"count": counts, "flow_in": np.round(inflow, 1), "flow_out": np.round(outflow, 1)},
                )
            )
        if "camera" in scn.feeds and step == cam_step:
            for j, z in enumerate(zones):
                for cam in (c for c in city.cameras.values() if c.target == "zone" and c.site == z.id):
                    seen = np.round(persons[:, j] * (1 + r.normal(0, 0.05, len(t_c))))
                    cams.add(
                        camera_index[cam.id],
                        t_c,
                        "person_count",
                        seen,
                        "crowd",
                        np.round(r.uniform(0.85, 0.97, len(t_c)), 3),
                    )

    # --- faults on the arrays ------------------------------------------------------------------
    specs = load_toml("parameters")
    for feed in feeds:
        feed.dropped, records = apply_array_faults(
            feed.values,
            scn.faults,
            float(feed.t_s[1] - feed.t_s[0]) if len(feed.t_s) > 1 else 60.0,
            np.random.default_rng([scn.seed, 7, FEEDS.index(feed.kind)]),
            SPIKE_SCALE,
        )
        for p, v in feed.values.items():
            np.clip(v, specs[feed.kind][p]["min"], specs[feed.kind][p]["max"], out=v)
        truth += _fault_truth(scn, feed, records)

    if "camera" in scn.feeds:
        _false_oil_detections(scn, city, cams, camera_index, t_cam, rng["faults"], truth)

    frame = _flatten(scn, feeds, cams, camera_ids, city, specs, rng["messages"], truth)
    end = scn.start + timedelta(seconds=scn.duration_s)
    gt = GroundTruth(
        scenario=scn.name,
        seed=scn.seed,
        scale=scn.scale,
        start=scn.start,
        end=end,
        steps_s=dict(scn.steps_s),
        events=truth,
    )
    return Recording(frame=frame, truth=gt)


# ---------------------------------------------------------------------------------------------
def _water_truth(
    scn, city, network, event, n, source, stations, plume, before, clean, limits, t_w, start_s, duration_s, rules
) -> TruthEvent:
    """Stations the release reaches, when the clean signal first breaks a limit, and how far."""
    affected, first_cross, worst = [], None, 0.0
    arrivals, peaks = {}, {}
    watched = [p for p in ("do", *plume.added) if p != "temperature"]
    for j, station in enumerate(stations):
        if np.isnan(plume.travel_s[j]):
            continue
        added_peak = max(
            float(np.max(np.abs(clean[p][:, j] - before[p][:, j]))) / max(water.NOISE[p], 1e-9) for p in watched
        )
        if added_peak < 3:  # below three noise sd: the station cannot see it
            continue
        affected.append(water_sensor_id(station.id))
        arrivals[station.id] = round(float(plume.travel_s[j]) / 3600, 4)
        peaks[station.id] = {p: round(float(plume.peak_mg_l[p][j]), 4) for p in plume.peak_mg_l}
        for p in watched:
            limit = limits[j].get(p)
            if limit is None:
                continue
            after = t_w >= start_s
            sev = limit.severity_many(clean[p][after, j])
            if not np.isnan(sev).all():
                cross = float(t_w[after][int(np.argmax(~np.isnan(sev)))])
                first_cross = cross if first_cross is None else min(first_cross, cross)
                worst = max(worst, float(np.nanmax(sev)))
    intakes = {}
    for intake in city.intakes.values():
        tau = network.travel_time_s(source.point, intake.point)
        if tau is not None:
            intakes[intake.id] = round(tau / 3600, 4)
    last_arrival = max(arrivals.values(), default=0.0) * 3600
    end_s = min(scn.duration_s, start_s + duration_s + last_arrival + 3 * 3600)
    return TruthEvent(
        id=f"{event['type']}-{n}-{source.id}",
        type=event["type"],
        start=_iso(scn, start_s),
        end=_iso(scn, end_s),
        source_id=source.id,
        affected_sensors=affected,
        expected_detection=None if first_cross is None else _iso(scn, first_cross),
        expected_tier=tier_from_severity(worst, rules) if first_cross is not None else None,
        details={
            "source_type": source.type,
            "source_point": list(source.point),
            "pollutants": sorted(plume.added),
            "flow_factor": scn.flow_factor,
            "release_duration_s": duration_s,
            "arrival_h": arrivals,
            "peak_mg_l": peaks,
            "intake_arrival_h": intakes,
            **({"area_m2": event["area_m2"]} if "area_m2" in event else {}),
        },
    )


def _oil_detections(scn, city, network, cams, camera_index, event, source, t_cam, start_s, duration_s, r) -> None:
    """Cameras on downstream stations see a sheen while oil passes; area scaled to the first sighting."""
    from models.transport import dispersion_sigma_s, plume_mg_l

    sightings = []
    for cam in city.cameras.values():
        if cam.target != "station" or "oil_sheen" not in cam.detects:
            continue
        station = city.stations[cam.site]
        tau = network.travel_time_s(source.point, station.point)
        if tau is None:
            continue
        sigma = float(
            dispersion_sigma_s(
                tau, network.distance_km(source.point, station.point), network.dispersion_m2s(station.point)
            )
        )
        oil = plume_mg_l(
            t_cam - start_s,
            tau,
            sigma,
            duration_s,
            event["loads_kg"]["oil"],
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
        area = np.round(event["area_m2"] * share[visible] * (1 + r.normal(0, 0.08, int(visible.sum()))), 1)
        confidence = np.round(np.clip(0.55 + 0.4 * np.minimum(share[visible], 1), 0, 0.99), 3)
        cams.add(camera_index[cam.id], t_cam[visible], "oil_area", np.maximum(area, 1.0), "oil_sheen", confidence)


def _rolling_sum(a: np.ndarray, window: int) -> np.ndarray:
    c = np.cumsum(a, axis=0)
    out = c.copy()
    out[window:] = c[window:] - c[:-window]
    return out


def _storm_truth(scn, gauges, storms, cells, amounts, t_r, step) -> TruthEvent:
    """Per gauge: the highest rainstorm tier its accumulations reach and when each tier is reached."""
    tiers = load_toml("rain")["tiers"]
    gauge_tier: dict[str, str] = {}
    crossing: dict[str, dict[str, str]] = {}
    for rule in tiers:
        acc = _rolling_sum(amounts, int(rule["window_h"] * 3600 / step))
        reached = acc >= rule["mm"]
        for j in np.flatnonzero(reached.any(axis=0)):
            g = gauges[j]
            crossing.setdefault(g.id, {})[rule["tier"]] = _iso(
                scn, float(t_r[int(np.argmax(reached[:, j]))])
            ).isoformat()
            if _tier_rank(rule["tier"]) > _tier_rank(gauge_tier.get(g.id)):
                gauge_tier[g.id] = rule["tier"]
    district_tier: dict[str, str] = {}
    for g in gauges:
        if g.id in gauge_tier and _tier_rank(gauge_tier[g.id]) > _tier_rank(district_tier.get(g.district)):
            district_tier[g.district] = gauge_tier[g.id]
    first = min((t for c in crossing.values() for t in c.values()), default=None)
    start_s = min(c.start_s for c in cells)
    end_s = min(scn.duration_s, max(c.start_s + c.duration_s for c in cells) + 3600)
    return TruthEvent(
        id="storm-0",
        type="storm",
        start=_iso(scn, start_s),
        end=_iso(scn, end_s),
        affected_sensors=sorted(gauge_tier),
        expected_detection=datetime.fromisoformat(first) if first else None,
        expected_tier=max(gauge_tier.values(), key=_tier_rank) if gauge_tier else None,
        details={
            "gauge_tier": gauge_tier,
            "district_tier": district_tier,
            "crossing": crossing,
            "total_mm": {
                g.id: round(float(amounts[:, j].sum()), 2) for j, g in enumerate(gauges) if g.id in gauge_tier
            },
            "cells": [dict(e) for e in storms],
        },
    )


def _flood_detections(scn, city, cams, camera_index, cells, showers, t_cam, r) -> None:
    """Road cameras report water depth where the last hour's rain overwhelms the drains."""
    for cam in city.cameras.values():
        if cam.target != "road":
            continue
        road = city.roads[cam.site]
        per_step = rain.amounts_mm(
            t_cam + (t_cam[1] - t_cam[0]),
            t_cam[1] - t_cam[0],
            np.array([road.x_km]),
            np.array([road.y_km]),
            cells,
            showers[:, :1],
        )[:, 0]
        last_hour = _rolling_sum(per_step, int(3600 / (t_cam[1] - t_cam[0])))
        depth = np.clip(last_hour - 25.0, 0, None) * (0.008 if road.low_point else 0.003)
        seen = depth >= 0.05
        cams.add(
            camera_index[cam.id],
            t_cam[seen],
            "flood_depth",
            np.round(depth[seen], 3),
            "road_flooding",
            np.round(r.uniform(0.7, 0.95, int(seen.sum())), 3),
        )


def _crowd_present(scn, city, zones, t_c, truth) -> np.ndarray:
    """People present per zone, calibrated to the scenario's visitors per day; surges recorded as truth."""
    hour = _local_hour(scn, city, t_c)
    weekday = (_local_s(scn, city, t_c) // 86400 + 3) % 7  # 0 = Monday
    day_factor = np.where(weekday >= 5, 1.15, 1.0)
    peaks = np.array([z.peak_persons for z in zones], dtype=float)
    area = np.array([z.area_m2 for z in zones])
    index = {z.id: j for j, z in enumerate(zones)}
    surges = [
        crowd.Surge(
            index[e["zone"]],
            e["peak_h"] * 3600,
            e["width_min"] * 60,
            e["extra_density"] * city.zones[e["zone"]].area_m2,
        )
        for e in scn.events
        if e["type"] == "crowd_surge"
    ]
    chosen = np.array([z.id in scn.visitor_zones for z in zones]) if scn.visitor_zones else np.ones(len(zones), bool)
    step_min = (t_c[1] - t_c[0]) / 60

    def visitors(day: np.ndarray, with_surges: list) -> float:
        inflow, _ = crowd.flows_per_min(crowd.present(t_c, hour, peaks, day, with_surges), t_c[1] - t_c[0])
        return float(inflow[:, chosen].sum() * step_min)

    if scn.visitors_per_day:  # scale the day's crowd so that, surges included, the visitor count matches
        # most visitors are in shops and malls at any time: the monitored public zones see a share of them
        target = scn.visitors_per_day * scn.zone_share * scn.duration_s / 86400
        base = visitors(np.ones(len(t_c)), [])
        surge_only = visitors(np.ones(len(t_c)), surges) - base
        day_factor = np.full(len(t_c), (target - surge_only) / base)
    persons = crowd.present(t_c, hour, peaks, day_factor, surges)
    rules = load_toml("crowd")
    los = rules["level_of_service"]
    for n, (_, s) in enumerate(zip([e for e in scn.events if e["type"] == "crowd_surge"], surges)):
        # only this surge's window: two surges on one zone must not share a crossing
        window = (t_c >= s.peak_s - 3 * s.width_s) & (t_c <= s.peak_s + 3 * s.width_s)
        density = np.where(window, persons[:, s.zone_index] / area[s.zone_index], 0.0)
        above = density >= rules["congestion_density"]
        peak_density = float(density.max())
        level = next((lvl for lvl, bound in los.items() if peak_density < bound), "F")
        tier = next(
            (t for t, lvl in sorted(rules["tiers"].items(), key=lambda kv: -_tier_rank(kv[0])) if level >= lvl), None
        )
        zone = zones[s.zone_index]
        cams_of_zone = [c.id for c in city.cameras.values() if c.target == "zone" and c.site == zone.id]
        truth.append(
            TruthEvent(
                id=f"crowd_surge-{n}-{zone.id}",
                type="crowd_surge",
                start=_iso(scn, max(0.0, s.peak_s - 3 * s.width_s)),
                end=_iso(scn, min(scn.duration_s, s.peak_s + 3 * s.width_s)),
                source_id=zone.id,
                affected_sensors=[counter_sensor_id(zone.id), *cams_of_zone],
                expected_detection=_iso(scn, float(t_c[int(np.argmax(above))])) if above.any() else None,
                expected_tier=tier,
                details={"peak_density": round(peak_density, 3), "level_of_service": level, "area_m2": zone.area_m2},
            )
        )
    if scn.visitors_per_day:
        truth.append(
            TruthEvent(
                id="visitors",
                type="visitors",
                start=scn.start,
                end=_iso(scn, scn.duration_s),
                details={
                    "visitors": round(visitors(day_factor, surges) / scn.zone_share),
                    "zone_share": scn.zone_share,
                    "zones": [z.id for z, c in zip(zones, chosen) if c],
                },
            )
        )
    return persons


def _false_oil_detections(scn, city, cams, camera_index, t_cam, r, truth) -> None:
    """Sun glint and foam: rare, small, low-confidence sheen detections (camera false positives)."""
    oil_cams = [c for c in city.cameras.values() if "oil_sheen" in c.detects]
    weeks = scn.duration_s / (7 * 86400)
    for cam in oil_cams:
        for k in range(r.poisson(0.3 * weeks)):
            t = float(t_cam[int(r.integers(0, len(t_cam)))])
            cams.add(
                camera_index[cam.id],
                np.array([t]),
                "oil_area",
                np.array([round(float(r.uniform(2, 25)), 1)]),
                "oil_sheen",
                np.array([round(float(r.uniform(0.3, 0.55)), 3)]),
            )
            truth.append(
                TruthEvent(
                    id=f"fault-false_detection-{cam.id}-{k}",
                    type="fault",
                    start=_iso(scn, t),
                    end=_iso(scn, t),
                    affected_sensors=[cam.id],
                    details={"fault": "false_detection"},
                )
            )


def _fault_truth(scn, feed: _Feed, records: list[FaultRecord]) -> list[TruthEvent]:
    step = float(feed.t_s[1] - feed.t_s[0]) if len(feed.t_s) > 1 else 60.0
    return [
        TruthEvent(
            id=f"fault-{r.kind}-{feed.sensor_ids[r.sensor_index]}-{r.start_index}-{r.parameter or 'all'}",
            type="fault",
            start=_iso(scn, feed.t_s[r.start_index]),
            end=_iso(scn, feed.t_s[r.end_index] + step - 1),
            affected_sensors=[feed.sensor_ids[r.sensor_index]],
            details={"fault": r.kind, "parameter": r.parameter},
        )
        for r in records
    ]


def _flatten(scn, feeds, cams, camera_ids, city, specs, r, truth) -> pd.DataFrame:
    """All feeds and detections as one long frame in publishing order, with message faults applied."""
    start_ms = int(scn.start.timestamp() * 1000)
    parts = []
    msg_offset = 0
    for feed in feeds:
        T, S = len(feed.t_s), len(feed.sensor_ids)
        keep = ~feed.dropped.ravel() if feed.dropped is not None else np.ones(T * S, bool)
        msg = (msg_offset + np.arange(T * S))[keep]
        t_idx, s_idx = np.divmod(np.arange(T * S), S)
        t_idx, s_idx = t_idx[keep], s_idx[keep]
        for p, values in feed.values.items():
            parts.append(
                pd.DataFrame(
                    {
                        "msg": msg,
                        "ts_ms": start_ms + (feed.t_s[t_idx] * 1000).astype(np.int64),
                        "kind": feed.kind,
                        "sensor_id": np.asarray(feed.sensor_ids)[s_idx],
                        "site": np.asarray(feed.sites)[s_idx],
                        "district": np.asarray(feed.districts)[s_idx],
                        "parameter": p,
                        "value": np.round(values.ravel()[keep], 4),
                        "unit": specs[feed.kind][p]["unit"],
                        "detection": "",
                        "confidence": np.nan,
                    }
                )
            )
        msg_offset += T * S
    if cams.t_s:
        t = np.concatenate(cams.t_s)
        cam = np.concatenate(cams.camera)
        sensors = [city.sensors[c] for c in camera_ids]
        n = len(t)
        lengths = [len(a) for a in cams.t_s]
        parts.append(
            pd.DataFrame(
                {
                    "msg": msg_offset + np.arange(n),
                    "ts_ms": start_ms + (t * 1000).astype(np.int64),
                    "kind": "camera",
                    "sensor_id": np.asarray(camera_ids)[cam],
                    "site": np.asarray([s.site for s in sensors])[cam],
                    "district": np.asarray([s.district for s in sensors])[cam],
                    "parameter": np.repeat(cams.parameter, lengths),
                    "value": np.concatenate(cams.value).astype(float),
                    "unit": np.repeat([specs["camera"][p]["unit"] for p in cams.parameter], lengths),
                    "detection": np.repeat(cams.detection, lengths),
                    "confidence": np.concatenate(cams.confidence).astype(float),
                }
            )
        )
    columns = [
        "msg",
        "ts_ms",
        "kind",
        "sensor_id",
        "site",
        "district",
        "parameter",
        "value",
        "unit",
        "detection",
        "confidence",
    ]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    frame["send_ms"] = frame["ts_ms"].astype(np.int64)
    frame["malformed"] = False
    frame = _message_faults(scn, frame, r, truth)
    order = np.lexsort((frame["msg"].to_numpy(), frame["send_ms"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    for c in ("kind", "sensor_id", "site", "district", "parameter", "unit", "detection"):
        frame[c] = frame[c].astype("category")
    return frame[
        [
            "msg",
            "send_ms",
            "ts_ms",
            "kind",
            "sensor_id",
            "site",
            "district",
            "parameter",
            "value",
            "unit",
            "detection",
            "confidence",
            "malformed",
        ]
    ]


def _message_faults(scn, frame: pd.DataFrame, r, truth) -> pd.DataFrame:
    if frame.empty:
        return frame
    msgs = np.unique(frame["msg"].to_numpy())
    f = scn.faults
    late = msgs[r.random(len(msgs)) < f.late_fraction]
    delay = pd.Series(r.uniform(60, f.late_max_s, len(late)) * 1000, index=late).astype(np.int64)
    is_late = frame["msg"].isin(late)
    frame.loc[is_late, "send_ms"] += frame.loc[is_late, "msg"].map(delay).to_numpy()
    dup = msgs[r.random(len(msgs)) < f.duplicate_fraction]
    copies = frame[frame["msg"].isin(dup)].copy()
    copies["send_ms"] += (
        (copies["msg"].map(pd.Series(r.uniform(0, 120, len(dup)) * 1000, index=dup))).astype(np.int64).to_numpy()
    )
    copies["msg"] += int(msgs.max()) + 1
    broken = (
        r.choice(msgs, size=min(f.malformed, len(msgs)), replace=False)
        if f.malformed
        else np.array([], dtype=msgs.dtype)
    )
    frame.loc[frame["msg"].isin(broken), "malformed"] = True
    for kind, chosen in (("late", late), ("duplicate", dup), ("malformed", broken)):
        if len(chosen):
            sensors = sorted(set(frame.loc[frame["msg"].isin(chosen), "sensor_id"]))
            truth.append(
                TruthEvent(
                    id=f"fault-{kind}-messages",
                    type="fault",
                    start=scn.start,
                    end=scn.start + timedelta(seconds=scn.duration_s),
                    affected_sensors=sensors,
                    details={"fault": kind, "messages": int(len(chosen))},
                )
            )
    return pd.concat([frame, copies], ignore_index=True)


__all__ = ["Scenario", "load_scenario", "random_scenario", "random_release_event", "scenario_names", "simulate"]
