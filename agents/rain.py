"""Rain agents: gauge readings -> tiles -> districts -> rainstorm warnings (pipeline/rain_tiles.py, rain_districts.py).

``rain_to_tiles`` sends each gauge reading to every tile that holds the gauge (its own and those
whose halo it is in), keyed by tile on ``rain.tiles``: the tiles spread over partitions and workers.
``rain_tiles`` runs each tile's ``TileWatch``; a completed step sends the tile's status of each of
its districts to ``rain.districts``, keyed by district, where road-flooding sightings arrive too
(camera agent). ``rain_districts`` warns the districts (``DistrictWarnings``).

State: each tile's gauge accumulators in ``rain_tile_gauges`` (as their readings arrive), its
nowcaster in ``rain_tiles`` (after each step), each district's warning in ``rain_districts``. The
live objects (``LiveRain``) are rebuilt from the tables when first needed after a start or a
rebalance: partitions that moved may come back with state another worker wrote meanwhile.
"""

from __future__ import annotations

from functools import cached_property

import faust

from agents.app import SETTINGS, alerts_topic, app, dead_letter, rain_districts_topic, rain_tiles_topic, readings_topics
from pipeline.city import City, default_city
from pipeline.rain_districts import DistrictWarnings
from pipeline.rain_tiles import RainRules, Tile, TileWatch, rain_tiles
from pipeline.schemas import Kind, RainDistrictRecord, RainDistrictStatus, Reading, encode_batch, parse_batch

tile_table = app.Table("rain_tiles", default=None, partitions=SETTINGS.kafka.partitions)
gauge_table = app.Table("rain_tile_gauges", default=None, partitions=SETTINGS.kafka.partitions)  # "<tile>/<gauge>"
district_table = app.Table("rain_districts", default=None, partitions=SETTINGS.kafka.partitions)


class LiveRain:
    """This worker's live rain objects over the tables: the city's tiles (built on first use), the
    watches of the tiles and the warnings of the districts it has seen since partitions last moved."""

    def __init__(self, tiles: faust.Table, gauges: faust.Table, districts: faust.Table):
        self.tile_table, self.gauge_table, self.district_table = tiles, gauges, districts
        self.tile_watches: dict[str, TileWatch] = {}
        self.district_warnings: DistrictWarnings | None = None

    @cached_property
    def city(self) -> City:
        return default_city()

    @cached_property
    def rules(self) -> RainRules:
        return RainRules()

    @cached_property
    def tiles(self) -> dict[str, Tile]:
        return rain_tiles(self.city, self.rules.tile_km, self.rules.halo_km)

    @cached_property
    def tiles_of_gauge(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for tile in self.tiles.values():
            for g in tile.gauges:
                out.setdefault(g, []).append(tile.id)
        return out

    def forget(self, *args, **kwargs) -> None:  # a signal: partitions moved, so the live state is the tables'
        self.tile_watches.clear()
        self.district_warnings = None

    def tile(self, tile_id: str) -> TileWatch:
        """The tile's watch, rebuilt from the tables the first time it is needed after a start or a rebalance."""
        if tile_id not in self.tile_watches:
            tile = self.tiles[tile_id]
            gauges = {g: s for g in tile.gauges if (s := self.gauge_table.get(f"{tile_id}/{g}")) is not None}
            watch = TileWatch(self.city, tile, self.rules)
            self.tile_watches[tile_id] = watch.load(self.tile_table.get(tile_id), gauges)
        return self.tile_watches[tile_id]

    def add(self, tile_id: str, watch: TileWatch, reading: Reading) -> list[RainDistrictStatus]:
        """One reading into the tile's watch, its state written to the tables; the statuses of any step it completes."""
        step_before = watch.step_end_s
        statuses = watch.add(reading)
        if reading.station in watch.accumulators:
            self.gauge_table[f"{tile_id}/{reading.station}"] = watch.accumulators[reading.station].state()
        if watch.step_end_s != step_before:
            self.tile_table[tile_id] = watch.state()
        return statuses

    def district(self, district: str) -> DistrictWarnings:
        """The districts' warnings, with ``district``'s restored from its table the first time it is needed."""
        if self.district_warnings is None:
            self.district_warnings = DistrictWarnings(self.city, self.rules, self.tiles.values())
        if district not in self.district_warnings.pending:
            self.district_warnings.load(district, self.district_table.get(district))
        return self.district_warnings


live = LiveRain(tile_table, gauge_table, district_table)
app.on_partitions_revoked.connect(live.forget)
app.on_partitions_assigned.connect(live.forget)


@app.agent(readings_topics[Kind.rain])
async def rain_to_tiles(stream):
    async for raw in stream:
        try:
            readings = parse_batch(raw)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("rain", readings_topics[Kind.rain], raw, error)
            continue
        by_tile: dict[str, list[bytes]] = {}
        for reading in readings:
            for tile_id in live.tiles_of_gauge.get(reading.station, ()):
                by_tile.setdefault(tile_id, []).append(reading.to_json())
        for tile_id, part in by_tile.items():
            await rain_tiles_topic.send(key=tile_id.encode(), value=encode_batch(part))


@app.agent(rain_tiles_topic)
async def rain_tile(stream):
    async for raw in stream:
        tile_id = stream.current_event.key.decode()
        try:
            readings = parse_batch(raw)
            watch = live.tile(tile_id)
        except Exception as error:
            await dead_letter("rain", rain_tiles_topic, raw, error)
            continue
        for reading in readings:
            try:
                statuses = live.add(tile_id, watch, reading)
            except Exception as error:
                await dead_letter("rain", rain_tiles_topic, reading.to_json(), error)
                continue
            for status in statuses:
                await rain_districts_topic.send(
                    key=status.district.encode(), value=RainDistrictRecord(status=status).to_json()
                )


@app.agent(rain_districts_topic)
async def rain_district(stream):
    async for raw in stream:
        try:
            record = RainDistrictRecord.model_validate_json(raw)
            district = stream.current_event.key.decode()
            warnings = live.district(district)
            for sighting in record.flooding:
                warnings.add_flooding(sighting)
            alerts = warnings.update(record.status) if record.status is not None else []
            district_table[district] = warnings.state(district)
        except Exception as error:
            await dead_letter("rain", rain_districts_topic, raw, error)
            continue
        for alert in alerts:
            await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())
