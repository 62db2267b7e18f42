"""``yuflow eval rain`` and ``yuflow eval crowd``: the rain and crowd watches on simulated ground truth.

Each run is replayed message by message in publishing order (late, duplicate and malformed ones
included) through the bridge's validator and the same watch objects the agents run
(``pipeline/rain_watch.py``, ``pipeline/crowd_watch.py``), so the evaluation measures the code that
runs. Lead time is the ground-truth crossing time minus the event time of the reading that raised
the warning: positive = warned ahead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from pipeline.city import City, load_toml
from pipeline.schemas import Alert, DeadLetter, Reading, Tier
from pipeline.validation import ReadingValidator, parameter_specs
from sensors_sim.recording import Recording, messages
from sensors_sim.scenario import Scenario, load_scenario, random_scenario
from sensors_sim.simulation import simulate

TIERS = [t.value for t in Tier]


def rank(tier: str | None) -> int:
    return TIERS.index(tier) if tier in TIERS else -1


def validated_readings(rec: Recording, city: City, kinds: tuple[str, ...]) -> Iterator[Reading]:
    """The run's messages of these kinds as the bridge would accept them, in publishing order."""
    frame = rec.frame[rec.frame["kind"].isin(kinds)]
    validator = ReadingValidator(city, parameter_specs(load_toml("parameters")), "yuflow")
    for send_ms, topic, payload in messages(frame, "yuflow"):
        now = pd.Timestamp(send_ms, unit="ms", tz="UTC").to_pydatetime()
        result = validator.validate(topic, payload, now)
        if not isinstance(result, DeadLetter):
            yield result


# --- rain ------------------------------------------------------------------------------------
@dataclass
class RainRun:
    name: str
    gauge_days: float
    leads_min: list[float] = field(
        default_factory=list
    )  # per (gauge, tier reached): crossing - first warning at >= tier
    missed: list[tuple[str, str]] = field(default_factory=list)  # (gauge, tier) reached but never warned at that tier
    tier_hits: int = 0  # gauges whose highest warned tier is the highest reached
    tier_total: int = 0  # gauges reaching or warned at any tier
    gauges: int = 0  # all gauges (for the percent correct)
    suspect: int = 0  # gauges set aside as faulty (a tier no neighbour backs)
    district_hits: int = 0  # districts whose highest warned tier is the highest reached
    district_total: int = 0  # districts reaching or warned at any tier
    false_gauges: int = 0  # gauges warned that reached no tier
    district_leads_min: list[float] = field(default_factory=list)
    district_missed: list[str] = field(default_factory=list)
    district_false: int = 0
    forecast_ms: list[float] = field(default_factory=list)


def evaluate_rain_run(name: str, rec: Recording, city: City) -> RainRun:
    from pipeline.rain_watch import RainWatch

    watch = RainWatch(city)
    alerts: list[Alert] = []
    for reading in validated_readings(rec, city, ("rain", "camera")):
        alerts += watch.add(reading)
    alerts += watch.flush()
    run = RainRun(
        name,
        gauge_days=len(city.gauges) * (rec.truth.end - rec.truth.start).total_seconds() / 86400,
        forecast_ms=list(watch.timings_ms),
        gauges=len(city.gauges),
        suspect=len(watch.suspect_gauges),
    )
    storms = rec.truth.of_type("storm")
    gauge_tier = {g: t for e in storms for g, t in e.details.get("gauge_tier", {}).items()}
    crossing = {g: c for e in storms for g, c in e.details.get("crossing", {}).items()}
    district_tier = {d: t for e in storms for d, t in e.details.get("district_tier", {}).items()}
    for gauge in set(gauge_tier) | set(watch.warned):
        warned = watch.warned.get(gauge, {})
        highest = max(warned, key=rank, default=None)
        run.tier_total += 1
        run.tier_hits += highest == gauge_tier.get(gauge)
        if gauge not in gauge_tier:
            run.false_gauges += 1
            continue
        for tier, when in crossing[gauge].items():
            first = min((t for w, t in warned.items() if rank(w) >= rank(tier)), default=None)
            if first is None:
                run.missed.append((gauge, tier))
            else:
                run.leads_min.append((pd.Timestamp(when).timestamp() - first) / 60)
    first_alert: dict[str, dict[str, float]] = {}
    for a in alerts:
        if not a.resolved and a.tier is not None:
            first_alert.setdefault(a.district, {}).setdefault(a.tier.value, a.ts.timestamp())
    for district in set(district_tier) | set(first_alert):
        run.district_total += 1
        if district not in district_tier:
            run.district_false += 1
            continue
        tier = district_tier[district]
        run.district_hits += max(first_alert.get(district, {}), key=rank, default=None) == tier
        first = min((t for w, t in first_alert.get(district, {}).items() if rank(w) >= rank(tier)), default=None)
        when = min(
            pd.Timestamp(crossing[g][tier]).timestamp()
            for g in crossing
            if city.gauges[g].district == district and tier in crossing[g]
        )
        if first is None:
            run.district_missed.append(district)
        else:
            run.district_leads_min.append((when - first) / 60)
    return run


def evaluate_rain(city: City, runs: int, seed: int, progress: Callable[[], None] | None = None) -> list[RainRun]:
    return _evaluate(city, "central_rainstorm", ("rain", "camera"), evaluate_rain_run, runs, seed, progress)


def _evaluate(
    city: City,
    seed_scenario: str,
    feeds: tuple[str, ...],
    evaluate_run: Callable,
    runs: int,
    seed: int,
    progress: Callable[[], None] | None,
) -> list:
    """The seed scenario, the quiet week and ``runs`` random scenarios (only these feeds) through ``evaluate_run``."""
    plans: list[tuple[str, Callable[[], Scenario]]] = [
        (seed_scenario, lambda: load_scenario(seed_scenario, city=city)),
        ("quiet_week", lambda: _only(load_scenario("quiet_week", city=city), feeds)),
    ]
    plans += [(f"random-{seed + i}", lambda s=seed + i: _only(random_scenario(city, s), feeds)) for i in range(runs)]
    out = []
    for name, make in plans:
        out.append(evaluate_run(name, simulate(make(), city), city))
        if progress:
            progress()
    return out


def _only(scn: Scenario, feeds: tuple[str, ...]) -> Scenario:
    """The scenario with only these feeds and their events (faster to simulate and replay)."""
    keep = {"rain": ("storm",), "crowd": ("crowd_surge",)}
    types = {t for f in feeds for t in keep.get(f, ())}
    return Scenario(
        name=scn.name,
        start=scn.start,
        duration_s=scn.duration_s,
        feeds=feeds,
        steps_s=scn.steps_s,
        faults=scn.faults,
        events=tuple(e for e in scn.events if e["type"] in types),
        seed=scn.seed,
        description=scn.description,
        visitors_per_day=scn.visitors_per_day,
        visitor_zones=scn.visitor_zones,
        zone_share=scn.zone_share,
    )


def summarise_rain(results: list[RainRun]) -> pd.DataFrame:
    groups = {
        "central_rainstorm": [r for r in results if r.name == "central_rainstorm"],
        "random storms": [r for r in results if r.name.startswith("random-")],
        "quiet_week": [r for r in results if r.name == "quiet_week"],
    }
    rows = []
    for group, runs in groups.items():
        leads = [x for r in runs for x in r.leads_min]
        dleads = [x for r in runs for x in r.district_leads_min]
        missed = [m for r in runs for m in r.missed]
        ms = [x for r in runs for x in r.forecast_ms]
        rows.append(
            {
                "runs": group,
                "gauge-tiers reached": len(leads) + len(missed),
                "warned ahead": float(np.mean([x > 0 for x in leads + [-1.0] * len(missed)]))
                if leads or missed
                else np.nan,
                "lead median min": np.median(leads) if leads else np.nan,
                "lead p10 min": np.percentile(leads, 10) if leads else np.nan,
                "missed (gauge, tier)": len(missed),
                "missed red": sum(t == "red" for _, t in missed),
                "tier exact (gauges at/warned)": sum(r.tier_hits for r in runs) / n
                if (n := sum(r.tier_total for r in runs))
                else np.nan,
                "tier percent correct (all gauges)": (
                    sum(r.tier_hits + r.gauges - r.tier_total for r in runs) / sum(r.gauges for r in runs)
                    if runs
                    else np.nan
                ),
                "tier exact (districts)": (
                    sum(r.district_hits for r in runs) / n if (n := sum(r.district_total for r in runs)) else np.nan
                ),
                "suspect gauges": sum(r.suspect for r in runs),
                "false gauges / gauge-day": sum(r.false_gauges for r in runs) / sum(r.gauge_days for r in runs)
                if runs
                else np.nan,
                "district lead median min": np.median(dleads) if dleads else np.nan,
                "districts missed": sum(len(r.district_missed) for r in runs),
                "false district warnings": sum(r.district_false for r in runs),
                "nowcast ms median": np.median(ms) if ms else np.nan,
            }
        )
    return pd.DataFrame(rows)


# --- crowd -----------------------------------------------------------------------------------
@dataclass
class CrowdRun:
    name: str
    zone_days: float
    leads_min: list[float] = field(default_factory=list)  # per congestion point: crossing - first orange+ warning
    missed: list[str] = field(default_factory=list)
    with_plan: int = 0  # congestion points whose warning carries a dispersal plan
    tier_hits: int = 0
    tier_total: int = 0
    false_orange: int = 0  # orange+ warnings outside every surge
    false_yellow: int = 0


def evaluate_crowd_run(name: str, rec: Recording, city: City) -> CrowdRun:
    from pipeline.crowd_watch import CrowdWatch

    watch = CrowdWatch(city)
    alerts = [a for reading in validated_readings(rec, city, ("crowd", "camera")) for a in watch.add(reading)]
    run = CrowdRun(name, zone_days=len(city.zones) * (rec.truth.end - rec.truth.start).total_seconds() / 86400)
    surges = rec.truth.of_type("crowd_surge")
    raised = [a for a in alerts if not a.resolved and a.tier is not None]
    for e in surges:
        mine = [a for a in raised if a.station == e.source_id and e.start - timedelta(hours=1) <= a.ts <= e.end]
        highest = max((a.tier.value for a in mine), key=rank, default=None)
        run.tier_total += 1
        run.tier_hits += highest == e.expected_tier
        if e.expected_detection is None:
            continue  # never congested: only its tier counts
        orange = [a for a in mine if a.tier.rank >= Tier.orange.rank]
        if not orange:
            run.missed.append(e.source_id)
            continue
        first = min(orange, key=lambda a: a.ts)
        run.leads_min.append((e.expected_detection - first.ts).total_seconds() / 60)
        run.with_plan += bool(first.checklist)
    for a in raised:
        if any(a.station == e.source_id and e.start - timedelta(hours=1) <= a.ts <= e.end for e in surges):
            continue
        if a.tier.rank >= Tier.orange.rank:
            run.false_orange += 1
        else:
            run.false_yellow += 1
    return run


def evaluate_crowd(city: City, runs: int, seed: int, progress: Callable[[], None] | None = None) -> list[CrowdRun]:
    return _evaluate(city, "jiefangbei_spring_festival", ("crowd", "camera"), evaluate_crowd_run, runs, seed, progress)


def summarise_crowd(results: list[CrowdRun]) -> pd.DataFrame:
    groups = {
        "jiefangbei_spring_festival": [r for r in results if r.name == "jiefangbei_spring_festival"],
        "random surges": [r for r in results if r.name.startswith("random-")],
        "quiet_week": [r for r in results if r.name == "quiet_week"],
    }
    rows = []
    for group, runs in groups.items():
        leads = [x for r in runs for x in r.leads_min]
        zone_days = sum(r.zone_days for r in runs)
        rows.append(
            {
                "runs": group,
                "congestion points": len(leads) + sum(len(r.missed) for r in runs),
                "warned >= 10 min ahead": float(
                    np.mean([x >= 10 for x in leads] + [False] * sum(len(r.missed) for r in runs))
                )
                if leads
                else np.nan,
                "lead median min": np.median(leads) if leads else np.nan,
                "lead min min": min(leads) if leads else np.nan,
                "missed": sum(len(r.missed) for r in runs),
                "with dispersal plan": sum(r.with_plan for r in runs),
                "tier accuracy": sum(r.tier_hits for r in runs) / n
                if (n := sum(r.tier_total for r in runs))
                else np.nan,
                "false orange+ / zone-day": sum(r.false_orange for r in runs) / zone_days if zone_days else np.nan,
                "false yellow / zone-day": sum(r.false_yellow for r in runs) / zone_days if zone_days else np.nan,
            }
        )
    return pd.DataFrame(rows)
