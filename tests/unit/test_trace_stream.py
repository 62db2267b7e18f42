"""Tracing from the stream (pipeline/trace_stream.py ``TraceStream``), as the tracing agent runs it
but without a broker: the simulated Ruxi spill's pollutant readings and the alert that the water
agent raises go in as ``water.trace`` records, in event time; nothing is read from InfluxDB."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.city import default_city
from pipeline.schemas import Alert, CameraDetection, Category, Quantity, WaterTraceRecord
from pipeline.trace_stream import ORDER_GRACE_S, SETTLE_S, SINK_WAIT_S, TraceStream
from pipeline.water_tracing import POLLUTANTS, NoTrace, tracing_result
from sensors_sim.scenario import load_scenario
from sensors_sim.simulation import simulate

CITY = default_city()
OBSERVE_S = 2 * 3600.0


@pytest.fixture(scope="module")
def ruxi():
    """The Ruxi spill's water readings as (time, station, pollutants) rows in time order, and the
    time of the first reading at 明达 with oil well above its baseline (where an alert is raised)."""
    rec = simulate(load_scenario("ruxi_oil_spill", city=CITY), CITY)
    water = rec.frame[
        (rec.frame["kind"] == "water") & ~rec.frame["malformed"] & rec.frame["parameter"].isin(POLLUTANTS)
    ]
    wide = water.pivot_table(index=["ts_ms", "site"], columns="parameter", values="value", observed=True).reset_index()
    wide = wide.sort_values(["ts_ms", "site"])
    mingda = wide[wide["site"] == "ruxi-mingda"]
    base = mingda["oil"].iloc[:36].median()
    detected_ms = int(mingda[mingda["oil"] > base + 0.05]["ts_ms"].iloc[0])
    return wide, detected_ms


def records(wide, since_ms: int, until_ms: int, rows_per_record: int = 40):
    part = wide[(wide["ts_ms"] >= since_ms) & (wide["ts_ms"] < until_ms)]
    for at in range(0, len(part), rows_per_record):
        chunk = part.iloc[at : at + rows_per_record]
        values = {p: [None if np.isnan(v) else float(v) for v in chunk[p]] for p in POLLUTANTS if p in chunk}
        yield WaterTraceRecord(
            stations=list(chunk["site"].astype(str)), ts_s=list(chunk["ts_ms"] / 1000), values=values
        )


def alert_at(ts_ms: int, station: str = "ruxi-mingda") -> Alert:
    st = CITY.stations[station]
    return Alert(
        alert_id=f"wq-{station}:oil:{ts_ms}",
        category=Category.water,
        rule="gb3838_exceedance",
        sensor_id=f"wq-{station}",
        station=station,
        district=st.district,
        township=st.township,
        area=st.river,
        ts=ts_ms / 1000,
        parameter="oil",
        value=0.3,
        unit="mg/L",
        limit=0.05,
        severity=1.0,
        message="oil above the limit",
    )


def test_a_trace_waits_for_its_window_in_event_time_and_names_the_factory_from_the_stream(ruxi):
    wide, detected_ms = ruxi
    stream = TraceStream(CITY, [OBSERVE_S])
    now = 1e12  # the wall clock long after the data (a replay of the past): it must not start the trace
    for record in records(wide, 0, detected_ms + 1):
        stream.add(record, now)
    assert stream.add(WaterTraceRecord(alerts=[alert_at(detected_ms)]), now) and stream.pending
    until_ms = detected_ms + int(OBSERVE_S * 1000)
    for record in records(wide, detected_ms + 1, until_ms - 2 * 600_000):
        stream.add(record, now)
        assert not stream.ready(now)  # the stream does not hold the window yet
    started = []
    for record in records(wide, until_ms - 2 * 600_000, until_ms + 1):
        stream.add(record, now)
        started += stream.ready(now + ORDER_GRACE_S)
    assert len(started) == 1 and not stream.pending
    p = started[0]
    scope = stream.scope(p.alert.station)
    histories = stream.histories(scope.stations, detected_ms / 1000 - scope.lookback_s - 86400, p.until_s)
    result = tracing_result(CITY, p.alert, histories, [], scope, p.until_s)
    assert result.suspects[0].source_id == "ruxi-food-factory"
    assert any(a.intake_id == "ruxi-intake" and a.hours_left > 0 for a in result.arrivals)
    # a later alert of the same incident within 30 min of event time asks for no second trace
    assert not stream.add(WaterTraceRecord(alerts=[alert_at(detected_ms + 600_000)]), now)


def test_a_silent_station_or_a_stopped_replay_does_not_hold_a_trace_for_ever(ruxi):
    wide, detected_ms = ruxi
    until_ms = detected_ms + int(OBSERVE_S * 1000)
    # the detecting station stops reporting; the rest of the city goes on past the window's end
    stream = TraceStream(CITY, [OBSERVE_S])
    for record in records(wide, 0, detected_ms + 1):
        stream.add(record, 1000.0)
    stream.add(WaterTraceRecord(alerts=[alert_at(detected_ms)]), 1000.0)
    others = wide[wide["site"] != "ruxi-mingda"]
    for record in records(others, detected_ms + 1, until_ms + 600_001):
        stream.add(record, 1000.0)
    assert not stream.ready(1000.0 + SINK_WAIT_S - 1)
    assert len(stream.ready(1000.0 + SINK_WAIT_S)) == 1
    # a replay that stops before the window's end: traced once the stream has been quiet
    stream = TraceStream(CITY, [OBSERVE_S])
    for record in records(wide, 0, detected_ms + 1):
        stream.add(record, until_ms / 1000 + 5)
    stream.add(WaterTraceRecord(alerts=[alert_at(detected_ms)]), until_ms / 1000 + 5)
    assert not stream.ready(until_ms / 1000 + 5 + SETTLE_S - 1)
    assert len(stream.ready(until_ms / 1000 + 5 + SETTLE_S)) == 1


def test_a_trace_that_cannot_run_says_why():
    stream = TraceStream(CITY, [OBSERVE_S])
    alert = alert_at(1_750_000_000_000)
    scope = stream.scope("ruxi-mingda")
    with pytest.raises(NoTrace, match="no readings of ruxi-mingda"):
        tracing_result(CITY, alert, {}, [], scope, alert.ts.timestamp() + OBSERVE_S)


def test_camera_sightings_come_from_the_stream():
    stream = TraceStream(CITY, [OBSERVE_S])
    seen = [
        CameraDetection(
            sensor_id="cam-ruxi-mingda",
            station="ruxi-mingda",
            district="liangping",
            ts=1_750_000_000 + 60 * k,
            values={"oil_area": Quantity(value=100.0 * k, unit="m2")},
            detection="oil_sheen",
            confidence=c,
        )
        for k, c in ((1, 0.9), (3, 0.7), (2, 0.3))
    ]
    stream.add(WaterTraceRecord(sightings=seen), 0.0)
    [sighting] = stream.camera_sightings(["ruxi-mingda"], 1_750_000_000, 1_750_000_000 + 3600)
    assert (sighting.camera_id, sighting.area_m2, sighting.confidence) == (
        "cam-ruxi-mingda",
        300.0,
        0.9,
    )  # the 0.3 one is glint


def test_an_incident_is_looked_at_again_as_the_plume_passes_and_a_backlog_makes_every_look_in_order(ruxi):
    wide, detected_ms = ruxi
    looks_s = [900.0, 3600.0, 7200.0]
    stream = TraceStream(CITY, looks_s)
    for record in records(wide, 0, detected_ms + 1):
        stream.add(record, 0.0)
    stream.add(WaterTraceRecord(alerts=[alert_at(detected_ms)]), 0.0)
    made = []
    for record in records(wide, detected_ms + 1, detected_ms + 3 * 3600_000, rows_per_record=5):  # as it comes, live
        stream.add(record, 0.0)
        made += [p.until_s - detected_ms / 1000 for p in stream.ready(ORDER_GRACE_S)]
    assert made == looks_s and not stream.pending
    # a replay that sends it all at once: every look, the earliest first
    stream = TraceStream(CITY, looks_s)
    for record in records(wide, 0, detected_ms + 1):
        stream.add(record, 0.0)
    stream.add(WaterTraceRecord(alerts=[alert_at(detected_ms)]), 0.0)
    stream.add(next(records(wide, detected_ms + 1, detected_ms + 3 * 3600_000, rows_per_record=10**6)), 0.0)
    assert not stream.ready(0.0)  # an earlier detection may still be on its way
    assert [p.until_s - detected_ms / 1000 for p in stream.ready(ORDER_GRACE_S)] == looks_s and not stream.pending


def test_an_earlier_detection_that_comes_later_is_where_the_incident_is_traced_from(ruxi):
    """A backlog: the intake section's alert (hours later) reaches tracing before 明达's."""
    wide, detected_ms = ruxi
    stream = TraceStream(CITY, [300.0])
    for record in records(wide, 0, detected_ms + 6 * 3600_000, rows_per_record=10**6):
        stream.add(record, 0.0)
    stream.add(WaterTraceRecord(alerts=[alert_at(detected_ms + 4 * 3600_000, "ruxi-intake-section")]), 0.0)
    stream.add(WaterTraceRecord(alerts=[alert_at(detected_ms)]), 1.0)
    [look] = stream.ready(1.0 + ORDER_GRACE_S)
    assert look.alert.station == "ruxi-mingda" and look.alert.ts.timestamp() == detected_ms / 1000


def test_a_replay_of_older_data_after_newer_starts_the_stations_windows_afresh():
    stream = TraceStream(CITY, [300.0])
    stream.add(WaterTraceRecord(stations=["ruxi-mingda"], ts_s=[1e9], values={"cod": [5.0]}), 0.0)
    older = 1e9 - stream.keep_s - 86400
    stream.add(
        WaterTraceRecord(
            stations=["ruxi-mingda", "ruxi-mingda"], ts_s=[older, older + 600], values={"cod": [1.0, 2.0]}
        ),
        0.0,
    )
    h = stream.windows.history("ruxi-mingda", 0, 2e9)
    assert h.t_s.tolist() == [older, older + 600] and stream.windows.latest_s("ruxi-mingda") == older + 600


def test_a_trace_record_is_split_by_river_basin_and_nothing_is_lost():
    """``water.trace`` is keyed by basin so basins spread over partitions and workers: each station's
    rows, alerts and sightings go with its basin, and every row lands in exactly one part."""
    from pipeline.city import load_city
    from pipeline.trace_stream import by_basin

    city = load_city(scale=2)
    stations = ["puhe-zhaixi-bridge", "ruxi-mingda", "puhe-zhaixi-bridge.2", "changjiang-chaotianmen"]
    record = WaterTraceRecord(
        stations=stations, ts_s=[1.0, 2.0, 3.0, 4.0], values={"oil": [0.1, 0.2, None, 0.4]}, alerts=[alert_at(2000)]
    )
    parts = by_basin(record, city)
    assert set(parts) == {"changjiang", "ruxi", "changjiang.2"}  # the Puhe ends in the Changjiang; clones apart
    assert parts["changjiang"].stations == ["puhe-zhaixi-bridge", "changjiang-chaotianmen"]
    assert parts["changjiang"].values["oil"] == [0.1, 0.4] and parts["changjiang.2"].values["oil"] == [None]
    assert [a.station for a in parts["ruxi"].alerts] == ["ruxi-mingda"] and not parts["changjiang"].alerts
    assert sorted(t for p in parts.values() for t in p.ts_s) == record.ts_s
    assert by_basin(WaterTraceRecord(stations=["ruxi-mingda"], ts_s=[1.0], values={}), city)["ruxi"].ts_s == [1.0]
