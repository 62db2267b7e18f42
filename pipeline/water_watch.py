"""The water watch: batches of water readings -> GB 3838 exceedance and early screen alerts.

A record on ``readings.water`` is a batch of one partition's readings (the bridge's pass). The water
agent hands ``WaterWatch.screen`` the records that arrive together, and their readings run at once
through the water screen (models/water_screen.py, the one the evaluations run) and the limit rule's
array form (models/persistence.py ``PersistenceArrays``, equal to ``step`` reading by reading) over
each station's limits (models/limit_arrays.py). A sensor's row of both is restored from, and
written to, a checkpoint (``load_row`` / ``dump_row``: plain data, for the agent's table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import numpy as np
import orjson

from models.batch_rounds import rounds
from models.limit_arrays import LimitArrays
from models.persistence import CODES, Change, PersistenceArrays, PersistenceState
from models.standards import Limit, class_limits
from models.water_verdicts import RAISED
from pipeline.city import City
from pipeline.schemas import Alert, Category, Reading, WaterTraceRecord
from pipeline.settings import WaterSettings
from pipeline.trace_stream import by_basin
from pipeline.water_screen import new_screen, water_label, water_parameters
from pipeline.water_tracing import POLLUTANTS

RowOf = Callable[[str, dict], int]  # a sensor's row in the watch, given the reading it is needed for


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


def screen_alert(
    reading: Reading, parameter: str, z: float, evidence: float, moved: list[str], city: City, limits: Mapping
) -> Alert:
    """The water screen's early alert: raised before any standard limit is crossed, so it is an
    early (blue) warning; the limit rule's alerts for the same parameter escalate the same incident.
    ``limits``: the station's, by parameter."""
    station = city.stations[reading.station]
    quantity = reading.values[parameter]
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


@dataclass
class WaterBatch:
    """A batch record's readings as arrays: JSON as forwarded (for alerts), sensor ids, station rows,
    values over the watch's columns (NaN: not in the reading), times (epoch seconds)."""

    readings: list[dict]
    keys: list[str]
    stations: np.ndarray
    values: np.ndarray
    ts_s: np.ndarray


@dataclass
class Screened:
    """What screening some records gave: their sensor ids, alerts (in reading order), the sensors
    that raised or cleared one (their state must survive a crash), what could not be read with why,
    and what tracing needs of them by river basin (the readings before the alerts they raised)."""

    keys: list[str] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    alerted: set[str] = field(default_factory=set)
    bad: list[tuple[bytes, Exception]] = field(default_factory=list)
    traced: dict[str, WaterTraceRecord] = field(default_factory=dict)


class WaterWatch:
    """Every water sensor's screen and limit rule, as rows of arrays; see the module's docstring."""

    def __init__(self, city: City, gb3838: Mapping, settings: WaterSettings):
        self.city = city
        self.persistence = settings.persistence_readings
        self.limits = station_limits(city, gb3838, settings.default_class)
        self.columns = list(water_parameters())
        self.column = {p: j for j, p in enumerate(self.columns)}
        self.station_row = {station_id: k for k, station_id in enumerate(city.stations)}
        self.bounds = LimitArrays([self.limits[station_id] for station_id in self.station_row], self.columns)
        self.screen_bank = new_screen(settings.screen, self.columns, utc_offset_h=city.utc_offset_h)
        self.limit_rule = PersistenceArrays(len(self.columns), self.persistence)
        self.traced_columns = [self.column[p] for p in POLLUTANTS]
        self._columns_of = lru_cache(maxsize=10_000)(self._columns_for)  # a few parameter lists are sent

    # --- rows and their checkpoints -----------------------------------------------------------------
    def load_row(self, key: str, checkpoint: Mapping | None, reading: dict) -> int:
        """The sensor's row from its checkpoint; a new sensor screens the parameters of ``reading``."""
        checkpoint = checkpoint or {}
        i = self.screen_bank.load(key, checkpoint.get("screen"), sorted(reading["values"]))
        persisted = checkpoint.get("persistence", {})
        self.limit_rule.load(i, {self.column[p]: PersistenceState(*s) for p, s in persisted.items()})
        return i

    def dump_row(self, key: str, row: int) -> dict:
        persistence = {
            self.columns[j]: [s.bad_run, s.good_run, s.active, s.reported_severity]
            for j, s in self.limit_rule.states(row).items()
        }
        return {"persistence": persistence, "screen": self.screen_bank.state(key)}

    def forget(self) -> None:
        """Drop every row (partitions moved: rows are loaded again from their checkpoints)."""
        self.screen_bank.forget()

    # --- records ------------------------------------------------------------------------------------
    def screen(self, records: list[bytes], row_of: RowOf) -> list[Screened]:
        """Records through the watch as one batch; if that fails (a bug), record by record, so that
        it costs only the record it is in (that one is then in ``bad``)."""
        try:
            return [self.screen_records(records, row_of)]
        except Exception:
            results = []
            for raw in records:
                try:
                    results.append(self.screen_records([raw], row_of))
                except Exception as error:
                    results.append(Screened(bad=[(raw, error)]))
            return results

    def screen_records(self, records: list[bytes], row_of: RowOf) -> Screened:
        """Batch records through the screen and the limit rule as one batch."""
        batch, bad = self.decode(records)
        alerts, alerted = self.screen_batch(batch, row_of)
        traced = by_basin(self.trace_record(batch, alerts), self.city) if batch.keys else {}
        return Screened(batch.keys, alerts, alerted, bad, traced)

    def decode(self, records: list[bytes]) -> tuple[WaterBatch, list[tuple[bytes, Exception]]]:
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
                columns = self._columns_of(tuple(values))
                numbers = [float(q["value"]) for q in values.values()]
                station = self.station_row[r["station"]]
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
        matrix = np.full((len(readings), len(self.columns)), np.nan)
        matrix[np.repeat(np.arange(len(readings)), counts), column_list] = value_list
        return WaterBatch(readings, keys, np.array(stations, np.int64), matrix, np.array(ts_s, float)), bad

    def _columns_for(self, names: tuple[str, ...]) -> tuple[int, ...]:
        """The columns of a reading's parameters, in its order (KeyError for a parameter not screened)."""
        return tuple(self.column[p] for p in names)

    def screen_batch(self, batch: WaterBatch, row_of: RowOf) -> tuple[list[Alert], set[str]]:
        """The batch through the screen and the limit rule: its alerts (in reading order) and the sensors
        that raised or cleared one."""
        row = np.array([row_of(key, reading) for key, reading in zip(batch.keys, batch.readings)], np.int64)
        verdicts = self.screen_bank.step_many(row, batch.values, batch.ts_s)
        severity = self.bounds.severity(batch.stations, batch.values)
        checked = np.isfinite(batch.values) & ~np.isneginf(severity)
        limit_change = np.zeros(batch.values.shape, np.int8)
        for at in rounds(row):  # a sensor's readings in order, one per round
            limit_change[at] = self.limit_rule.step(row[at], severity[at], checked[at])
        alerts: list[Alert] = []
        alerted: set[str] = set()
        for n in np.flatnonzero((verdicts.change == RAISED) | limit_change.any(axis=1)):
            reading = Reading.model_validate(batch.readings[n])
            top = int(verdicts.top[n])
            if verdicts.change[n] == RAISED and top >= 0 and self.columns[top] in reading.values:
                moved = [self.columns[j] for j in np.flatnonzero(verdicts.outlier[n])]
                z, evidence = float(verdicts.z[n, top]), float(verdicts.evidence[n])
                limits = self.limits[reading.station]
                alerts.append(screen_alert(reading, self.columns[top], z, evidence, moved, self.city, limits))
            alerts += self._limit_alerts(reading, limit_change[n])
            alerted.add(reading.sensor_id)
        alerted.update(
            key for key, change in zip(batch.keys, verdicts.change) if change
        )  # the screen cleared: no alert, but a state to keep
        return alerts, alerted

    def _limit_alerts(self, reading: Reading, codes: np.ndarray) -> Iterator[Alert]:
        """The limit rule's alerts of one reading (``codes``: its change code per column)."""
        for parameter in reading.values:
            code = codes[self.column[parameter]]
            if code:
                limit = self.limits[reading.station][parameter]
                severity = limit.severity(reading.values[parameter].value)
                yield limit_alert(reading, parameter, limit, severity, CODES[int(code)], self.persistence, self.city)

    def trace_record(self, batch: WaterBatch, alerts: list[Alert]) -> WaterTraceRecord:
        """What tracing needs of the batch: the pollutants it fits as columns, and the alerts."""
        columns = batch.values[:, self.traced_columns]
        values = {p: np.where(np.isnan(columns[:, j]), None, columns[:, j]).tolist() for j, p in enumerate(POLLUTANTS)}
        # built, not validated: the values come from validated readings, and validating every number costs
        return WaterTraceRecord.model_construct(
            stations=[r["station"] for r in batch.readings],
            ts_s=batch.ts_s.tolist(),
            values=values,
            alerts=alerts,
            sightings=[],
        )


def _readings_of(records: list[bytes], bad: list[tuple[bytes, Exception]]) -> Iterator[dict]:
    for raw in records:
        try:
            readings = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            bad.append((raw, error))
            continue
        yield from readings if isinstance(readings, list) else [readings]
