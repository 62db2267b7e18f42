"""The crowd step of a simulation: people present per zone through the day, surges on top.

The counters' counts and flows as the crowd feed, the zone cameras' person counts, and the ground
truth: per surge, when the zone becomes congested and the tier its worst density deserves; with a
visitor target, the day's visitors through the monitored zones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.city import Zone, counter_sensor_id, load_toml
from sensors_sim import crowd
from sensors_sim.run import Feed, Run, tier_rank
from sensors_sim.truth import TruthEvent


def simulate_crowd(run: Run) -> None:
    """The crowd feed and the surges (also when only the cameras are simulated)."""
    scn = run.scn
    surges = any(e["type"] == "crowd_surge" for e in scn.events)
    if not (run.simulates("crowd") or (surges and run.simulates("camera"))):
        return
    zones = list(run.city.zones.values())
    step = scn.steps_s["crowd"]
    t_c = np.arange(0, scn.duration_s, step, dtype=float)
    persons = _present(run, zones, t_c)
    r = run.rng["crowd"]
    counts = np.round(persons * (1 + r.normal(0, 0.02, persons.shape)))
    inflow, outflow = crowd.flows_per_min(persons, step)
    if run.simulates("crowd"):
        run.feeds.append(
            Feed(
                "crowd",
                [counter_sensor_id(z.id) for z in zones],
                [z.id for z in zones],
                [z.district for z in zones],
                t_c,
                {"count": counts, "flow_in": np.round(inflow, 1), "flow_out": np.round(outflow, 1)},
            )
        )
    if run.simulates("camera") and step == scn.steps_s["camera"]:
        _camera_counts(run, zones, t_c, persons)


def _camera_counts(run: Run, zones: list[Zone], t_c: np.ndarray, persons: np.ndarray) -> None:
    """Zone cameras count the people present, a little less precisely than the counters."""
    r = run.rng["crowd"]
    for j, z in enumerate(zones):
        for cam in (c for c in run.city.cameras.values() if c.target == "zone" and c.site == z.id):
            seen = np.round(persons[:, j] * (1 + r.normal(0, 0.05, len(t_c))))
            run.cams.add(
                run.camera_index[cam.id],
                t_c,
                "person_count",
                seen,
                "crowd",
                np.round(r.uniform(0.85, 0.97, len(t_c)), 3),
            )


@dataclass(frozen=True)
class _Day:
    """The zones' daily crowd at times ``t_s``, and which zones count towards the day's visitors."""

    t_s: np.ndarray
    hour: np.ndarray  # local
    peaks: np.ndarray  # persons per zone at the daily profile's peak
    chosen: np.ndarray  # zones whose visitors are counted

    def visitors(self, day_factor: np.ndarray, surges: list[crowd.Surge]) -> float:
        """Arrivals over the run at the chosen zones."""
        step_s = self.t_s[1] - self.t_s[0]
        inflow, _ = crowd.flows_per_min(crowd.present(self.t_s, self.hour, self.peaks, day_factor, surges), step_s)
        return float(inflow[:, self.chosen].sum() * (step_s / 60))


def _present(run: Run, zones: list[Zone], t_c: np.ndarray) -> np.ndarray:
    """People present per zone, calibrated to the scenario's visitors per day; surges recorded as truth."""
    scn = run.scn
    day = _Day(
        t_s=t_c,
        hour=run.local_hour(t_c),
        peaks=np.array([z.peak_persons for z in zones], dtype=float),
        chosen=(
            np.array([z.id in scn.visitor_zones for z in zones]) if scn.visitor_zones else np.ones(len(zones), bool)
        ),
    )
    index = {z.id: j for j, z in enumerate(zones)}
    surges = [
        crowd.Surge(
            index[e["zone"]],
            e["peak_h"] * 3600,
            e["width_min"] * 60,
            e["extra_density"] * run.city.zones[e["zone"]].area_m2,
        )
        for e in scn.events
        if e["type"] == "crowd_surge"
    ]
    day_factor = _day_factor(run, day, surges)
    persons = crowd.present(t_c, day.hour, day.peaks, day_factor, surges)
    rules = load_toml("crowd")
    for n, s in enumerate(surges):
        run.truth.append(_surge_truth(run, zones, t_c, persons, n, s, rules))
    if scn.visitors_per_day:
        run.truth.append(
            TruthEvent(
                id="visitors",
                type="visitors",
                start=scn.start,
                end=run.at(scn.duration_s),
                details={
                    "visitors": round(day.visitors(day_factor, surges) / scn.zone_share),
                    "zone_share": scn.zone_share,
                    "zones": [z.id for z, c in zip(zones, day.chosen) if c],
                },
            )
        )
    return persons


def _day_factor(run: Run, day: _Day, surges: list[crowd.Surge]) -> np.ndarray:
    """The crowd relative to an ordinary weekday: busier at weekends, or scaled to a visitor target."""
    scn = run.scn
    n = len(day.t_s)
    if not scn.visitors_per_day:
        weekday = (run.local_s(day.t_s) // 86400 + 3) % 7  # 0 = Monday
        return np.where(weekday >= 5, 1.15, 1.0)
    # scale the day's crowd so that, surges included, the visitor count matches; most visitors are in
    # shops and malls at any time: the monitored public zones see a share of them
    target = scn.visitors_per_day * scn.zone_share * scn.duration_s / 86400
    base = day.visitors(np.ones(n), [])
    surge_only = day.visitors(np.ones(n), surges) - base
    return np.full(n, (target - surge_only) / base)


def _surge_truth(run: Run, zones, t_c, persons, n: int, s: crowd.Surge, rules: dict) -> TruthEvent:
    """When the surge's zone becomes congested, its worst density, level of service and tier."""
    zone = zones[s.zone_index]
    # only this surge's window: two surges on one zone must not share a crossing
    window = (t_c >= s.peak_s - 3 * s.width_s) & (t_c <= s.peak_s + 3 * s.width_s)
    density = np.where(window, persons[:, s.zone_index] / zone.area_m2, 0.0)
    above = density >= rules["congestion_density"]
    peak_density = float(density.max())
    level = next((lvl for lvl, bound in rules["level_of_service"].items() if peak_density < bound), "F")
    by_rank = sorted(rules["tiers"].items(), key=lambda kv: -tier_rank(kv[0]))
    tier = next((t for t, lvl in by_rank if level >= lvl), None)
    cams_of_zone = [c.id for c in run.city.cameras.values() if c.target == "zone" and c.site == zone.id]
    return TruthEvent(
        id=f"crowd_surge-{n}-{zone.id}",
        type="crowd_surge",
        start=run.at(max(0.0, s.peak_s - 3 * s.width_s)),
        end=run.at(min(run.scn.duration_s, s.peak_s + 3 * s.width_s)),
        source_id=zone.id,
        affected_sensors=[counter_sensor_id(zone.id), *cams_of_zone],
        expected_detection=run.at(float(t_c[int(np.argmax(above))])) if above.any() else None,
        expected_tier=tier,
        details={"peak_density": round(peak_density, 3), "level_of_service": level, "area_m2": zone.area_m2},
    )


__all__ = ["simulate_crowd"]
