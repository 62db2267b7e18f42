"""The city's rain watch: per-gauge accumulations, the storm nowcast and rainstorm warnings by district.

Every gauge's readings go through one ``RainWatch`` (the rain agent re-keys them to one key, so
one task sees the whole field). A gauge's amounts go into its ``GaugeAccumulator`` (late and
duplicate readings land in their own slot). When the first reading of a new reporting step
arrives, the step before it is complete: the field's rates feed the nowcaster, and each gauge gets
the highest CMA tier reached or forecast (``models/rain.py``). A district is warned at the highest
tier of its gauges (分区预警), with the risk points near those gauges and who answers for them;
road cameras that see flooding in the district are named and lift the warning to at least
``flood_tier``. A district warning is resolved once no gauge in it has reached or is forecast to
reach a tier for ``clear_after_h``.

Used by the rain agent and by ``yuflow eval rain``, so the evaluation measures the code that runs.
"""

from __future__ import annotations

import math
import time

import numpy as np

from models.rain import GaugeAccumulator, StormNowcaster, tiers_many
from pipeline.city import City, load_toml
from pipeline.schemas import Alert, CameraDetection, Category, Reading, Tier, utc_at



class RainWatch:
    def __init__(self, city: City, rules: dict | None = None):
        rules = rules or load_toml("rain")
        self.city = city
        self.tiers = rules["tiers"]
        self.longest_h = max(rule["window_h"] for rule in self.tiers)
        cfg = rules["watch"]
        self.step_s = float(cfg["step_s"])
        self.leads_s = np.arange(1, int(cfg["nowcast_h"] * 3600 / self.step_s) + 1) * self.step_s
        self.clear_after_s = cfg["clear_after_h"] * 3600
        self.flood_depth_m = cfg["flood_depth_m"]
        self.flood_tier = Tier(cfg["flood_tier"])
        self.quantile = cfg["forecast_quantile"]
        self.within_window = cfg.get("forecast_within_window", False)
        self.corroborate_fraction = cfg.get("corroborate_fraction", 0.2)
        self.corroborate_neighbours = cfg.get("corroborate_neighbours", 2)
        self.gauge_ids = list(city.gauges)
        x = np.array([g.x_km for g in city.gauges.values()])
        y = np.array([g.y_km for g in city.gauges.values()])
        self.accumulators = {g: GaugeAccumulator(step_s=self.step_s) for g in self.gauge_ids}
        self.nowcaster = StormNowcaster(x, y, step_s=self.step_s, **rules.get("nowcast", {}))
        self.step_end_s: float | None = None
        self.districts: dict[str, dict] = {}           # district -> {"tier", "since_s", "last_active_s"}
        self.flooding: dict[str, tuple[float, float, str]] = {}  # road -> (t_s, depth m, camera id)
        self.warned: dict[str, dict[str, float]] = {}  # gauge -> tier -> first time warned (s), for the evaluation
        self.timings_ms: list[float] = []
        self.bands: dict[str, np.ndarray] = {}         # the last step's nowcast
        self.suspect_gauges: dict[str, float] = {}    # gauge -> first time it reached a tier alone (a faulty gauge?)
        # the gauge nearest each risk point stands for its area
        self.risk_gauge = {r.id: min(self.gauge_ids, key=lambda g: math.hypot(city.gauges[g].x_km - r.x_km, city.gauges[g].y_km - r.y_km))
                           for r in city.risk_points.values()}

    # --- input -------------------------------------------------------------------------------
    def add(self, reading: Reading) -> list[Alert]:
        """One rain reading or road-flooding detection; the alerts of any step it completes."""
        if isinstance(reading, CameraDetection):
            if reading.detection == "road_flooding" and "flood_depth" in reading.values:
                self.flooding[reading.station] = (reading.ts.timestamp(), reading.values["flood_depth"].value, reading.sensor_id)
            return []
        if reading.station not in self.accumulators or "rain" not in reading.values:
            return []
        end_s = reading.ts.timestamp()
        alerts = []
        if self.step_end_s is None:
            self.step_end_s = end_s - self.step_s
        if end_s - self.step_end_s > 24 * 3600:  # after a long silence: start afresh rather than step through the gap
            self.step_end_s = end_s - self.step_s
        while end_s > self.step_end_s + self.step_s:
            self.step_end_s += self.step_s
            alerts += self.evaluate(self.step_end_s)
        self.accumulators[reading.station].add(end_s, reading.values["rain"].value)
        return alerts

    def flush(self) -> list[Alert]:
        """Evaluate the last step (end of a replay)."""
        if self.step_end_s is None:
            return []
        self.step_end_s += self.step_s
        return self.evaluate(self.step_end_s)

    # --- one step ------------------------------------------------------------------------------
    def evaluate(self, t_s: float) -> list[Alert]:
        started = time.perf_counter()
        recent = np.stack([self.accumulators[g].recent_mm(t_s, self.longest_h) for g in self.gauge_ids])  # (G, M)
        self.nowcaster.update(t_s, recent[:, -1] * 3600 / self.step_s)
        self.bands = self.nowcaster.forecast(self.leads_s)   # quantile -> (G, L) cumulative mm
        cum = self.bands[self.quantile]
        status = tiers_many(recent, cum, self.leads_s, self.step_s, self.tiers, self.within_window)
        self.timings_ms.append((time.perf_counter() - started) * 1000)
        lone = self._uncorroborated(recent, status.reached)
        gauge_status: dict[str, tuple[str, float, float | None, float]] = {}  # gauge -> (tier, mm, expected_s, window_h)
        for j, g in enumerate(self.gauge_ids):
            if lone[j]:
                self.suspect_gauges.setdefault(g, t_s)
                continue
            if status.forecast[j] >= 0:   # only ever above the tier reached
                rule = self.tiers[status.forecast[j]]
                gauge_status[g] = (rule["tier"], float(status.forecast_mm[j]), t_s + float(status.lead_s[j]), rule["window_h"])
            elif status.reached[j] >= 0:
                rule = self.tiers[status.reached[j]]
                gauge_status[g] = (rule["tier"], float(status.reached_mm[j]), None, rule["window_h"])
            if g in gauge_status:
                self.warned.setdefault(g, {}).setdefault(gauge_status[g][0], t_s)
        return self._district_alerts(t_s, gauge_status)

    def _uncorroborated(self, recent: np.ndarray, reached: np.ndarray) -> np.ndarray:
        """Gauges at a tier that fewer than ``corroborate_neighbours`` neighbours back with at least
        ``corroborate_fraction`` of their accumulation over the tier's window. A storm cell wets
        the gauges before and beside it too (they are closer than a cell is wide); a stuck or
        drifting gauge does not, and one spike beside it does not make a storm."""
        lone = np.zeros(len(self.gauge_ids), dtype=bool)
        near = self.nowcaster.near
        for i in np.unique(reached[reached >= 0]):
            sums = np.nansum(recent[:, -max(1, round(self.tiers[i]["window_h"] * 3600 / self.step_s)):], axis=1)
            neighbours = np.sort(np.where(near, sums[None, :], 0.0), axis=1)[:, -self.corroborate_neighbours]
            lone |= (reached == i) & (neighbours < self.corroborate_fraction * sums)
        return lone

    def _district_alerts(self, t_s: float, gauge_status: dict) -> list[Alert]:
        alerts = []
        by_district: dict[str, list[str]] = {}
        for g, status in gauge_status.items():
            by_district.setdefault(self.city.gauges[g].district, []).append(g)
        for district in set(by_district) | set(self.districts):
            state = self.districts.get(district)
            gauges = by_district.get(district, [])
            if not gauges:
                if state and t_s - state["last_active_s"] >= self.clear_after_s:
                    alerts.append(self._alert(district, t_s, Tier(state["tier"]), [], {}, resolved=True))
                    del self.districts[district]
                continue
            tier = max((Tier(gauge_status[g][0]) for g in gauges), key=lambda t: t.rank)
            floods = self._floods(district, t_s)
            if floods and tier.rank < self.flood_tier.rank:
                tier = self.flood_tier
            if state is None or tier.rank > Tier(state["tier"]).rank:
                alerts.append(self._alert(district, t_s, tier, gauges, gauge_status, floods=floods))
                self.districts[district] = {"tier": tier.value, "since_s": t_s, "last_active_s": t_s}
            else:
                state["last_active_s"] = t_s
        return alerts

    def _floods(self, district: str, t_s: float) -> list[str]:
        return [f"{self.city.site_name(road)} 积水 {depth:.2f} m (camera {camera})"
                for road, (seen_s, depth, camera) in self.flooding.items()
                if self.city.roads[road].district == district and depth >= self.flood_depth_m and t_s - seen_s <= 3600]

    def _alert(self, district: str, t_s: float, tier: Tier, gauges: list[str], gauge_status: dict, floods: list[str] = (),
               resolved: bool = False) -> Alert:
        name = self.city.site_name(district)
        rule = next(r for r in self.tiers if r["tier"] == tier.value)
        if resolved:
            return Alert(alert_id=f"rain:{district}:{int(t_s)}:cleared", category=Category.rain, rule="cma_rainstorm", sensor_id="",
                         station=district, district=district, ts=utc_at(t_s), parameter="rain", value=0.0, unit="mm",
                         limit=rule["mm"], severity=0.0, message=f"{name}: no gauge at or forecast to reach a rainstorm tier", resolved=True)
        top = max((g for g in gauges if Tier(gauge_status[g][0]) == tier), key=lambda g: gauge_status[g][1], default=gauges[0])
        _, mm, expected_s, window_h = gauge_status[top]
        when = (f"forecast to reach {mm:.0f} mm in {window_h:g} h by {utc_at(expected_s):%H:%M} UTC "
                f"({(expected_s - t_s) / 60:.0f} min ahead)") if expected_s else f"{mm:.0f} mm in {window_h:g} h reached"
        at_risk = [r for r in self.city.risk_points.values() if self.risk_gauge[r.id] in gauges]
        checklist = [f"通知{r.responsible}: {r.name} ({r.type}) 组织转移群众, {r.rescue_team} 前置待命 "
                     f"(risk point {r.id}: evacuate; rescue team on standby)" for r in at_risk]
        message = (f"{name} 暴雨{tier.zh}预警 (rainstorm {tier.value}): {self.city.site_name(top)} {when}; "
                   f"{len(gauges)} gauge(s) at or forecast to a tier; {len(at_risk)} risk point(s)")
        district_gauges = [j for j, g in enumerate(self.gauge_ids) if self.city.gauges[g].district == district]
        if district_gauges and self.bands:  # the district's mean rain over the next 6 h, with its spread
            p10, p50, p90 = (float(self.bands[q][district_gauges, -1].mean()) for q in ("p10", "p50", "p90"))
            message += f"; next {self.leads_s[-1] / 3600:g} h nowcast {p50:.0f} mm (p10-p90 {p10:.0f}-{p90:.0f} mm)"
        if floods:
            message += "; road flooding seen: " + "; ".join(floods)
        return Alert(alert_id=f"rain:{district}:{int(t_s)}:{tier.value}", category=Category.rain,
                     rule="cma_rainstorm_forecast" if expected_s else "cma_rainstorm", sensor_id=top, station=district, district=district,
                     township=self.city.gauges[top].township, ts=utc_at(t_s), parameter="rain", value=round(mm, 1), unit="mm",
                     limit=rule["mm"], severity=tier.rank / 3, message=message, tier=tier,
                     expected_at=utc_at(expected_s) if expected_s else None, checklist=checklist)

    # --- state (the agent keeps it in tables) ----------------------------------------------------
    def field_state(self) -> dict:
        return {"step_end_s": self.step_end_s, "nowcaster": self.nowcaster.state(), "districts": self.districts,
                "flooding": {k: list(v) for k, v in self.flooding.items()}}

    def load(self, field: dict | None, gauges: dict[str, dict]) -> RainWatch:
        if field:
            self.step_end_s = field["step_end_s"]
            self.nowcaster = StormNowcaster.from_state(field["nowcaster"])
            self.districts = field["districts"]
            self.flooding = {k: tuple(v) for k, v in field["flooding"].items()}
        for g, state in gauges.items():
            if g in self.accumulators:
                self.accumulators[g] = GaugeAccumulator.from_state(state)
        return self
