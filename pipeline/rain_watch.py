"""The city's rain watch: per-gauge accumulations, the storm nowcast and rainstorm warnings by district.

The gauge field is cut into square tiles (``rain_tiles``: ``tile_km`` a side, config/rain.toml
``[watch]``), so the rain work spreads over partitions and workers. A ``TileWatch`` holds the gauges
of its tile and of a halo of ``halo_km`` around it: their accumulations (``GaugeAccumulator``: late
and duplicate readings land in their own slot) and one storm nowcaster over them, which sees a
cell in the halo before it reaches the tile. When the first reading of a new reporting step
arrives, the step before it is complete: the rates feed the nowcaster, and each gauge of the tile
itself (not of its halo) gets the highest CMA tier reached or forecast (``models/rain.py``). The
tile sends a ``RainDistrictStatus`` per district it holds gauges of.

``DistrictWarnings`` warns a district at the highest tier of its gauges (分区预警) across the tiles
that hold them, with the risk points near those gauges and who answers for them; road cameras that
see flooding in the district are named and lift the warning to at least ``flood_tier``. A district
warning is resolved once no gauge in it has reached or is forecast to reach a tier for
``clear_after_h``. A district is judged after a step once all its tiles have sent that step.

``RainWatch`` wires tiles and districts together in one process, as the agents do over Kafka: the
evaluation (``yuflow eval rain``) and the tests run the code that runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from models.rain import GaugeAccumulator, StormNowcaster, tiers_many
from pipeline.city import City
from pipeline.rule_files import RainFile
from pipeline.rules import rules
from pipeline.schemas import Alert, CameraDetection, Category, GaugeStatus, RainDistrictStatus, Reading, Tier, utc_at

WHOLE_FIELD = "field"  # the one tile when the field is not cut


@dataclass(frozen=True)
class Tile:
    id: str
    core: tuple[str, ...]  # the gauges it warns for
    gauges: tuple[str, ...]  # those and the halo's: what its nowcaster sees


def rain_tiles(city: City, tile_km: float | None, halo_km: float) -> dict[str, Tile]:
    """The gauge field in squares of ``tile_km`` from its south-west corner, each with the gauges
    within ``halo_km`` around it (None or 0: one tile, the whole field)."""
    ids = list(city.gauges)
    if not tile_km:
        return {WHOLE_FIELD: Tile(WHOLE_FIELD, tuple(ids), tuple(ids))}
    x = np.array([city.gauges[g].x_km for g in ids])
    y = np.array([city.gauges[g].y_km for g in ids])
    col, row = ((x - x.min()) // tile_km).astype(int), ((y - y.min()) // tile_km).astype(int)
    tiles = {}
    for c, r in sorted(set(zip(col.tolist(), row.tolist()))):
        x0, y0 = x.min() + c * tile_km, y.min() + r * tile_km
        near = (x >= x0 - halo_km) & (x < x0 + tile_km + halo_km) & (y >= y0 - halo_km) & (y < y0 + tile_km + halo_km)
        tile_id = f"t{c:03d}.{r:03d}"
        tiles[tile_id] = Tile(
            tile_id,
            tuple(g for g, cc, rr in zip(ids, col, row) if (cc, rr) == (c, r)),
            tuple(g for g, n in zip(ids, near) if n),
        )
    return tiles


class RainRules:
    """config/rain.toml (pipeline/rules.py ``RainFile``) in the units the watch works in."""

    def __init__(self, rain: RainFile | None = None):
        rain = rain or rules().rain
        self.tiers = rain.tiers
        self.tier_table = [t.model_dump() for t in rain.tiers]  # as models/rain.py takes them
        self.longest_h = max(t.window_h for t in self.tiers)
        watch = rain.watch
        self.step_s = float(watch.step_s)
        self.leads_s = np.arange(1, int(watch.nowcast_h * 3600 / self.step_s) + 1) * self.step_s
        self.clear_after_s = watch.clear_after_h * 3600
        self.flood_depth_m = watch.flood_depth_m
        self.flood_tier = Tier(watch.flood_tier)
        self.quantile = watch.forecast_quantile
        self.within_window = watch.forecast_within_window
        self.corroborate_fraction = watch.corroborate_fraction
        self.corroborate_neighbours = watch.corroborate_neighbours
        self.tile_km = watch.tile_km
        self.halo_km = watch.halo_km
        self.nowcast = rain.nowcast.kwargs()


class TileWatch:
    """One tile's gauges (and its halo's): accumulations, the nowcast, the tiers of its own gauges."""

    def __init__(self, city: City, tile: Tile, rules: RainRules):
        self.city, self.tile, self.rules = city, tile, rules
        self.gauge_ids = list(tile.gauges)
        core = set(tile.core)
        self.is_core = np.array([g in core for g in self.gauge_ids])
        x = np.array([city.gauges[g].x_km for g in self.gauge_ids])
        y = np.array([city.gauges[g].y_km for g in self.gauge_ids])
        self.accumulators = {g: GaugeAccumulator(step_s=rules.step_s) for g in self.gauge_ids}
        self.nowcaster = StormNowcaster(x, y, step_s=rules.step_s, **rules.nowcast)
        self.step_end_s: float | None = None
        self.districts = sorted({city.gauges[g].district for g in tile.core})
        self.warned: dict[str, dict[str, float]] = {}  # gauge -> tier -> first time warned (s), for the evaluation
        self.suspect_gauges: dict[str, float] = {}  # gauge -> first time it reached a tier alone (a faulty gauge?)
        self.timings_ms: list[float] = []

    def add(self, reading: Reading) -> list[RainDistrictStatus]:
        """One rain reading; the district statuses of any step it completes."""
        if reading.station not in self.accumulators or "rain" not in reading.values:
            return []
        end_s, step_s = reading.ts.timestamp(), self.rules.step_s
        out = []
        if self.step_end_s is None or end_s - self.step_end_s > 24 * 3600:  # first, or after a long silence: afresh
            self.step_end_s = end_s - step_s
        while end_s > self.step_end_s + step_s:
            self.step_end_s += step_s
            out += self.evaluate(self.step_end_s)
        self.accumulators[reading.station].add(end_s, reading.values["rain"].value)
        return out

    def flush(self) -> list[RainDistrictStatus]:
        """Evaluate the last step (end of a replay)."""
        if self.step_end_s is None:
            return []
        self.step_end_s += self.rules.step_s
        return self.evaluate(self.step_end_s)

    def evaluate(self, t_s: float) -> list[RainDistrictStatus]:
        rules = self.rules
        started = time.perf_counter()
        recent = np.stack([self.accumulators[g].recent_mm(t_s, rules.longest_h) for g in self.gauge_ids])  # (G, M)
        self.nowcaster.update(t_s, recent[:, -1] * 3600 / rules.step_s)
        bands = self.nowcaster.forecast(rules.leads_s)  # quantile -> (G, L) cumulative mm
        status = tiers_many(
            recent, bands[rules.quantile], rules.leads_s, rules.step_s, rules.tier_table, rules.within_window
        )
        self.timings_ms.append((time.perf_counter() - started) * 1000)
        lone = self._uncorroborated(recent, status.reached)
        gauges: dict[str, list[GaugeStatus]] = {d: [] for d in self.districts}
        band_sum = {d: dict.fromkeys(bands, 0.0) for d in self.districts}
        band_n = dict.fromkeys(self.districts, 0)
        for j in np.flatnonzero(self.is_core):
            g = self.gauge_ids[j]
            district = self.city.gauges[g].district
            band_n[district] += 1
            for q in bands:
                band_sum[district][q] += float(bands[q][j, -1])
            if lone[j]:
                self.suspect_gauges.setdefault(g, t_s)
                continue
            if status.forecast[j] >= 0:  # only ever above the tier reached
                rule = rules.tiers[status.forecast[j]]
                found = GaugeStatus(
                    gauge=g,
                    tier=rule.tier,
                    mm=float(status.forecast_mm[j]),
                    window_h=rule.window_h,
                    expected_s=t_s + float(status.lead_s[j]),
                )
            elif status.reached[j] >= 0:
                rule = rules.tiers[status.reached[j]]
                found = GaugeStatus(gauge=g, tier=rule.tier, mm=float(status.reached_mm[j]), window_h=rule.window_h)
            else:
                continue
            gauges[district].append(found)
            self.warned.setdefault(g, {}).setdefault(found.tier.value, t_s)
        return [
            RainDistrictStatus(
                tile=self.tile.id, district=d, t_s=t_s, gauges=gauges[d], band_sum_mm=band_sum[d], band_n=band_n[d]
            )
            for d in self.districts
        ]

    def _uncorroborated(self, recent: np.ndarray, reached: np.ndarray) -> np.ndarray:
        """Gauges at a tier that fewer than ``corroborate_neighbours`` neighbours back with at least
        ``corroborate_fraction`` of their accumulation over the tier's window. A storm cell wets
        the gauges before and beside it too (they are closer than a cell is wide); a stuck or
        drifting gauge does not, and one spike beside it does not make a storm."""
        rules = self.rules
        lone = np.zeros(len(self.gauge_ids), dtype=bool)
        near = self.nowcaster.near
        for i in np.unique(reached[reached >= 0]):
            sums = np.nansum(recent[:, -max(1, round(rules.tiers[i].window_h * 3600 / rules.step_s)) :], axis=1)
            neighbours = np.sort(np.where(near, sums[None, :], 0.0), axis=1)[:, -rules.corroborate_neighbours]
            lone |= (reached == i) & (neighbours < rules.corroborate_fraction * sums)
        return lone

    # --- state (the agent keeps it in tables) ----------------------------------------------------
    def state(self) -> dict:
        return {"step_end_s": self.step_end_s, "nowcaster": self.nowcaster.state()}

    def load(self, state: dict | None, gauges: dict[str, dict]) -> TileWatch:
        if state:
            self.step_end_s = state["step_end_s"]
            self.nowcaster = StormNowcaster.from_state(state["nowcaster"])
        for g, acc in gauges.items():
            if g in self.accumulators:
                self.accumulators[g] = GaugeAccumulator.from_state(acc)
        return self


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
                return [self._alert(district, t_s, Tier(state["tier"]), {}, [], resolved=True)]
            return []
        tier = max((s.tier for s in gauges.values()), key=lambda t: t.rank)
        floods = self._floods(district, t_s)
        if floods and tier.rank < self.rules.flood_tier.rank:
            tier = self.rules.flood_tier
        if state is None or tier.rank > Tier(state["tier"]).rank:
            self.states[district] = {"tier": tier.value, "since_s": t_s, "last_active_s": t_s}
            n = sum(p.band_n for p in parts)
            band = {q: sum(p.band_sum_mm.get(q, 0.0) for p in parts) / n for q in ("p10", "p50", "p90")} if n else {}
            return [self._alert(district, t_s, tier, gauges, floods, band=band)]
        state["last_active_s"] = t_s
        return []

    def _floods(self, district: str, t_s: float) -> list[str]:
        return [
            f"{self.city.site_name(road)} 积水 {depth:.2f} m (camera {camera})"
            for road, (seen_s, depth, camera) in self.flooding.items()
            if self.city.roads[road].district == district and depth >= self.rules.flood_depth_m and t_s - seen_s <= 3600
        ]

    def _alert(
        self,
        district: str,
        t_s: float,
        tier: Tier,
        gauges: dict[str, GaugeStatus],
        floods: list[str],
        resolved: bool = False,
        band: dict[str, float] | None = None,
    ) -> Alert:
        name = self.city.site_name(district)
        rule = next(r for r in self.rules.tiers if r.tier == tier.value)
        if resolved:
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
                limit=rule.mm,
                severity=0.0,
                message=f"{name}: no gauge at or forecast to reach a rainstorm tier",
                resolved=True,
            )
        top = max(
            (s for s in gauges.values() if s.tier == tier), key=lambda s: s.mm, default=next(iter(gauges.values()))
        )
        when = (
            (
                f"forecast to reach {top.mm:.0f} mm in {top.window_h:g} h by {utc_at(top.expected_s):%H:%M} UTC "
                f"({(top.expected_s - t_s) / 60:.0f} min ahead)"
            )
            if top.expected_s
            else f"{top.mm:.0f} mm in {top.window_h:g} h reached"
        )
        at_risk = [r for r in self.city.risk_points.values() if self.risk_gauge[r.id] in gauges]
        checklist = [
            f"通知{r.responsible}: {r.name} ({r.type}) 组织转移群众, {r.rescue_team} 前置待命 "
            f"(risk point {r.id}: evacuate; rescue team on standby)"
            for r in at_risk
        ]
        message = (
            f"{name} 暴雨{tier.zh}预警 (rainstorm {tier.value}): {self.city.site_name(top.gauge)} {when}; "
            f"{len(gauges)} gauge(s) at or forecast to a tier; {len(at_risk)} risk point(s)"
        )
        if band:  # the district's mean rain over the next hours, with its spread
            message += (
                f"; next {self.rules.leads_s[-1] / 3600:g} h nowcast {band['p50']:.0f} mm "
                f"(p10-p90 {band['p10']:.0f}-{band['p90']:.0f} mm)"
            )
        if floods:
            message += "; road flooding seen: " + "; ".join(floods)
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
            limit=rule.mm,
            severity=tier.rank / 3,
            message=message,
            tier=tier,
            expected_at=utc_at(top.expected_s) if top.expected_s else None,
            checklist=checklist,
        )

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


class RainWatch:
    """Tiles and districts in one process, wired as the agents wire them over Kafka."""

    def __init__(self, city: City, rules: RainFile | None = None, tiles: dict[str, Tile] | None = None):
        """``tiles``: as configured unless given (``rain_tiles``)."""
        self.city = city
        self.rules = RainRules(rules)
        tiles = tiles if tiles is not None else rain_tiles(city, self.rules.tile_km, self.rules.halo_km)
        self.tiles = {t.id: TileWatch(city, t, self.rules) for t in tiles.values()}
        self.districts = DistrictWarnings(city, self.rules, (w.tile for w in self.tiles.values()))
        self.tiles_of_gauge: dict[str, list[TileWatch]] = {}
        for w in self.tiles.values():
            for g in w.tile.gauges:
                self.tiles_of_gauge.setdefault(g, []).append(w)

    def add(self, reading: Reading) -> list[Alert]:
        """One rain reading or road-flooding detection; the alerts of any step it completes."""
        if isinstance(reading, CameraDetection):
            self.districts.add_flooding(reading)
            return []
        return [
            a
            for w in self.tiles_of_gauge.get(reading.station, [])
            for s in w.add(reading)
            for a in self.districts.update(s)
        ]

    def flush(self) -> list[Alert]:
        return [a for w in self.tiles.values() for s in w.flush() for a in self.districts.update(s)]

    # what the evaluation reads: each gauge's from the tile it belongs to
    @property
    def warned(self) -> dict[str, dict[str, float]]:
        return {g: t for w in self.tiles.values() for g, t in w.warned.items()}

    @property
    def suspect_gauges(self) -> dict[str, float]:
        return {g: t for w in self.tiles.values() for g, t in w.suspect_gauges.items()}

    @property
    def accumulators(self) -> dict[str, GaugeAccumulator]:
        return {g: w.accumulators[g] for w in self.tiles.values() for g in w.tile.core}

    @property
    def timings_ms(self) -> list[float]:
        return [ms for w in self.tiles.values() for ms in w.timings_ms]
