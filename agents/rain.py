"""Rain agents: gauge readings -> tiles of the field -> districts -> rainstorm warnings (pipeline/rain_watch.py).

``rain_to_tiles`` sends each gauge reading to every tile that holds the gauge (its own and those
whose halo it is in), keyed by tile on ``rain.tiles``: the tiles spread over partitions and workers.
``rain_tiles`` runs each tile's ``TileWatch``; a completed step sends the tile's status of each of
its districts to ``rain.districts``, keyed by district, where road-flooding sightings arrive too
(camera agent). ``rain_districts`` warns the districts (``DistrictWarnings``).

State: each tile's gauge accumulators in ``rain_tile_gauges`` (as their readings arrive), its
nowcaster in ``rain_tiles`` (after each step), each district's warning in ``rain_districts``. The
live objects are rebuilt from the tables when first needed after a start or a rebalance.
"""

from __future__ import annotations

from agents.app import SETTINGS, alerts_topic, app, dead_letter, rain_districts_topic, rain_tiles_topic, readings_topics
from pipeline.city import default_city
from pipeline.rain_watch import DistrictWarnings, RainRules, TileWatch, rain_tiles
from pipeline.schemas import Kind, RainDistrictRecord, encode_batch, parse_batch

tile_table = app.Table("rain_tiles", default=None, partitions=SETTINGS.kafka.partitions)
gauge_table = app.Table("rain_tile_gauges", default=None, partitions=SETTINGS.kafka.partitions)  # "<tile>/<gauge>"
district_table = app.Table("rain_districts", default=None, partitions=SETTINGS.kafka.partitions)
CITY = default_city()
RULES = RainRules()
TILES = rain_tiles(CITY, RULES.tile_km, RULES.halo_km)
TILES_OF_GAUGE: dict[str, list[str]] = {}
for _tile in TILES.values():
    for _g in _tile.gauges:
        TILES_OF_GAUGE.setdefault(_g, []).append(_tile.id)
_live_tiles: dict[str, TileWatch] = {}
_districts: DistrictWarnings | None = None


def tile_watch(tile_id: str) -> TileWatch:
    """The tile's watch, rebuilt from the tables the first time it is needed after a start or a rebalance."""
    if tile_id not in _live_tiles:
        tile = TILES[tile_id]
        gauges = {g: s for g in tile.gauges if (s := gauge_table.get(f"{tile_id}/{g}")) is not None}
        _live_tiles[tile_id] = TileWatch(CITY, tile, RULES).load(tile_table.get(tile_id), gauges)
    return _live_tiles[tile_id]


def district_warnings(district: str) -> DistrictWarnings:
    global _districts
    if _districts is None:
        _districts = DistrictWarnings(CITY, RULES, TILES.values())
    if district not in _districts.pending:
        _districts.load(district, district_table.get(district))
    return _districts


def _forget(*args, **kwargs) -> None:  # a signal: partitions moved, so the live state is the tables'
    global _districts
    _live_tiles.clear()
    _districts = None


app.on_partitions_revoked.connect(_forget)
app.on_partitions_assigned.connect(_forget)


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
            for tile_id in TILES_OF_GAUGE.get(reading.station, ()):
                by_tile.setdefault(tile_id, []).append(reading.to_json())
        for tile_id, part in by_tile.items():
            await rain_tiles_topic.send(key=tile_id.encode(), value=encode_batch(part))


@app.agent(rain_tiles_topic)
async def rain_tile(stream):
    async for raw in stream:
        tile_id = stream.current_event.key.decode()
        try:
            readings = parse_batch(raw)
            watch = tile_watch(tile_id)
        except Exception as error:
            await dead_letter("rain", rain_tiles_topic, raw, error)
            continue
        for reading in readings:
            try:
                step_before = watch.step_end_s
                statuses = watch.add(reading)
            except Exception as error:
                await dead_letter("rain", rain_tiles_topic, reading.to_json(), error)
                continue
            if reading.station in watch.accumulators:
                gauge_table[f"{tile_id}/{reading.station}"] = watch.accumulators[reading.station].state()
            if watch.step_end_s != step_before:
                tile_table[tile_id] = watch.state()
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
            warnings = district_warnings(district)
            for sighting in record.flooding:
                warnings.add_flooding(sighting)
            alerts = warnings.update(record.status) if record.status is not None else []
            district_table[district] = warnings.state(district)
        except Exception as error:
            await dead_letter("rain", rain_districts_topic, raw, error)
            continue
        for alert in alerts:
            await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())
