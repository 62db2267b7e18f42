"""The crowd watch: per zone, counter and camera counts -> density -> Fruin level -> tier, now and
in 15 minutes, with the dispersal plan.

A zone's counter (``pc-<zone>``) reports every minute the persons present and the flows in and
out; the zone's cameras report a person count. Each counter reading is one step: the camera count
nearest in time (within ``camera_max_age_s``) is fused with the counter's (the mean when they agree; the higher
when they do not, since an under-count is the dangerous error), the forecaster learns the density,
and the zone's tier is the higher of the tier reached now and the tier forecast within
``forecast_min``. A raised tier issues an alert with the dispersal plan (疏导方案) of that tier;
the warning clears once the density and its forecast have stayed below ``clear_below`` of the
yellow bound for ``clear_after_min`` (hysteresis: a crowd hovering at a bound does not flap).
A zone whose counter is silent is stepped by its cameras alone.

``step(reading, state)`` is pure (the crowd agent keeps ``state`` in a table per zone);
``CrowdWatch.add`` keeps the states itself, for ``yuflow eval crowd`` and tests.
"""

from __future__ import annotations

from models.crowd import (
    ZoneForecaster,
    density_bound,
    dispersal_plan,
    level_of_service,
    officers_needed,
    tier_for_level,
)
from pipeline.city import City, Zone
from pipeline.rule_files import CrowdFile
from pipeline.rules import rules
from pipeline.schemas import Alert, CameraDetection, Category, Reading, Tier, utc_at

AGREE = 0.2  # counter and camera agree when within 20% of each other
CAMERA_HISTORY = 10  # camera counts kept per zone


class CrowdWatch:
    def __init__(self, city: City, crowd: CrowdFile | None = None):
        crowd = crowd or rules().crowd
        self.city = city
        self.bounds = crowd.level_of_service.model_dump()  # models/crowd.py takes plain mappings
        self.tiers = crowd.tiers
        self.congestion_density = crowd.congestion_density
        self.templates = crowd.dispersal
        self.watch = crowd.watch
        self.horizon_s = self.watch.forecast_min * 60
        self.clear_density = self.watch.clear_below * density_bound("yellow", self.tiers, self.bounds)
        self.states: dict[str, dict] = {}

    # --- the agent's form ------------------------------------------------------------------------
    def step(self, reading: Reading, state: dict | None) -> tuple[dict | None, list[Alert]]:
        """One counter reading or camera count of a zone; the zone's new state and any alerts."""
        zone = self.city.zones.get(reading.station)
        if zone is None:
            return state, []
        state = state or {
            "forecaster": ZoneForecaster(self.watch.alpha, self.watch.beta, self.watch.flow_weight).state(),
            "tier": None,
            "quiet_since_s": None,
            "cameras": [],
            "last_counter_s": None,
        }
        t_s = reading.ts.timestamp()
        if isinstance(reading, CameraDetection):
            if reading.detection != "crowd" or "person_count" not in reading.values:
                return state, []
            recent = [c for c in state["cameras"] if abs(c[0] - t_s) <= 2 * self.watch.camera_max_age_s]
            state = {
                **state,
                "cameras": sorted([*recent, [t_s, reading.values["person_count"].value, reading.sensor_id]])[
                    -CAMERA_HISTORY:
                ],
            }
            heard_since = state["last_counter_s"] if state["last_counter_s"] is not None else state["cameras"][0][0]
            counter_silent = t_s - heard_since > 3 * self.watch.step_s
            if not counter_silent:
                return state, []
            return self._evaluate(zone, state, t_s, None, None)
        if "count" not in reading.values:
            return state, []
        flows = (
            reading.values["flow_in"].value - reading.values["flow_out"].value
            if "flow_in" in reading.values and "flow_out" in reading.values
            else None
        )
        return self._evaluate(zone, {**state, "last_counter_s": t_s}, t_s, reading.values["count"].value, flows)

    def _evaluate(
        self, zone: Zone, state: dict, t_s: float, counted: float | None, net_inflow_per_min: float | None
    ) -> tuple[dict, list[Alert]]:
        persons, sources = self._fuse(state, t_s, counted)
        forecaster = ZoneForecaster.from_state(state["forecaster"])
        if forecaster.t_s is not None and t_s <= forecaster.t_s:
            return state, []  # late or repeated: this minute has been counted
        density = persons / zone.area_m2
        forecaster.learn_one(t_s, density, None if net_inflow_per_min is None else net_inflow_per_min / zone.area_m2)
        ahead = forecaster.forecast(self.horizon_s)
        state = {**state, "forecaster": forecaster.state()}
        now_tier = tier_for_level(level_of_service(density, self.bounds), self.tiers)
        ahead_tier = tier_for_level(level_of_service(ahead, self.bounds), self.tiers)
        tier = max((t for t in (now_tier, ahead_tier) if t), key=lambda t: Tier(t).rank, default=None)
        alerts = []
        if tier is not None and (state["tier"] is None or Tier(tier).rank > Tier(state["tier"]).rank):
            forecast = ahead_tier == tier and now_tier != tier
            alerts.append(self._alert(zone, t_s, Tier(tier), density, ahead, persons, sources, forecast))
            state = {**state, "tier": tier, "quiet_since_s": None}
        elif state["tier"] is not None:
            quiet = max(density, ahead) < self.clear_density
            since = (state["quiet_since_s"] or t_s) if quiet else None
            state = {**state, "quiet_since_s": since}
            if quiet and t_s - since >= self.watch.clear_after_min * 60:
                alerts.append(self._cleared(zone, t_s, density, Tier(state["tier"])))
                state = {**state, "tier": None, "quiet_since_s": None}
        return state, alerts

    def _fuse(self, state: dict, t_s: float, counted: float | None) -> tuple[float, str]:
        # the camera count nearest in time (either side: the camera path has one hop more than the counter's)
        camera = min(state["cameras"], key=lambda c: abs(c[0] - t_s), default=None)
        seen = camera[1] if camera and abs(t_s - camera[0]) <= self.watch.camera_max_age_s else None
        if counted is None:
            return float(seen or 0.0), f"camera {camera[2]}" if seen is not None else "none"
        if seen is None:
            return float(counted), "counter"
        if abs(seen - counted) <= AGREE * max(counted, 1.0):
            return (counted + seen) / 2, f"counter + camera {camera[2]} (agree)"
        return float(
            max(counted, seen)
        ), f"counter {counted:.0f} vs camera {camera[2]} {seen:.0f} (disagree: the higher)"

    # --- alerts ------------------------------------------------------------------------------------
    def _alert(
        self,
        zone: Zone,
        t_s: float,
        tier: Tier,
        density: float,
        ahead: float,
        persons: float,
        sources: str,
        forecast: bool,
    ) -> Alert:
        peak_persons = max(density, ahead) * zone.area_m2
        facts = {
            "zone": zone.name,
            "persons": f"{persons:.0f}",
            "density": f"{density:.2f}",
            "officers": officers_needed(
                peak_persons, zone.area_m2, self.congestion_density, self.watch.persons_per_officer
            ),
            "entrances": "、".join(zone.entrances) or zone.name,
            "metro_stations": "、".join(zone.metro_stations) or "周边地铁站",
            "passages": "、".join(zone.passages) or "周边商场通道",
            "expected": f"{self.horizon_s / 60:.0f} min",
        }
        level_now, level_ahead = level_of_service(density, self.bounds), level_of_service(ahead, self.bounds)
        expected = utc_at(t_s + self.horizon_s) if forecast else None
        message = (
            f"{zone.name} 人流{tier.zh}预警 (crowd {tier.value}): {persons:.0f} persons, "
            f"{density:.2f} persons/m² (level {level_now}), {ahead:.2f} forecast in {self.horizon_s / 60:.0f} min "
            f"(level {level_ahead}); counted by {sources}"
        )
        return Alert(
            alert_id=f"crowd:{zone.id}:{int(t_s)}:{tier.value}",
            category=Category.crowd,
            rule="fruin_forecast" if forecast else "fruin_level",
            sensor_id=f"pc-{zone.id}",
            station=zone.id,
            district=zone.district,
            township=zone.township,
            ts=utc_at(t_s),
            parameter="density",
            value=round(density, 3),
            unit="persons/m2",
            limit=self.congestion_density,
            severity=tier.rank / 3,
            message=message,
            tier=tier,
            expected_at=expected,
            checklist=dispersal_plan(tier.value, self.templates, facts),
        )

    def _cleared(self, zone: Zone, t_s: float, density: float, tier: Tier) -> Alert:
        return Alert(
            alert_id=f"crowd:{zone.id}:{int(t_s)}:cleared",
            category=Category.crowd,
            rule="fruin_level",
            sensor_id=f"pc-{zone.id}",
            station=zone.id,
            district=zone.district,
            township=zone.township,
            ts=utc_at(t_s),
            parameter="density",
            value=round(density, 3),
            unit="persons/m2",
            limit=self.congestion_density,
            severity=0.0,
            message=f"{zone.name}: {density:.2f} persons/m², below the {tier.value} warning for "
            f"{self.watch.clear_after_min} min",
            resolved=True,
        )

    # --- the evaluation's form -----------------------------------------------------------------------
    def add(self, reading: Reading) -> list[Alert]:
        state, alerts = self.step(reading, self.states.get(reading.station))
        if state is not None:
            self.states[reading.station] = state
        return alerts
