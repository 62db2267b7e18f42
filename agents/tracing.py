"""Tracing agent: water alerts -> incidents traced to their likely source, with intake arrivals.

An incident is traced on its first alert and again when it worsens (at most every RETRACE_S of event
time): the stations' recent series come from InfluxDB, the fit runs in a worker thread so the stream
keeps flowing, and the result goes to the ``tracing`` topic for the warning agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import numpy as np

from agents.app import SETTINGS, alerts_topic, app, dead_letter, tracing_topic
from pipeline.city import default_city, load_toml
from pipeline.influx import influx_time, influxql
from pipeline.schemas import Alert, CameraSighting, Category, IntakeArrival, SourceSuspect, TracingResult
from pipeline.water_tracing import POLLUTANTS, History, incident_scope, trace_incident

TRACED_PARAMETERS = {*POLLUTANTS, "do"}
RETRACE_S = 1800.0
OBSERVE_S = load_toml("tracing")["agent"]["observe_h"] * 3600
CITY_STEP_S = 600.0  # water stations report every 10 minutes
SINK_WAIT_S = 30.0  # past the window's end, a look waits no longer for a silent station
SETTLE_S = 10.0  # nothing written for this long: a station short of the window has a dropout, not a queue
LOOK_AGAIN_S = 5.0  # how often to look whether the observation window's readings have arrived
CITY = default_city()

log = logging.getLogger("yuflow.tracing")
traced_table = app.Table("traced", default=None, partitions=SETTINGS.kafka.partitions)


def histories_from_influx(stations: list[str], since_s: float, until_s: float) -> dict[str, History]:
    pattern = "|".join(stations)
    fields = ", ".join(f'"{p}"' for p in POLLUTANTS)
    query = (f"SELECT {fields} FROM readings WHERE kind = 'water' AND station =~ /^({pattern})$/ "
             f"AND time >= '{influx_time(since_s)}' AND time <= '{influx_time(until_s)}' GROUP BY station")
    out = {}
    for series in influxql(SETTINGS.influx, query, timeout_s=30):
        rows = np.array([[np.nan if v is None else v for v in row] for row in series["values"]], dtype=float)
        columns = series["columns"]
        out[series["tags"]["station"]] = History(rows[:, 0] / 1000, {c: rows[:, i] for i, c in enumerate(columns) if c != "time"})
    return out


MIN_CAMERA_CONFIDENCE = 0.6  # below this, sheen detections are mostly sun glint and foam


def camera_sightings(stations: list[str], since_s: float, until_s: float) -> list[CameraSighting]:
    """Confident oil-sheen detections by cameras watching these stations in the window."""
    query = (f"SELECT max(\"oil_area\"), max(\"confidence\") FROM readings WHERE kind = 'camera' AND detection = 'oil_sheen' "
             f"AND confidence >= {MIN_CAMERA_CONFIDENCE} AND station =~ /^({'|'.join(stations)})$/ "
             f"AND time >= '{influx_time(since_s)}' AND time <= '{influx_time(until_s)}' GROUP BY station, sensor_id")
    return [CameraSighting(station=s["tags"]["station"], camera_id=s["tags"]["sensor_id"], area_m2=float(s["values"][0][1]),
                           confidence=float(s["values"][0][2])) for s in influxql(SETTINGS.influx, query, timeout_s=30)]


def trace_alert(alert: Alert) -> TracingResult | None:
    """Blocking: query the histories (up to OBSERVE_S after detection, as far as they exist) and fit.
    Runs in a worker thread."""
    started = time.perf_counter()
    detected_s = alert.ts.timestamp()
    until_s = detected_s + OBSERVE_S
    scope = incident_scope(CITY, alert.station)
    histories = histories_from_influx(scope.stations, detected_s - scope.lookback_s - 24 * 3600, until_s)
    traced = trace_incident(CITY, histories, alert.station, detected_s, until_s, scope)
    if not traced.suspects:
        return None
    suspects = []
    for s in traced.suspects:
        source = CITY.sources[s.source_id]
        suspects.append(SourceSuspect(source_id=s.source_id, name=source.name, type=s.source_type, enterprise=source.enterprise,
                                      probability=round(s.probability, 4), distance_km=round(s.distance_km, 2),
                                      travel_time_h=round(s.travel_time_h, 2), explanation=s.explanation))
    arrivals = [
        IntakeArrival(intake_id=a.target_id, name=CITY.intakes[a.target_id].name, arrival=datetime.fromtimestamp(a.arrival_s, UTC),
                      earliest=datetime.fromtimestamp(a.arrival_low_s, UTC), latest=datetime.fromtimestamp(a.arrival_high_s, UTC),
                      peak_mg_l=round(a.peak_mg_l, 4), hours_left=round((a.arrival_s - detected_s) / 3600, 2))
        for a in traced.arrivals if a.arrival_s >= detected_s - 3600  # not the intakes it has long passed
    ]
    sightings = camera_sightings(scope.stations, detected_s - 6 * 3600, detected_s)
    return TracingResult(incident_key=alert.incident_key, category=alert.category, station=alert.station, district=alert.district,
                         township=alert.township, parameter=alert.parameter, ts=alert.ts, suspects=suspects, arrivals=arrivals,
                         camera_sightings=sightings,
                         compute_ms=round((time.perf_counter() - started) * 1000, 1))


async def _trace_and_publish(alert: Alert, raw: bytes) -> None:
    """Trace once OBSERVE_S of data after the detection exists: at once in a replay that has it, as
    time passes live. A look at only the plume's front ranks the wrong source in the Ruxi seed (a
    dock or a plant near the station, with 0-1 h of data), so no earlier look is published."""
    detected_s = alert.ts.timestamp()
    log.info("tracing %s from %s: waiting for %.1f h of readings after the detection", alert.incident_key, alert.station,
             OBSERVE_S / 3600)
    await _until_observed(alert.station, detected_s, detected_s + OBSERVE_S)
    log.info("tracing %s from %s", alert.incident_key, alert.station)
    try:
        result = await asyncio.to_thread(trace_alert, alert)
    except Exception as error:  # tracing must not stop anything; the record says what failed
        await dead_letter("tracing", alerts_topic, raw, error)
        return
    if result is not None:
        await tracing_topic.send(key=alert.incident_key.encode(), value=result.to_json())


def latest_readings_s(stations: list[str], since_s: float, until_s: float) -> dict[str, float]:
    """Each station's latest water reading time in InfluxDB in (since_s, until_s] (stations with none are left out)."""
    query = (f"SELECT last(\"do\") FROM readings WHERE kind = 'water' AND station =~ /^({'|'.join(stations)})$/ "
             f"AND time > '{influx_time(since_s)}' AND time <= '{influx_time(until_s)}' GROUP BY station")
    return {s["tags"]["station"]: s["values"][0][0] / 1000 for s in influxql(SETTINGS.influx, query, timeout_s=10)}


async def _until_observed(station: str, detected_s: float, until_s: float) -> None:
    """Until every station of the incident's scope with readings in the window has them up to
    ``until_s`` (live: as time passes; in a replay the sink may be writing them still, each
    partition at its own pace) and two looks a second apart agree. A station whose readings stop
    short of the window (a dropout) holds the look at most SETTLE_S once nothing moves; a station
    gone silent, SINK_WAIT_S past ``until_s``."""
    stations = incident_scope(CITY, station).stations
    wanted_s = until_s - 2 * CITY_STEP_S
    previous, unchanged_since = None, time.monotonic()
    while True:
        latest = await asyncio.to_thread(latest_readings_s, stations, detected_s, until_s)
        ready = latest.get(station, 0.0) >= wanted_s
        if latest != previous:
            previous, unchanged_since = latest, time.monotonic()
        elif ready and (all(t >= wanted_s for t in latest.values()) or time.monotonic() - unchanged_since >= SETTLE_S):
            return
        if time.time() > until_s + SINK_WAIT_S:
            return
        await asyncio.sleep(1.0 if ready else min(LOOK_AGAIN_S, max(1.0, until_s - time.time())))


_running: set[asyncio.Task] = set()  # tracing runs beside the stream, so alerts keep flowing meanwhile


@app.agent(alerts_topic, name="trace")
async def trace_alerts(stream):
    async for raw in stream:
        try:
            alert = Alert.model_validate_json(raw)
        except ValueError as error:
            await dead_letter("tracing", alerts_topic, raw, error)
            continue
        if alert.category is not Category.water or alert.resolved or alert.parameter not in TRACED_PARAMETERS:
            continue
        last = traced_table.get(alert.incident_key)
        if last is not None and alert.ts.timestamp() - last < RETRACE_S:
            continue
        traced_table[alert.incident_key] = alert.ts.timestamp()
        task = asyncio.create_task(_trace_and_publish(alert, raw))
        _running.add(task)
        task.add_done_callback(_running.discard)
