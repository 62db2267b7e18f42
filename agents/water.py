"""Water agent: GB 3838 exceedance with a persistence rule, and the statistical screen -> Alerts.

A record on ``readings.water`` is a batch of one partition's readings (the bridge's pass). The agent
takes the records that arrive together and screens their readings at once with a ``StationBank``
(models/station_bank.py): the limit rule and the statistical screen of every sensor as arrays,
giving what the one-reading forms below (``assess``, ``watch_reading``) give reading by reading.
Each sensor's row is checkpointed as one entry of the Faust table ``water_state``
(agents/checkpoint.py), so it survives a worker restart; the bridge puts a sensor's readings in one
partition, and its entry goes to the same changelog partition (``SensorStateTable``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import faust
import numpy as np
import orjson

from agents.app import SETTINGS, alerts_topic, app, dead_letter, readings_topics
from agents.checkpoint import CheckpointedTable
from models.persistence import Change, PersistenceState, step
from models.station_bank import CLEARED, RAISED, WORSENED, StationBank
from models.station_watch import StationWatch
from models.standards import Limit, class_limits
from pipeline.city import City, default_city, load_toml
from pipeline.schemas import Alert, Category, Kind, Reading
from pipeline.topics import reading_partition

PERSISTENCE_READINGS = SETTINGS.water.persistence_readings
CHANGES = {RAISED: Change.raised, WORSENED: Change.worsened, CLEARED: Change.cleared}


def station_limits(city: City, gb3838: Mapping, default_class: str) -> dict[str, dict[str, Limit]]:
    """Limits per station id, by the station's target class."""
    return {
        station.id: class_limits(gb3838, station.target_class or default_class)
        for station in city.stations.values()
    }


def limit_alert(reading: Reading, parameter: str, limit: Limit, severity: float | None, change: Change,
                persistence: int, city: City) -> Alert:
    """The alert of a change of the limit rule for one parameter of ``reading``."""
    station = city.stations[reading.station]
    quantity = reading.values[parameter]
    label = load_toml("parameters")["water"][parameter].get("label", parameter)
    if change is not Change.cleared:
        relation = "below" if limit.low is not None and quantity.value < limit.low else "above"
        running = f"for {persistence} readings running" if change is Change.raised else "and worsening"
        message = (
            f"{station.name}: {label} {quantity.value:.3g} {quantity.unit} {relation} the class "
            f"{station.target_class} limit {limit.bound:g} {running}"
        )
    else:
        message = f"{station.name}: {label} back within the class {station.target_class} limit"
    return Alert(
        alert_id=f"{reading.sensor_id}:{parameter}:{int(reading.ts.timestamp() * 1000)}",
        category=Category.water, rule="gb3838_exceedance", sensor_id=reading.sensor_id, station=reading.station,
        district=reading.district, township=station.township, area=station.river, ts=reading.ts, parameter=parameter,
        value=quantity.value, unit=quantity.unit, limit=limit.bound, severity=severity or 0.0, message=message,
        resolved=change is Change.cleared,
    )


def screen_alert(reading: Reading, parameter: str, z: float, city: City) -> Alert:
    """The statistical screen's early alert: raised before any standard limit is crossed, so it is
    an early (blue) warning; the limit rule's alerts for the same parameter escalate the same incident."""
    station = city.stations[reading.station]
    label = load_toml("parameters")["water"][parameter].get("label", parameter)
    quantity = reading.values[parameter]
    limits = LIMITS[reading.station]
    return Alert(
        alert_id=f"{reading.sensor_id}:{parameter}:{int(reading.ts.timestamp() * 1000)}:statistical",
        category=Category.water, rule="statistical", sensor_id=reading.sensor_id, station=reading.station,
        district=reading.district, township=station.township, area=station.river, ts=reading.ts, parameter=parameter,
        value=quantity.value, unit=quantity.unit, limit=limits[parameter].bound if parameter in limits else 0.0, severity=0.1,
        message=(f"{station.name}: {label} {quantity.value:.3g} {quantity.unit} is {z:.1f} robust sd from normal "
                 f"for this hour, with related parameters moving too (early warning: no limit crossed yet)"),
    )


def assess(
    reading: Reading,
    limits: Mapping[str, Limit],
    states: Mapping[str, PersistenceState],
    persistence: int,
    city: City,
) -> tuple[dict[str, PersistenceState], list[Alert]]:
    """The limit rule for one reading: new persistence states per parameter and the alerts raised or cleared."""
    new_states: dict[str, PersistenceState] = {}
    alerts: list[Alert] = []
    for parameter, quantity in reading.values.items():
        limit = limits.get(parameter)
        if limit is None:
            continue
        severity = limit.severity(quantity.value)
        new_states[parameter], change = step(states.get(parameter, PersistenceState()), severity, persistence)
        if change is not None:
            alerts.append(limit_alert(reading, parameter, limit, severity, change, persistence, city))
    return new_states, alerts


def watch_reading(reading: Reading, watch: StationWatch | None, city: City) -> tuple[StationWatch, Alert | None]:
    """The statistical screen for one reading: the (updated) watch, and an early alert when pollution is raised."""
    values = {p: q.value for p, q in reading.values.items()}
    watch = watch if watch is not None else StationWatch(sorted(values))
    verdict = watch.step(values, city.local_hour(reading.ts))
    alert = None
    if verdict.change == "raised" and verdict.parameter is not None:
        alert = screen_alert(reading, verdict.parameter, verdict.z, city)
    return watch, alert


CITY = default_city()
LIMITS = station_limits(CITY, load_toml("gb3838"), SETTINGS.water.default_class)


COLUMNS = sorted(load_toml("parameters")["water"])
COLUMN = {p: j for j, p in enumerate(COLUMNS)}
STATION_ROW = {station_id: k for k, station_id in enumerate(CITY.stations)}


def _limit_bounds(side: str) -> np.ndarray:
    """(stations, COLUMNS) of each station's low or high limit, NaN where it has none."""
    out = np.full((len(STATION_ROW), len(COLUMNS)), np.nan)
    for station_id, k in STATION_ROW.items():
        for p, limit in LIMITS[station_id].items():
            if p in COLUMN and getattr(limit, side) is not None:
                out[k, COLUMN[p]] = getattr(limit, side)
    return out


LOW, HIGH = _limit_bounds("low"), _limit_bounds("high")
HAS_LIMIT = ~np.isnan(LOW) | ~np.isnan(HIGH)


def severity_many(stations: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``Limit.severity`` for a batch: NaN within the limit, -inf where the station has no limit."""
    low, high = LOW[stations], HIGH[stations]
    with np.errstate(invalid="ignore", divide="ignore"):
        below = values < low
        above = ~below & (values > high)
        from_low = np.where(low > 0, np.minimum(1.0, (low - values) / low), 1.0)
        from_high = np.where(high > 0, np.minimum(1.0, (values - high) / high), 1.0)
    severity = np.where(below, from_low, np.where(above, from_high, np.nan))
    return np.where(HAS_LIMIT[stations], severity, -np.inf)


@dataclass
class WaterBatch:
    """A batch record's readings as arrays: JSON as forwarded (for alerts), sensor ids, station rows,
    values over ``COLUMNS`` (NaN: not in the reading), local hours."""

    readings: list[dict]
    keys: list[str]
    stations: np.ndarray
    values: np.ndarray
    hours: np.ndarray


def decode_batch(records: list[bytes], city: City) -> tuple[WaterBatch, list[tuple[bytes, Exception]]]:
    """The readings of batch records as one batch, and what could not be read (a reading's JSON
    or a whole record), each with why.

    Per reading only lists grow; the values matrix is filled at once. A batch's readings share a
    few parameter lists and timestamps (a station's samples, a reporting minute), each looked up once."""
    readings, keys, stations, ts_s, bad = [], [], [], [], []
    value_list, column_list, counts = [], [], []
    seconds: dict[str, float] = {}
    for r in _readings_of(records, bad):
        try:
            values = r["values"]
            columns = _columns_of(tuple(values))
            numbers = [float(q["value"]) for q in values.values()]
            station = STATION_ROW[r["station"]]
            ts = r["ts"]
            at_s = seconds.get(ts)
            if at_s is None:
                at_s = seconds[ts] = datetime.fromisoformat(ts).timestamp()
            key = r["sensor_id"]
        except Exception as error:  # the bridge validated it: this is a bug or a foreign record
            bad.append((orjson.dumps(r), error))
            continue
        readings.append(r)
        keys.append(key)
        stations.append(station)
        ts_s.append(at_s)
        value_list += numbers
        column_list += columns
        counts.append(len(columns))
    matrix = np.full((len(readings), len(COLUMNS)), np.nan)
    matrix[np.repeat(np.arange(len(readings)), counts), column_list] = value_list
    hours = ((np.array(ts_s, float) + city.utc_offset_h * 3600) % 86400) / 3600  # city.local_hour, vectorised
    return WaterBatch(readings, keys, np.array(stations, np.int64), matrix, hours), bad


def _readings_of(records: list[bytes], bad: list[tuple[bytes, Exception]]):
    for raw in records:
        try:
            readings = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            bad.append((raw, error))
            continue
        yield from readings if isinstance(readings, list) else [readings]


@lru_cache(maxsize=10_000)  # a few parameter lists are sent
def _columns_of(names: tuple[str, ...]) -> tuple[int, ...]:
    """The columns of a reading's parameters, in its order (KeyError for a parameter not in COLUMNS)."""
    return tuple(COLUMN[p] for p in names)


def load_row(key: str, checkpoint: Mapping | None, reading: dict) -> int:
    """The sensor's bank row from its checkpoint; a new sensor screens the parameters of ``reading``."""
    checkpoint = checkpoint or {}
    return BANK.load(key, checkpoint.get("watch"), checkpoint.get("persistence", {}), sorted(reading["values"]))


def dump_row(key: str, row: int) -> dict:
    watch, persistence = BANK.state(key)
    return {"persistence": persistence, "watch": watch}


BANK = StationBank(COLUMNS, limit_persistence=PERSISTENCE_READINGS)


class SensorStateTable(faust.Table):
    """A table keyed by sensor id whose changelog partition is the sensor's partition on
    ``readings.*`` (``reading_partition``, where the bridge sends its readings), computed from the
    key rather than taken from the event being processed: the agent writes it after screening
    several records at once, outside any one event, and a worker that owns a readings partition
    still owns its sensors' state."""

    def partition_for_key(self, key: str) -> int:
        return reading_partition(key, self.partitions)


state_table = app.tables.add(SensorStateTable(app, name="water_state", default=None, beacon=app.tables.beacon,
                                              partitions=SETTINGS.kafka.partitions))
rows = CheckpointedTable(app, state_table, load_row, dump_row, every_s=SETTINGS.water.checkpoint_s, on_forget=BANK.forget)


def screen_batch(batch: WaterBatch, city: City) -> tuple[list[Alert], set[str]]:
    """The batch through the bank: its alerts (in reading order) and the sensors that raised or cleared one."""
    row_of = np.array([rows.get(key, reading) for key, reading in zip(batch.keys, batch.readings)], np.int64)
    verdicts = BANK.step_many(row_of, batch.values, batch.hours, severity_many(batch.stations, batch.values))
    alerts: list[Alert] = []
    alerted: set[str] = set()
    for n in np.flatnonzero((verdicts.change == RAISED) | verdicts.limit_change.any(axis=1)):
        reading = Reading.model_validate(batch.readings[n])
        if verdicts.change[n] == RAISED and verdicts.best[n] >= 0:
            alerts.append(screen_alert(reading, COLUMNS[verdicts.best[n]], float(verdicts.z[n]), city))
        for parameter in reading.values:
            code = verdicts.limit_change[n, COLUMN[parameter]]
            if code:
                limit = LIMITS[reading.station][parameter]
                alerts.append(limit_alert(reading, parameter, limit, limit.severity(reading.values[parameter].value),
                                          CHANGES[int(code)], PERSISTENCE_READINGS, city))
        alerted.add(reading.sensor_id)
    alerted.update(key for key, change in zip(batch.keys, verdicts.change) if change)  # the screen cleared: no alert, but a state to keep
    return alerts, alerted


def screen_records(records: list[bytes]) -> tuple[list[str], list[Alert], set[str], list[tuple[bytes, Exception]]]:
    """Batch records through the bank as one batch: (sensor ids, alerts, the sensors that raised or
    cleared one, what could not be read with why)."""
    batch, bad = decode_batch(records, CITY)
    alerts, alerted = screen_batch(batch, CITY)
    return batch.keys, alerts, alerted, bad


TAKE_RECORDS, TAKE_WITHIN_S = 64, 0.02


@app.agent(readings_topics[Kind.water])
async def water(stream):
    # the records that arrive together (a bridge pass sends one per partition) are screened as one
    # batch: a round of the bank costs little more for 60 sensors than for 15
    async for records in stream.take(TAKE_RECORDS, within=TAKE_WITHIN_S):
        try:
            results = [screen_records(records)]
        except Exception:  # a bug: record by record, so that it costs only the record it is in
            results = []
            for raw in records:
                try:
                    results.append(screen_records([raw]))
                except Exception as error:
                    results.append(([], [], set(), [(raw, error)]))
        now_s = time.monotonic()
        for keys, alerts, alerted, bad in results:
            for raw, error in bad:  # never a silent drop: each with why
                await dead_letter("water", readings_topics[Kind.water], raw, error)
            for key in set(keys):
                rows.changed(key, now_s, force=key in alerted)  # an alert's state must survive a crash
            for alert in alerts:
                await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())
