"""The city model from config (data, not code): districts, townships, the river network, monitoring
stations, pollution sources, drinking-water intakes, interception-dam sites, rain gauges on a grid,
crowd zones, roads and cameras; and the sensor registry derived from them.

Sensors: one multi-parameter water sensor per station (``wq-<station>``), one rain gauge per grid
cell (``rg-<col>-<row>``), one people counter per zone (``pc-<zone>``) and every camera. Each sensor
belongs to a *site* (station, gauge, zone or road): the ``station`` field of its readings.

``scale`` > 1 clones the whole city (ids suffixed ``.2``, ``.3``, ...) for load tests: scale 500 has
~15,000 stations.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

from models.river import RiverNetwork, RiverSpec
from pipeline.schemas import Kind
from pipeline.settings import CONFIG_DIR, load_settings


@dataclass(frozen=True, kw_only=True)
class Site:
    id: str
    name: str
    district: str
    township: str = ""


@dataclass(frozen=True, kw_only=True)
class RiverSite(Site):
    river: str
    river_km: float

    @property
    def point(self) -> tuple[str, float]:
        return (self.river, self.river_km)


@dataclass(frozen=True, kw_only=True)
class Station(RiverSite):
    """A water-quality monitoring section with its GB 3838 target class; ``treated`` marks a treated-
    water station (a waterworks outlet, a point in the supply network): it reports like any station,
    but it is not on the river itself, so the simulator and the river's tracing leave it out."""

    target_class: str = "III"
    treated: bool = False


@dataclass(frozen=True, kw_only=True)
class Source(RiverSite):
    """A potential pollution source: sewage_plant, factory, outfall or vessel."""

    type: str
    subtype: str = ""
    enterprise: str = ""


@dataclass(frozen=True, kw_only=True)
class Intake(RiverSite):
    serves_population: int = 0


@dataclass(frozen=True, kw_only=True)
class Dam(RiverSite):
    """An interception-dam (截污坝) site usable in an emergency."""


@dataclass(frozen=True, kw_only=True)
class Gauge(Site):
    x_km: float
    y_km: float


@dataclass(frozen=True, kw_only=True)
class Zone(Site):
    """A crowd zone (pedestrian street, square) with its walkable area and access."""

    area_m2: float
    x_km: float = 0.0
    y_km: float = 0.0
    entrances: tuple[str, ...] = ()
    metro_stations: tuple[str, ...] = ()
    passages: tuple[str, ...] = ()  # malls and passages that can be opened to relieve the zone
    peak_persons: int = 0  # typical busy-day peak present at once


@dataclass(frozen=True, kw_only=True)
class Road(Site):
    x_km: float = 0.0
    y_km: float = 0.0
    low_point: bool = False


@dataclass(frozen=True, kw_only=True)
class RiskPoint(Site):
    """A place a rainstorm endangers (slope, underpass, small watershed, river bank), with who answers for it."""

    type: str
    x_km: float
    y_km: float
    responsible: str = ""
    rescue_team: str = ""


@dataclass(frozen=True, kw_only=True)
class Camera(Site):
    """An edge-AI camera watching a site: a river station, a zone or a road."""

    target: str  # station | zone | road
    site: str
    detects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sensor:
    id: str
    kind: Kind
    site: str
    district: str
    township: str = ""


@dataclass(frozen=True)
class District:
    id: str
    name: str
    x_km: float = 0.0
    y_km: float = 0.0


@dataclass
class City:
    districts: dict[str, District]
    townships: dict[str, Site]
    rivers: dict[str, RiverSpec]
    river_names: dict[str, str]
    stations: dict[str, Station]
    sources: dict[str, Source]
    intakes: dict[str, Intake]
    dams: dict[str, Dam]
    gauges: dict[str, Gauge]
    zones: dict[str, Zone]
    roads: dict[str, Road]
    cameras: dict[str, Camera]
    risk_points: dict[str, RiskPoint] = field(default_factory=dict)
    sensors: dict[str, Sensor] = field(default_factory=dict)
    network: RiverNetwork | None = None
    basins: dict[str, str] = field(default_factory=dict)
    utc_offset_h: float = 8.0  # local time of the city (Chongqing: UTC+8, no daylight saving)

    def local_hour(self, ts) -> float:
        """Local hour of day (0-24) of an aware datetime."""
        return ((ts.timestamp() + self.utc_offset_h * 3600) % 86400) / 3600

    def __post_init__(self):
        self.network = RiverNetwork(self.rivers)
        self.sensors = derive_sensors(self)
        # river -> the river its water ends in (the basin's id): a plume flows on from a river into
        # the river it joins, so tracing looks across a basin and never beyond it
        self.basins = {}
        for river_id in self.rivers:
            basin, seen = river_id, set()
            while (mouth := self.rivers[basin].mouth) is not None and mouth[0] in self.rivers and basin not in seen:
                seen.add(basin)
                basin = mouth[0]
            self.basins[river_id] = basin

    @cached_property
    def basin_sites(self) -> dict[str, tuple[list[Source], list[Station]]]:
        """Each basin's pollution sources and river stations (treated-water stations are off the river)."""
        sites: dict[str, tuple[list[Source], list[Station]]] = {basin: ([], []) for basin in set(self.basins.values())}
        for source in self.sources.values():
            sites[self.basins[source.river]][0].append(source)
        for station in self.stations.values():
            if not station.treated:
                sites[self.basins[station.river]][1].append(station)
        return sites

    def station_basin(self, station_id: str) -> str:
        """The basin of a station (its own id when the station is unknown: it is alone)."""
        station = self.stations.get(station_id)
        return self.basins[station.river] if station is not None else station_id

    def site_name(self, site_id: str) -> str:
        for table in (
            self.stations,
            self.gauges,
            self.zones,
            self.roads,
            self.sources,
            self.intakes,
            self.dams,
            self.risk_points,
            self.districts,
            self.townships,
        ):
            if site_id in table:
                return table[site_id].name
        return site_id


def water_sensor_id(station_id: str) -> str:
    return f"wq-{station_id}"


def counter_sensor_id(zone_id: str) -> str:
    return f"pc-{zone_id}"


def derive_sensors(city: City) -> dict[str, Sensor]:
    sensors = [Sensor(water_sensor_id(s.id), Kind.water, s.id, s.district, s.township) for s in city.stations.values()]
    sensors += [Sensor(g.id, Kind.rain, g.id, g.district, g.township) for g in city.gauges.values()]
    sensors += [Sensor(counter_sensor_id(z.id), Kind.crowd, z.id, z.district, z.township) for z in city.zones.values()]
    sensors += [Sensor(c.id, Kind.camera, c.site, c.district, c.township) for c in city.cameras.values()]
    return {s.id: s for s in sensors}


def _grid_gauges(grid: dict, districts: dict[str, District]) -> dict[str, Gauge]:
    """Gauges on a regular grid; each belongs to the district with the nearest centre."""
    gauges = {}
    x0, y0 = grid["origin_km"]
    for col in range(grid["nx"]):
        for row in range(grid["ny"]):
            x, y = x0 + col * grid["spacing_km"], y0 + row * grid["spacing_km"]
            district = min(districts.values(), key=lambda d: math.hypot(d.x_km - x, d.y_km - y))
            gid = f"rg-{col:02d}-{row:02d}"
            gauges[gid] = Gauge(id=gid, name=f"雨量站 {gid}", district=district.id, x_km=x, y_km=y)
    return gauges


def _river(raw: dict) -> RiverSpec:
    reaches = raw["reaches"]
    mouth = raw.get("mouth")
    return RiverSpec(
        id=raw["id"],
        lengths_km=tuple(float(r["length_km"]) for r in reaches),
        velocities_mps=tuple(float(r["velocity_mps"]) for r in reaches),
        discharges_m3s=tuple(float(r["discharge_m3s"]) for r in reaches),
        mouth=(mouth["river"], float(mouth["km"])) if mouth else None,
        dispersion_m2s=float(raw.get("dispersion_m2s", 10.0)),
    )


def _tuples(raw: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def parse_city(raw: dict) -> City:
    districts = {d["id"]: District(d["id"], d["name"], *d.get("centre_km", (0.0, 0.0))) for d in raw["districts"]}
    city = City(
        districts=districts,
        townships={t["id"]: Site(**t) for t in raw.get("townships", [])},
        rivers={r["id"]: _river(r) for r in raw.get("rivers", [])},
        river_names={r["id"]: r["name"] for r in raw.get("rivers", [])},
        stations={s["id"]: Station(**s) for s in raw.get("stations", [])},
        sources={s["id"]: Source(**s) for s in raw.get("sources", [])},
        intakes={s["id"]: Intake(**s) for s in raw.get("intakes", [])},
        dams={s["id"]: Dam(**s) for s in raw.get("dams", [])},
        gauges=_grid_gauges(raw["rain_grid"], districts) if "rain_grid" in raw else {},
        zones={z["id"]: Zone(**_tuples(z)) for z in raw.get("zones", [])},
        roads={r["id"]: Road(**r) for r in raw.get("roads", [])},
        cameras={c["id"]: Camera(**_tuples(c)) for c in raw.get("cameras", [])},
        risk_points={r["id"]: RiskPoint(**r) for r in raw.get("risk_points", [])},
        utc_offset_h=float(raw.get("utc_offset_h", 8.0)),
    )
    check(city)
    return city


def check(city: City) -> None:
    """Every reference points at something that exists; every river site lies on its river."""
    problems = []
    river_sites = [*city.stations.values(), *city.sources.values(), *city.intakes.values(), *city.dams.values()]
    sites = [
        *river_sites,
        *city.gauges.values(),
        *city.zones.values(),
        *city.roads.values(),
        *city.cameras.values(),
        *city.risk_points.values(),
    ]
    for site in sites:
        if site.district not in city.districts:
            problems.append(f"{site.id}: unknown district {site.district!r}")
        if site.township and site.township not in city.townships:
            problems.append(f"{site.id}: unknown township {site.township!r}")
    for site in river_sites:
        river = city.rivers.get(site.river)
        if river is None or not 0 <= site.river_km <= river.length_km:
            problems.append(f"{site.id}: {site.river} km {site.river_km} is not on a known river")
    targets = {"station": city.stations, "zone": city.zones, "road": city.roads}
    for camera in city.cameras.values():
        if camera.site not in targets.get(camera.target, {}):
            problems.append(f"{camera.id}: watches unknown {camera.target} {camera.site!r}")
    for township in city.townships.values():
        if township.district not in city.districts:
            problems.append(f"township {township.id}: unknown district {township.district!r}")
    if problems:
        raise ValueError("city model: " + "; ".join(problems))


def scaled(raw: dict, scale: int) -> dict:
    """The city cloned ``scale`` times (ids suffixed .2, .3, ...; rivers joined within each clone)."""
    if scale <= 1:
        return raw
    out = {k: list(v) if isinstance(v, list) else v for k, v in raw.items()}
    id_refs = ("river", "site")
    for copy in range(2, scale + 1):
        suffix = f".{copy}"
        for table in ("rivers", "stations", "sources", "intakes", "dams", "zones", "roads", "cameras"):
            for item in raw.get(table, []):
                clone = {**item, "id": item["id"] + suffix}
                for ref in id_refs:
                    if ref in clone:
                        clone[ref] = clone[ref] + suffix
                if "mouth" in clone:
                    clone["mouth"] = {**clone["mouth"], "river": clone["mouth"]["river"] + suffix}
                out[table].append(clone)
    if "rain_grid" in raw:  # more gauges over a wider area, at most the municipality's (max_gauges)
        grid = dict(raw["rain_grid"])
        gauges = min(grid["nx"] * grid["ny"] * scale, grid.get("max_gauges", math.inf))
        grow = math.sqrt(gauges / (grid["nx"] * grid["ny"]))
        grid["nx"], grid["ny"] = round(grid["nx"] * grow), round(grid["ny"] * grow)
        out["rain_grid"] = grid
    return out


def load_city(path: Path = CONFIG_DIR / "city.toml", scale: int = 1) -> City:
    with open(path, "rb") as f:
        return parse_city(scaled(tomllib.load(f), scale))


@cache
def default_city() -> City:
    """The city named by the settings (``city.file`` in config/, at ``city.scale``)."""
    settings = load_settings().city
    return load_city(CONFIG_DIR / settings.file, settings.scale)


@cache
def load_toml(name: str) -> dict:
    """A config data file (e.g. 'gb3838', 'parameters', 'routing') as plain data."""
    with open(CONFIG_DIR / f"{name}.toml", "rb") as f:
        return tomllib.load(f)


__all__ = [
    "City",
    "Sensor",
    "Station",
    "Source",
    "Intake",
    "Dam",
    "Gauge",
    "Zone",
    "Road",
    "Camera",
    "District",
    "load_city",
    "default_city",
    "load_toml",
]
