"""Rainstorm warnings by district (分区预警) from the statuses the rain tiles send after each step.

``DistrictWarnings`` warns a district at the highest tier of its gauges across the tiles that hold
them (``pipeline/rain_tiles.py``), with the risk points near those gauges and who answers for them;
road cameras that see flooding in the district are named and lift the warning to at least
``flood_tier``. A district warning is resolved once no gauge in it has reached or is forecast to
reach a tier for ``clear_after_h``. A district is judged after a step once all its tiles have sent
that step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pipeline.city import City, RiskPoint
from pipeline.rain_tiles import RainRules, Tile
from pipeline.rule_files import RainTier
from pipeline.schemas import Alert, CameraDetection, Category, GaugeStatus, RainDistrictStatus, Tier, utc_at


class DistrictWarnings:
    """Rainstorm warnings of districts from their tiles' statuses (and road-flooding sightings)."""

    def __init__(self, city: City, rules: RainRules, tiles: Iterable[Tile]):
        self.city, self.rules = city, rules
        self.tiles_of: dict[str, set[str]] = {}  # district -> the tiles that hold its gauges
        for tile in tiles:
            for g in tile.core:
                self.tiles_of.setdefault(city.gauges[g].district, set()).add(tile.id)
        self.states: dict[str, dict] = {}  # district -> {"tier", "since_s", "last_active_s"}
        self.pending: dict[str, dict[str, dict[float, RainDistrictStatus]]] = {}  # district -> tile -> step -> status
        self.done_s: dict[str, float] = {}  # district -> the last step judged
        self.flooding: dict[str, tuple[float, float, str]] = {}  # road -> (t_s, depth m, camera id)
        # the gauge nearest each risk point stands for its area
        gauge_ids = list(city.gauges)
        self.risk_gauge = {
            r.id: min(gauge_ids, key=lambda g: math.hypot(city.gauges[g].x_km - r.x_km, city.gauges[g].y_km - r.y_km))
            for r in city.risk_points.values()
        }

    def add_flooding(self, detection: CameraDetection) -> None:
        if detection.detection == "road_flooding" and "flood_depth" in detection.values:
            self.flooding[detection.station] = (
                detection.ts.timestamp(),
                detection.values["flood_depth"].value,
                detection.sensor_id,
            )

    def update(self, status: RainDistrictStatus) -> list[Alert]:
        """A tile's status of a district; the district's alerts of the steps this completes. A step is
        judged once every tile of the district has sent it (the same facts as one watch over the
        whole field), or once another tile is a step further on (a tile late or silent holds its
        district's warnings back by one step at most)."""
        district = status.district
        pending = self.pending.setdefault(district, {})  # tile -> step (t_s) -> its status
        pending.setdefault(status.tile, {})[status.t_s] = status
        done_s = self.done_s.get(district, -math.inf)
        tiles = self.tiles_of.get(district, {status.tile})
        steps = sorted({t for by_step in pending.values() for t in by_step if t > done_s})
        alerts = []
        for t_s in steps:
            if not (all(t_s in pending.get(tile, {}) for tile in tiles) or steps[-1] >= t_s + self.rules.step_s):
                break
            alerts += self._judge(district, t_s, [by_step[t_s] for by_step in pending.values() if t_s in by_step])
            done_s = t_s
        self.done_s[district] = done_s
        for by_step in pending.values():
            for t_s in [t for t in by_step if t <= done_s]:
                del by_step[t_s]
        return alerts

    def _judge(self, district: str, t_s: float, parts: list[RainDistrictStatus]) -> list[Alert]:
        """The district's warning after step ``t_s``, from its tiles' statuses of that step."""
        gauges = {s.gauge: s for part in parts for s in part.gauges}
        state = self.states.get(district)
        if not gauges:
            if state and t_s - state["last_active_s"] >= self.rules.clear_after_s:
                del self.states[district]
                return [self._cleared(district, t_s, Tier(state["tier"]))]
            return []
        tier = max((s.tier for s in gauges.values()), key=lambda t: t.rank)
        floods = self._floods(district, t_s)
        if floods and tier.rank < self.rules.flood_tier.rank:
            tier = self.rules.flood_tier
        if state is None or tier.rank > Tier(state["tier"]).rank:
            self.states[district] = {"tier": tier.value, "since_s": t_s, "last_active_s": t_s}
            n = sum(p.band_n for p in parts)
            band = {q: sum(p.band_sum_mm.get(q, 0.0) for p in parts) / n for q in ("p10", "p50", "p90")} if n else {}
            return [self._raised(district, t_s, tier, gauges, floods, band)]
        state["last_active_s"] = t_s
        return []

    def _floods(self, district: str, t_s: float) -> list[str]:
        return [
            f"{self.city.site_name(road)} 积水 {depth:.2f} m (camera {camera})"
            for road, (seen_s, depth, camera) in self.flooding.items()
            if self.city.roads[road].district == district and depth >= self.rules.flood_depth_m and t_s - seen_s <= 3600
        ]

    def _cleared(self, district: str, t_s: float, tier: Tier) -> Alert:
        """The district's warning at ``tier`` resolved: no gauge in it at or forecast to a tier."""
        return Alert(
            alert_id=f"rain:{district}:{int(t_s)}:cleared",
            category=Category.rain,
            rule="cma_rainstorm",
            sensor_id="",
            station=district,
            district=district,
            ts=utc_at(t_s),
            parameter="rain",
            value=0.0,
            unit="mm",
            limit=self._tier_rule(tier).mm,
            severity=0.0,
            message=f"{self.city.site_name(district)}: no gauge at or forecast to reach a rainstorm tier",
            resolved=True,
        )

    def _raised(
        self,
        district: str,
        t_s: float,
        tier: Tier,
        gauges: dict[str, GaugeStatus],
        floods: list[str],
        band: dict[str, float],
    ) -> Alert:
        """The district's warning raised to ``tier``, led by its wettest gauge at that tier."""
        top = _leading_gauge(gauges, tier)
        at_risk = [r for r in self.city.risk_points.values() if self.risk_gauge[r.id] in gauges]
        return Alert(
            alert_id=f"rain:{district}:{int(t_s)}:{tier.value}",
            category=Category.rain,
            rule="cma_rainstorm_forecast" if top.expected_s else "cma_rainstorm",
            sensor_id=top.gauge,
            station=district,
            district=district,
            township=self.city.gauges[top.gauge].township,
            ts=utc_at(t_s),
            parameter="rain",
            value=round(top.mm, 1),
            unit="mm",
            limit=self._tier_rule(tier).mm,
            severity=tier.rank / 3,
            message=self._message(district, t_s, tier, top, len(gauges), len(at_risk), floods, band),
            tier=tier,
            expected_at=utc_at(top.expected_s) if top.expected_s else None,
            checklist=[_checklist_line(r) for r in at_risk],
        )

    def _tier_rule(self, tier: Tier) -> RainTier:
        return next(r for r in self.rules.tiers if r.tier == tier.value)

    def _message(
        self,
        district: str,
        t_s: float,
        tier: Tier,
        top: GaugeStatus,
        n_gauges: int,
        n_at_risk: int,
        floods: list[str],
        band: dict[str, float],
    ) -> str:
        message = (
            f"{self.city.site_name(district)} 暴雨{tier.zh}预警 (rainstorm {tier.value}): "
            f"{self.city.site_name(top.gauge)} {_when(top, t_s)}; "
            f"{n_gauges} gauge(s) at or forecast to a tier; {n_at_risk} risk point(s)"
        )
        if band:  # the district's mean rain over the next hours, with its spread
            message += (
                f"; next {self.rules.leads_s[-1] / 3600:g} h nowcast {band['p50']:.0f} mm "
                f"(p10-p90 {band['p10']:.0f}-{band['p90']:.0f} mm)"
            )
        if floods:
            message += "; road flooding seen: " + "; ".join(floods)
        return message

    # --- state (the agent keeps it in a table, per district) -------------------------------------
    def state(self, district: str) -> dict:
        return {
            "state": self.states.get(district),
            "done_s": self.done_s.get(district),
            "pending": [
                s.model_dump(mode="json")
                for by_step in self.pending.get(district, {}).values()
                for s in by_step.values()
            ],
            "flooding": {r: list(v) for r, v in self.flooding.items() if self.city.roads[r].district == district},
        }

    def load(self, district: str, saved: dict | None) -> None:
        self.pending.setdefault(district, {})
        if not saved:
            return
        if saved["state"]:
            self.states[district] = saved["state"]
        if saved["done_s"] is not None:
            self.done_s[district] = saved["done_s"]
        for raw in saved["pending"]:
            s = RainDistrictStatus.model_validate(raw)
            self.pending[district].setdefault(s.tile, {})[s.t_s] = s
        self.flooding.update({r: tuple(v) for r, v in saved["flooding"].items()})


def _leading_gauge(gauges: dict[str, GaugeStatus], tier: Tier) -> GaugeStatus:
    """The gauge with the most rain among those at ``tier`` (none at it: the first gauge)."""
    return max((s for s in gauges.values() if s.tier == tier), key=lambda s: s.mm, default=next(iter(gauges.values())))


def _when(top: GaugeStatus, t_s: float) -> str:
    """When the gauge's tier is (forecast to be) reached, as the warning says it."""
    if top.expected_s:
        return (
            f"forecast to reach {top.mm:.0f} mm in {top.window_h:g} h by {utc_at(top.expected_s):%H:%M} UTC "
            f"({(top.expected_s - t_s) / 60:.0f} min ahead)"
        )
    return f"{top.mm:.0f} mm in {top.window_h:g} h reached"


def _checklist_line(r: RiskPoint) -> str:
    return (
        f"通知{r.responsible}: {r.name} ({r.type}) 组织转移群众, {r.rescue_team} 前置待命 "
        f"(risk point {r.id}: evacuate; rescue team on standby)"
    )
