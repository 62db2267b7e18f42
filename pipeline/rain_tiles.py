"""The rain watch's tiles: per-gauge accumulations, the storm nowcast and the tiers of each tile's gauges.

The gauge field is cut into square tiles (``rain_tiles``: ``tile_km`` a side, config/rain.toml
``[watch]``), so the rain work spreads over partitions and workers. A ``TileWatch`` holds the gauges
of its tile and of a halo of ``halo_km`` around it: their accumulations (``GaugeAccumulator``: late
and duplicate readings land in their own slot) and one storm nowcaster over them, which sees a
cell in the halo before it reaches the tile. When the first reading of a new reporting step
arrives, the step before it is complete: the rates feed the nowcaster, and each gauge of the tile
itself (not of its halo) gets the highest CMA tier reached or forecast (``models/rain_tiers.py``).
The tile sends a ``RainDistrictStatus`` per district it holds gauges of, which the districts'
warnings judge (``pipeline/rain_districts.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from models.rain_accumulation import GaugeAccumulator
from models.rain_nowcast import StormNowcaster
from models.rain_tiers import tiers_many
from pipeline.city import City
from pipeline.rule_files import RainFile
from pipeline.rules import rules
from pipeline.schemas import GaugeStatus, RainDistrictStatus, Reading, Tier

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
        self.tier_table = [t.model_dump() for t in rain.tiers]  # as models/rain_tiers.py takes them
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
