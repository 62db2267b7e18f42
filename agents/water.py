"""Water agent: GB 3838 exceedance with a persistence rule, and the water screen -> Alerts.

A record on ``readings.water`` is a batch of one partition's readings (the bridge's pass). The agent
takes the records that arrive together and runs their readings at once through the water screen
(models/water_screen.py, the one the evaluations run) and the limit rule's array form
(models/persistence.py ``PersistenceArrays``, equal to ``step`` reading by reading). Each sensor's
row is checkpointed as one entry of the Faust table ``water_state`` (agents/checkpoint.py), so it
survives a worker restart; the bridge puts a sensor's readings in one partition, and its entry goes
to the same changelog partition (``SensorStateTable``).
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

from agents.app import SETTINGS, alerts_topic, app, dead_letter, readings_topics, water_trace_topic
from agents.checkpoint import CheckpointedTable
from models.persistence import CODES, Change, PersistenceArrays, PersistenceState
from models.standards import Limit, class_limits
from models.water_screen import RAISED, rounds
from pipeline.city import City, default_city, load_toml
from pipeline.schemas import Alert, Category, Kind, Reading, WaterTraceRecord
from pipeline.topics import reading_partition
from pipeline.water_screen import new_screen, water_label, water_parameters
from pipeline.water_tracing import POLLUTANTS, by_basin

PERSISTENCE_READINGS = SETTINGS.water.persistence_readings


def station_limits(city: City, gb3838: Mapping, default_class: str) -> dict[str, dict[str, Limit]]:
    """Limits per station id, by the station's target class."""
    return {
        station.id: class_limits(gb3838, station.target_class or default_class) for station in city.stations.values()
    }


def limit_alert(
    reading: Reading, parameter: str, limit: Limit, severity: float | None, change: Change, persistence: int, city: City
) -> Alert:
    """The alert of a change of the limit rule for one parameter of ``reading``."""
    station = city.stations[reading.station]
    quantity = reading.values[parameter]
    label = water_label(parameter)
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
        category=Category.water,
        rule="gb3838_exceedance",
        sensor_id=reading.sensor_id,
        station=reading.station,
        district=reading.district,
        township=station.township,
        area=station.river,
        ts=reading.ts,
        parameter=parameter,
        value=quantity.value,
        unit=quantity.unit,
        limit=limit.bound,
        severity=severity or 0.0,
        message=message,
        resolved=change is Change.cleared,
    )


def screen_alert(reading: Reading, parameter: str, z: float, evidence: float, moved: list[str], city: City) -> Alert:
    """The water screen's early alert: raised before any standard limit is crossed, so it is an
    early (blue) warning; the limit rule's alerts for the same parameter escalate the same incident."""
    station = city.stations[reading.station]
    quantity = reading.values[parameter]
    limits = LIMITS[reading.station]
    others = [water_label(p) for p in moved if p != parameter]
    along = f", with {', '.join(others)} off too" if others else ""
    return Alert(
        alert_id=f"{reading.sensor_id}:{parameter}:{int(reading.ts.timestamp() * 1000)}:statistical",
        category=Category.water,
        rule="statistical",
        sensor_id=reading.sensor_id,
        station=reading.station,
        district=reading.district,
        township=station.township,
        area=station.river,
        ts=reading.ts,
        parameter=parameter,
        value=quantity.value,
        unit=quantity.unit,
        limit=limits[parameter].bound if parameter in limits else 0.0,
        severity=0.1,
        message=(
            f"{station.name}: {water_label(parameter)} {quantity.value:.3g} {quantity.unit} is {abs(z):.1f} sd from "
            f"normal for this hour{along} (evidence {evidence:.0f}; early warning: no limit crossed yet)"
        ),
    )


CITY = default_city()
LIMITS = station_limits(CITY, load_toml("gb3838"), SETTINGS.water.default_class)


COLUMNS = list(water_parameters())
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
    values over ``COLUMNS`` (NaN: not in the reading), times (epoch seconds)."""

    readings: list[dict]
    keys: list[str]
    stations: np.ndarray
    values: np.ndarray
    ts_s: np.ndarray


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
    return WaterBatch(readings, keys, np.array(stations, np.int64), matrix, np.array(ts_s, float)), bad


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


SCREEN = new_screen(SETTINGS.water.screen, COLUMNS, utc_offset_h=CITY.utc_offset_h)
LIMIT_RULE = PersistenceArrays(len(COLUMNS), PERSISTENCE_READINGS)


def load_row(key: str, checkpoint: Mapping | None, reading: dict) -> int:
    """The sensor's row from its checkpoint; a new sensor screens the parameters of ``reading``."""
    checkpoint = checkpoint or {}
    i = SCREEN.load(key, checkpoint.get("screen"), sorted(reading["values"]))
    LIMIT_RULE.load(i, {COLUMN[p]: PersistenceState(*s) for p, s in checkpoint.get("persistence", {}).items()})
    return i


def dump_row(key: str, row: int) -> dict:
    persistence = {
        COLUMNS[j]: [s.bad_run, s.good_run, s.active, s.reported_severity] for j, s in LIMIT_RULE.states(row).items()
    }
    return {"persistence": persistence, "screen": SCREEN.state(key)}


class SensorStateTable(faust.Table):
    """A table keyed by sensor id whose changelog partition is the sensor's partition on
    ``readings.*`` (``reading_partition``, where the bridge sends its readings), computed from the
    key rather than taken from the event being processed: the agent writes it after screening
    several records at once, outside any one event, and a worker that owns a readings partition
    still owns its sensors' state."""

    def partition_for_key(self, key: str) -> int:
        return reading_partition(key, self.partitions)


state_table = app.tables.add(
    SensorStateTable(
        app, name="water_state", default=None, beacon=app.tables.beacon, partitions=SETTINGS.kafka.partitions
    )
)
rows = CheckpointedTable(
    app, state_table, load_row, dump_row, every_s=SETTINGS.water.checkpoint_s, on_forget=SCREEN.forget
)


def screen_batch(batch: WaterBatch, city: City) -> tuple[list[Alert], set[str]]:
    """The batch through the screen and the limit rule: its alerts (in reading order) and the sensors
    that raised or cleared one."""
    row_of = np.array([rows.get(key, reading) for key, reading in zip(batch.keys, batch.readings)], np.int64)
    verdicts = SCREEN.step_many(row_of, batch.values, batch.ts_s)
    severity = severity_many(batch.stations, batch.values)
    checked = np.isfinite(batch.values) & ~np.isneginf(severity)
    limit_change = np.zeros(batch.values.shape, np.int8)
    for at in rounds(row_of):  # a sensor's readings in order, one per round
        limit_change[at] = LIMIT_RULE.step(row_of[at], severity[at], checked[at])
    alerts: list[Alert] = []
    alerted: set[str] = set()
    for n in np.flatnonzero((verdicts.change == RAISED) | limit_change.any(axis=1)):
        reading = Reading.model_validate(batch.readings[n])
        top = int(verdicts.top[n])
        if verdicts.change[n] == RAISED and top >= 0 and COLUMNS[top] in reading.values:
            moved = [COLUMNS[j] for j in np.flatnonzero(verdicts.outlier[n])]
            alerts.append(
                screen_alert(reading, COLUMNS[top], float(verdicts.z[n, top]), float(verdicts.evidence[n]), moved, city)
            )
        for parameter in reading.values:
            code = limit_change[n, COLUMN[parameter]]
            if code:
                limit = LIMITS[reading.station][parameter]
                alerts.append(
                    limit_alert(
                        reading,
                        parameter,
                        limit,
                        limit.severity(reading.values[parameter].value),
                        CODES[int(code)],
                        PERSISTENCE_READINGS,
                        city,
                    )
                )
        alerted.add(reading.sensor_id)
    alerted.update(
        key for key, change in zip(batch.keys, verdicts.change) if change
    )  # the screen cleared: no alert, but a state to keep
    return alerts, alerted


TRACED_COLUMNS = [COLUMN[p] for p in POLLUTANTS]


def trace_record(batch: WaterBatch, alerts: list[Alert]) -> WaterTraceRecord:
    """What tracing needs of the batch: the pollutants it fits as columns, and the alerts."""
    columns = batch.values[:, TRACED_COLUMNS]
    values = {p: np.where(np.isnan(columns[:, j]), None, columns[:, j]).tolist() for j, p in enumerate(POLLUTANTS)}
    # built, not validated: the values come from validated readings, and validating every number costs
    return WaterTraceRecord.model_construct(
        stations=[r["station"] for r in batch.readings],
        ts_s=batch.ts_s.tolist(),
        values=values,
        alerts=alerts,
        sightings=[],
    )


def screen_records(
    records: list[bytes],
) -> tuple[list[str], list[Alert], set[str], list[tuple[bytes, Exception]], WaterTraceRecord | None]:
    """Batch records through the bank as one batch: (sensor ids, alerts, the sensors that raised or
    cleared one, what could not be read with why, what tracing needs of them)."""
    batch, bad = decode_batch(records, CITY)
    alerts, alerted = screen_batch(batch, CITY)
    return batch.keys, alerts, alerted, bad, trace_record(batch, alerts) if batch.keys else None


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
                    results.append(([], [], set(), [(raw, error)], None))
        now_s = time.monotonic()
        for keys, alerts, alerted, bad, traced in results:
            for raw, error in bad:  # never a silent drop: each with why
                await dead_letter("water", readings_topics[Kind.water], raw, error)
            for key in set(keys):
                rows.changed(key, now_s, force=key in alerted)  # an alert's state must survive a crash
            if traced is not None:  # the readings before the alerts they raised: tracing sees them first
                for basin, part in by_basin(traced, CITY).items():
                    await water_trace_topic.send(key=basin.encode(), value=part.to_json())
            for alert in alerts:
                await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())
