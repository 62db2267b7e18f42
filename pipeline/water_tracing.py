"""One water incident, traced: candidates from the city model, series from station histories, the
fit (models/tracing.py) and arrival at every downstream intake (models/arrival.py).

Used by the tracing agent (histories from the stream, ``StationWindows``) and by ``yuflow eval water``
(histories from the simulator), so the evaluation measures the code that runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from models.arrival import Arrival, predict_arrival
from models.tracing import Candidate, StationSeries, Suspect, trace
from pipeline.city import City
from pipeline.rules import rules
from pipeline.schemas import (
    Alert,
    CameraDetection,
    CameraSighting,
    Category,
    IntakeArrival,
    SourceSuspect,
    TracingResult,
    WaterTraceRecord,
)

POLLUTANTS = ("oil", "nh3n", "cod", "total_phosphorus")
TRACED_PARAMETERS = (*POLLUTANTS, "do")  # an alert on one of these is traced; DO: a sag is a plume too


@dataclass(frozen=True)
class History:
    """One station's recent values: times (s, any common epoch) and values per parameter."""

    t_s: np.ndarray
    values: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class TracedIncident:
    suspects: list[Suspect]
    arrivals: list[Arrival]  # at intakes downstream of the top suspect


def excess_series(
    h: History, t_detect: float, until_s: float, lookback_s: float
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """Concentrations above the station's own baseline (median before the incident) from
    ``lookback_s`` before the detection up to ``until_s``, and the baseline's robust noise (sd)."""
    before = h.t_s < t_detect - 3600
    window = (h.t_s >= t_detect - lookback_s) & (h.t_s <= until_s)
    excess, noise = {}, {}
    for p in POLLUTANTS:
        if p in h.values and len(h.t_s):
            history = h.values[p][before] if before.sum() >= 6 else h.values[p][: max(6, len(h.t_s) // 10)]
            base = float(np.nanmedian(history))
            excess[p] = np.nan_to_num(h.values[p][window] - base)  # not clipped: noise must average out, not add up
            noise[p] = 1.4826 * float(np.nanmedian(np.abs(history - base)))
    return h.t_s[window], excess, noise


@dataclass(frozen=True)
class Scope:
    """Where to look for one incident: the candidate sources, the stations that could have seen
    any of them, and how far back (s) their histories must reach."""

    candidates: list[Candidate]
    stations: list[str]
    lookback_s: float


def incident_scope(city: City, first_station: str) -> Scope:
    """Sources upstream of the first detecting station within the maximum travel time, and the
    stations downstream of any of them."""
    fit = rules().tracing.fit
    point = city.stations[first_station].point
    # a plume never leaves its basin: only its sources and stations can be involved
    basin_sources, basin_stations = city.basin_sites.get(city.station_basin(first_station), ([], []))
    travel = {s.id: city.network.travel_time_s(s.point, point) for s in basin_sources}
    candidates = [
        Candidate(s.id, s.type, s.point, s.name, s.subtype)
        for s in basin_sources
        if travel[s.id] is not None and travel[s.id] <= fit.max_travel_h * 3600
    ]
    stations = [st.id for st in basin_stations if any(city.network.path(c.point, st.point) for c in candidates)]
    # long enough to see a plume from the furthest candidate pass every station upstream of the first
    lookback_s = max((travel[c.id] for c in candidates), default=0.0) + 6 * 3600
    return Scope(candidates, stations, lookback_s)


def trace_incident(
    city: City,
    histories: Mapping[str, History],
    first_station: str,
    first_t_s: float,
    until_s: float,
    scope: Scope | None = None,
) -> TracedIncident:
    tracing = rules().tracing
    scope = scope or incident_scope(city, first_station)
    candidates, stations, lookback_s = scope.candidates, scope.stations, scope.lookback_s
    series, noise = [], {}
    for sid in stations:
        if sid not in histories:
            continue
        t, excess, sd = excess_series(histories[sid], first_t_s, until_s, lookback_s)
        series.append(StationSeries(sid, city.stations[sid].point, t, excess))
        for p, v in sd.items():
            noise.setdefault(p, []).append(v)
    if first_station not in {s.station_id for s in series}:
        return TracedIncident([], [])
    fit = tracing.fit
    suspects = trace(
        city.network,
        candidates,
        series,
        first_station,
        first_t_s,
        rules().sources.profiles,
        tracing.priors,
        durations_s=[m * 60 for m in fit.durations_min],
        t0_step_s=fit.t0_step_min * 60,
        max_travel_s=fit.max_travel_h * 3600,
        signature_weight=fit.signature_weight,
        noise_sd={p: float(np.median(v)) for p, v in noise.items()},
        residual_correlation=fit.residual_correlation,
        flow_sd=fit.flow_sd,
        flow_factors=fit.flow_factors,
    )
    arrivals = []
    if suspects:
        best = suspects[0]
        main = max(best.masses_kg, key=best.masses_kg.get)
        for intake in city.intakes.values():
            a = predict_arrival(
                city.network,
                best.point,
                intake.point,
                intake.id,
                best.release_start_s,
                best.release_duration_s,
                best.masses_kg[main],
                threshold_mg_l=0.05,
                velocity_factor=best.velocity_factor,
            )
            if a is not None:
                arrivals.append(a)
    return TracedIncident(suspects, sorted(arrivals, key=lambda a: a.arrival_s))


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


# --- tracing from the stream (the tracing agent's state, kept here so it is tested without a broker) ---

RETRACE_S = 1800.0  # an incident is traced again when it worsens, at most this often (event time)
STEP_S = 600.0  # water stations report every 10 minutes
SINK_WAIT_S = 30.0  # the rest of the city passed the window's end this long ago: the detecting station is silent
SETTLE_S = 10.0  # nothing streamed for this long: a replay stopped short of the window's end
MIN_CAMERA_CONFIDENCE = 0.6  # below this, sheen detections are mostly sun glint and foam
BASELINE_S = 24 * 3600  # history before the lookback: the stations' own baselines
REPORTING_S = 24 * 3600  # a station that reported within this before a detection is waited for by its looks
ORDER_GRACE_S = 5.0  # an incident's first look waits this long (wall clock) for an earlier detection still on its way


@dataclass
class Pending:
    """A look waiting for its observation window: the alert that asked for it, the window's end,
    the later looks' ends, and when (wall clock) the stream's newest reading first passed the end."""

    alert: Alert
    until_s: float
    later_s: tuple[float, ...] = ()
    passed_at: float | None = None
    asked_at: float = -math.inf  # wall clock of the alert (the first look waits ORDER_GRACE_S after it)


class NoTrace(Exception):
    """A trace that could not name a suspect, with why."""


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


def tracing_result(
    city: City,
    alert: Alert,
    histories: Mapping[str, History],
    sightings: list[CameraSighting],
    scope: Scope,
    until_s: float,
) -> TracingResult:
    """The fit on the histories as a result for the warning agent; NoTrace says why there is none."""
    started = time.perf_counter()
    detected_s = alert.ts.timestamp()
    if not scope.candidates:
        raise NoTrace(f"no source within {rules().tracing.fit.max_travel_h} h upstream of {alert.station}")
    if alert.station not in histories:
        raise NoTrace(f"no readings of {alert.station} in the window to trace from")
    traced = trace_incident(city, histories, alert.station, detected_s, until_s, scope)
    if not traced.suspects:
        raise NoTrace(f"the fit found no suspect among {len(scope.candidates)} candidates upstream of {alert.station}")
    suspects = []
    for s in traced.suspects:
        source = city.sources[s.source_id]
        suspects.append(
            SourceSuspect(
                source_id=s.source_id,
                name=source.name,
                type=s.source_type,
                enterprise=source.enterprise,
                probability=round(s.probability, 4),
                distance_km=round(s.distance_km, 2),
                travel_time_h=round(s.travel_time_h, 2),
                explanation=s.explanation,
            )
        )
    arrivals = [
        IntakeArrival(
            intake_id=a.target_id,
            name=city.intakes[a.target_id].name,
            arrival=datetime.fromtimestamp(a.arrival_s, UTC),
            earliest=datetime.fromtimestamp(a.arrival_low_s, UTC),
            latest=datetime.fromtimestamp(a.arrival_high_s, UTC),
            peak_mg_l=round(a.peak_mg_l, 4),
            hours_left=round((a.arrival_s - until_s) / 3600, 2),
        )
        for a in traced.arrivals
        if a.arrival_s >= until_s - 3600  # not the intakes it has long passed
    ]
    return TracingResult(
        incident_key=alert.incident_key,
        category=alert.category,
        station=alert.station,
        district=alert.district,
        township=alert.township,
        parameter=alert.parameter,
        ts=alert.ts,
        suspects=suspects,
        arrivals=arrivals,
        camera_sightings=sightings,
        compute_ms=round((time.perf_counter() - started) * 1000, 1),
        observed_until=datetime.fromtimestamp(until_s, UTC),
    )
