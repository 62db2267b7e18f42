"""Scenarios: load them from config/scenarios.toml, or draw a random one from a seed.

A scenario says what to simulate (feeds, time steps, events, fault rates, seed);
``sensors_sim.simulation.simulate`` runs it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from models.tracing import emission_profile
from pipeline.city import City, load_toml
from pipeline.settings import CONFIG_DIR
from sensors_sim.faults import FaultRates

FEEDS = ("water", "rain", "crowd", "camera")


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


__all__ = ["FEEDS", "Scenario", "load_scenario", "random_scenario", "random_release_event", "scenario_names"]
