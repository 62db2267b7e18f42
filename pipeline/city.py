"""The city model from config/city.toml: districts, stations and the sensor registry."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipeline.schemas import Kind
from pipeline.settings import CONFIG_DIR


@dataclass(frozen=True)
class Station:
    id: str
    name: str
    district: str
    township: str = ""
    river: str | None = None
    river_km: float | None = None
    target_class: str | None = None


@dataclass(frozen=True)
class Sensor:
    id: str
    kind: Kind
    station: Station

    @property
    def district(self) -> str:
        return self.station.district


@dataclass(frozen=True)
class City:
    districts: dict[str, str]
    stations: dict[str, Station]
    sensors: dict[str, Sensor]


def load_city(path: Path = CONFIG_DIR / "city.toml") -> City:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    districts = {d["id"]: d["name"] for d in raw.get("districts", [])}
    stations = {s["id"]: Station(**s) for s in raw.get("stations", [])}
    sensors = {}
    for s in raw.get("sensors", []):
        if s["station"] not in stations:
            raise ValueError(f"{path}: sensor {s['id']} names unknown station {s['station']}")
        sensors[s["id"]] = Sensor(id=s["id"], kind=Kind(s["kind"]), station=stations[s["station"]])
    for st in stations.values():
        if st.district not in districts:
            raise ValueError(f"{path}: station {st.id} names unknown district {st.district}")
    return City(districts=districts, stations=stations, sensors=sensors)


@cache
def default_city() -> City:
    return load_city()


@cache
def load_toml(name: str) -> dict:
    """A config data file (e.g. 'gb3838', 'parameters', 'routing') as plain data."""
    with open(CONFIG_DIR / f"{name}.toml", "rb") as f:
        return tomllib.load(f)
