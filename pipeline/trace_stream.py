"""Tracing from the stream: what ``water.trace`` has shown the tracing agent (agents/tracing.py), in event
time. Each station's window of the pollutants (``StationWindows``), the cameras' oil-sheen sightings,
and the looks waiting for their observation window (``TraceStream``); kept here, apart from the
agent, so they are tested without a broker. A look's fit is pipeline/water_tracing.py's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.city import City
from pipeline.schemas import Alert, CameraDetection, CameraSighting, Category, WaterTraceRecord
from pipeline.water_tracing import POLLUTANTS, TRACED_PARAMETERS, History, Scope, incident_scope

RETRACE_S = 1800.0  # an incident is traced again when it worsens, at most this often (event time)
STEP_S = 600.0  # water stations report every 10 minutes
SINK_WAIT_S = 30.0  # the rest of the city passed the window's end this long ago: the detecting station is silent
SETTLE_S = 10.0  # nothing streamed for this long: a replay stopped short of the window's end
MIN_CAMERA_CONFIDENCE = 0.6  # below this, sheen detections are mostly sun glint and foam
BASELINE_S = 24 * 3600  # history before the lookback: the stations' own baselines
REPORTING_S = 24 * 3600  # a station that reported within this before a detection is waited for by its looks
ORDER_GRACE_S = 5.0  # an incident's first look waits this long (wall clock) for an earlier detection still on its way


class StationWindows:
    """Each station's recent values of some parameters as they stream in, kept ``keep_s`` behind
    the station's newest reading (event time). Late readings are placed by time, repeats of a
    time keep the last; a reading more than ``keep_s`` before the newest is another time line (a
    replay of older data) and starts the station afresh, as the water screen does.

    >>> w = StationWindows(["cod"], keep_s=3600)
    >>> w.add(["a", "a", "b"], [600.0, 0.0, 0.0], {"cod": [2.0, 1.0, None]})
    >>> h = w.history("a", 0, 600)
    >>> h.t_s.tolist(), h.values["cod"].tolist(), w.latest_s("a"), w.latest_s("c")
    ([0.0, 600.0], [1.0, 2.0], 600.0, None)
    """

    def __init__(self, parameters: Sequence[str], keep_s: float):
        self.parameters = list(parameters)
        self.keep_s = keep_s
        self._rows: dict[str, dict[float, tuple]] = {}  # station: {t_s: values}
        self._latest: dict[str, float] = {}
        self.hold_from_s = math.inf  # rows from this time on are kept whatever their age (a look still needs them)

    def add(self, stations: Sequence[str], ts_s: Sequence[float], values: Mapping[str, Sequence[float | None]]) -> None:
        columns = [values.get(p) or [None] * len(stations) for p in self.parameters]
        for n, (station, t) in enumerate(zip(stations, ts_s)):
            if t < self._latest.get(station, -np.inf) - self.keep_s:  # another time line (a replay of older data)
                self._rows.pop(station)
                self._latest.pop(station)
            rows = self._rows.setdefault(station, {})
            rows[t] = tuple(np.nan if c[n] is None else c[n] for c in columns)
            if t > self._latest.get(station, -np.inf):
                self._latest[station] = t
            if len(rows) % 256 == 0:  # now and then, not per reading
                self._trim(station)

    def _trim(self, station: str) -> None:
        oldest = min(self._latest[station] - self.keep_s, self.hold_from_s)
        rows = self._rows[station]
        for t in [t for t in rows if t < oldest]:
            del rows[t]

    def latest_s(self, station: str) -> float | None:
        """The time of the station's newest reading, or None when it has sent none."""
        return self._latest.get(station)

    def history(self, station: str, since_s: float, until_s: float) -> History | None:
        """A copy of the station's readings in [since_s, until_s], in time order (None: none)."""
        rows = self._rows.get(station, {})
        times = sorted(t for t in rows if since_s <= t <= until_s)
        if not times:
            return None
        block = np.array([rows[t] for t in times], dtype=float).reshape(len(times), len(self.parameters))
        return History(np.array(times), {p: block[:, j] for j, p in enumerate(self.parameters)})


@dataclass
class Pending:
    """A look waiting for its observation window: the alert that asked for it, the window's end,
    the later looks' ends, and when (wall clock) the stream's newest reading first passed the end."""

    alert: Alert
    until_s: float
    later_s: tuple[float, ...] = ()
    passed_at: float | None = None
    asked_at: float = -math.inf  # wall clock of the alert (the first look waits ORDER_GRACE_S after it)


class TraceStream:
    """What ``water.trace`` has shown the tracing agent, in event time: each station's window of the
    pollutants, the cameras' oil-sheen sightings, the looks waiting for their observation window
    (an alert asks for one at each of ``looks_s`` after it), and each incident's last trace."""

    def __init__(self, city: City, looks_s: Sequence[float]):
        self.city, self.looks_s = city, sorted(looks_s)
        observe_s = self.looks_s[-1]
        self.scopes: dict[str, Scope] = {}
        lookback_s = max((self.scope(s).lookback_s for s, st in city.stations.items() if not st.treated), default=0.0)
        self.keep_s = lookback_s + BASELINE_S + observe_s
        self.windows = StationWindows(POLLUTANTS, self.keep_s)
        self.sightings: list[CameraDetection] = []
        self.pending: dict[str, Pending] = {}
        self.last_traced_s: dict[str, float] = {}
        self.newest_s = -np.inf  # the newest reading of any station
        self.started_s: float | None = None  # the oldest reading streamed since this worker started
        self.arrived_at = 0.0  # wall clock of the last record

    def scope(self, station: str) -> Scope:
        if station not in self.scopes:
            self.scopes[station] = incident_scope(self.city, station)
        return self.scopes[station]

    def add(self, record: WaterTraceRecord, now: float) -> list[Alert]:
        """Take a record in (``now``: wall clock); the alerts it carries that start a trace."""
        self.arrived_at = now
        if record.ts_s:
            # the windows keep what a waiting look needs, however far the stream has run on (a backlog)
            self.windows.hold_from_s = min(
                (
                    p.alert.ts.timestamp() - self.scope(p.alert.station).lookback_s - BASELINE_S
                    for p in self.pending.values()
                ),
                default=math.inf,
            )
            self.windows.add(record.stations, record.ts_s, record.values)
            self.newest_s = max(self.newest_s, max(record.ts_s))
            self.started_s = min(record.ts_s) if self.started_s is None else min(self.started_s, min(record.ts_s))
        if record.sightings:
            self.sightings = [s for s in self.sightings if s.ts.timestamp() >= self.newest_s - self.keep_s] + list(
                record.sightings
            )
        asked = []
        for alert in record.alerts:
            if alert.category is not Category.water or alert.resolved or alert.parameter not in TRACED_PARAMETERS:
                continue
            waiting = self.pending.get(alert.incident_key)
            if waiting is not None and alert.ts < waiting.alert.ts and self._no_look_yet(waiting):
                # an earlier detection that came later (a backlog: each station's partition at its own
                # pace): the incident is traced from where it was first seen
                del self.pending[alert.incident_key]
                self.last_traced_s.pop(alert.incident_key, None)
            last = self.last_traced_s.get(alert.incident_key)
            if alert.incident_key in self.pending or (last is not None and alert.ts.timestamp() - last < RETRACE_S):
                continue
            self.last_traced_s[alert.incident_key] = alert.ts.timestamp()
            ends = [alert.ts.timestamp() + s for s in self.looks_s]
            self.pending[alert.incident_key] = Pending(alert, ends[0], tuple(ends[1:]), asked_at=now)
            asked.append(alert)
        for p in self.pending.values():
            if p.passed_at is None and self.newest_s >= p.until_s:
                p.passed_at = now
        return asked

    def ready(self, now: float) -> list[Pending]:
        """The looks whose window the stream now holds, in order: the detecting station's, and every
        station's that reported in the day before the detection; or, for a silent station,
        SINK_WAIT_S after the rest of the city passed the window's end; or once the stream has been
        quiet for SETTLE_S past it (a replay that stopped). An incident's next look waits in
        ``pending`` in its place. A backlog that holds several looks makes each of them, the
        earliest first: the first answer is the one its first minutes of data give."""
        out = []
        for key, p in list(self.pending.items()):
            while p is not None and self._ready(p, now):
                out.append(p)
                p = (
                    Pending(p.alert, p.later_s[0], p.later_s[1:], now if self.newest_s >= p.later_s[0] else None)
                    if p.later_s
                    else None
                )
            if p is None:
                del self.pending[key]
            else:
                self.pending[key] = p
        return out

    def _no_look_yet(self, p: Pending) -> bool:
        return p.until_s == p.alert.ts.timestamp() + self.looks_s[0]

    def _ready(self, p: Pending, now: float) -> bool:
        if self._no_look_yet(p) and now - p.asked_at < ORDER_GRACE_S:
            return False
        return (
            self._observed(p)
            or (p.passed_at is not None and now - p.passed_at >= SINK_WAIT_S)
            or (now >= p.until_s and now - self.arrived_at >= SETTLE_S)
        )

    def _observed(self, p: Pending) -> bool:
        wanted_s = p.until_s - 2 * STEP_S  # a station's readings within two steps of the end: its own phase
        latest = [self.windows.latest_s(s) for s in self.scope(p.alert.station).stations]
        # every station that reported in the day before the detection: one whose partition lags (a
        # replay's backlog) is waited for; one silent since is let go SINK_WAIT_S after the rest
        reporting = [t for t in latest if t is not None and t >= p.alert.ts.timestamp() - REPORTING_S]
        first = self.windows.latest_s(p.alert.station)
        return first is not None and first >= wanted_s and all(t >= wanted_s for t in reporting)

    def histories(self, stations: Sequence[str], since_s: float, until_s: float) -> dict[str, History]:
        """Copies of the stations' windows (the stream goes on while a fit runs)."""
        return {s: h for s in stations if (h := self.windows.history(s, since_s, until_s)) is not None}

    def camera_sightings(self, stations: Sequence[str], since_s: float, until_s: float) -> list[CameraSighting]:
        """Confident oil-sheen sightings of cameras at these stations in the window (per camera: its
        largest area and highest confidence)."""
        best: dict[tuple[str, str], CameraSighting] = {}
        for d in self.sightings:
            if (
                d.station in stations
                and d.confidence >= MIN_CAMERA_CONFIDENCE
                and since_s <= d.ts.timestamp() <= until_s
            ):
                area = d.values["oil_area"].value if "oil_area" in d.values else 0.0
                seen = best.get((d.station, d.sensor_id))
                best[(d.station, d.sensor_id)] = CameraSighting(
                    station=d.station,
                    camera_id=d.sensor_id,
                    area_m2=max(area, seen.area_m2 if seen else 0.0),
                    confidence=max(d.confidence, seen.confidence if seen else 0.0),
                )
        return sorted(best.values(), key=lambda c: (c.station, c.camera_id))


def by_basin(record: WaterTraceRecord, city: City) -> dict[str, WaterTraceRecord]:
    """The record split by river basin (the key of ``water.trace``: tracing looks across the rivers
    of a basin, so each basin's stream can live in its own partition, on its own worker)."""
    parts: dict[str, dict] = {}

    def part(station: str) -> dict:
        return parts.setdefault(city.station_basin(station), {"rows": [], "alerts": [], "sightings": []})

    for n, station in enumerate(record.stations):
        part(station)["rows"].append(n)
    for alert in record.alerts:
        part(alert.station)["alerts"].append(alert)
    for sighting in record.sightings:
        part(sighting.station)["sightings"].append(sighting)
    if len(parts) == 1:
        return {next(iter(parts)): record}
    return {
        basin: WaterTraceRecord.model_construct(
            stations=[record.stations[n] for n in p["rows"]],
            ts_s=[record.ts_s[n] for n in p["rows"]],
            values={k: [v[n] for n in p["rows"]] for k, v in record.values.items()},
            alerts=p["alerts"],
            sightings=p["sightings"],
        )
        for basin, p in parts.items()
    }


def joined(earlier: History | None, later: History | None) -> History | None:
    """A history from two parts: ``earlier`` up to where ``later`` begins."""
    if earlier is None or later is None:
        return later or earlier
    keep = earlier.t_s < later.t_s[0]
    return History(
        np.r_[earlier.t_s[keep], later.t_s],
        {
            p: np.r_[earlier.values.get(p, np.full(len(earlier.t_s), np.nan))[keep], later.values[p]]
            for p in later.values
        },
    )
