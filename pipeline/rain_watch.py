"""The city's rain watch in one process: tiles and districts wired together as the agents wire them over Kafka.

Each reading goes to every tile that holds its gauge (``pipeline/rain_tiles.py``); the districts'
statuses a tile sends after each step are judged by the districts' warnings
(``pipeline/rain_districts.py``). The evaluation (``yuflow eval rain``) and the tests run
``RainWatch``, so they run the code that runs.
"""

from __future__ import annotations

from models.rain_accumulation import GaugeAccumulator
from pipeline.city import City
from pipeline.rain_districts import DistrictWarnings
from pipeline.rain_tiles import RainRules, Tile, TileWatch, rain_tiles
from pipeline.rule_files import RainFile
from pipeline.schemas import Alert, CameraDetection, Reading


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
