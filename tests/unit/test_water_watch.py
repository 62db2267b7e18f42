"""The water watch (pipeline/water_watch.py), the water agent's engine: the limit rule's array form
equals ``step``, the batch severity equals ``Limit.severity``, decoding and line protocol equal the
per-reading forms."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from models.persistence import CODES, PersistenceArrays, PersistenceState, step
from pipeline.city import default_city, load_toml
from pipeline.settings import load_settings
from pipeline.water_watch import WaterWatch


@pytest.fixture(scope="module")
def watch() -> WaterWatch:
    return WaterWatch(default_city(), load_toml("gb3838"), load_settings().water)  # as the agent's


@pytest.mark.parametrize("seed", [1, 2])
def test_the_limit_rules_array_form_gives_step_reading_by_reading(seed):
    rng = np.random.default_rng(seed)
    sensors, columns, steps = 5, 3, 300
    rule = PersistenceArrays(columns, persistence=3, capacity=2)  # grows
    rule.ensure(sensors)
    states = {}
    seen = set()
    for _ in range(steps):
        rows = rng.permutation(sensors)
        severity = np.where(rng.random((sensors, columns)) < 0.4, rng.uniform(0, 1, (sensors, columns)), np.nan)
        checked = rng.random((sensors, columns)) < 0.9
        codes = rule.step(rows, severity, checked)
        for n, r in enumerate(rows):
            for j in range(columns):
                if not checked[n, j]:
                    assert codes[n, j] == 0
                    continue
                sev = None if np.isnan(severity[n, j]) else float(severity[n, j])
                states[r, j], change = step(states.get((r, j), PersistenceState()), sev, 3)
                assert codes[n, j] == (0 if change is None else {v: k for k, v in CODES.items()}[change])
                seen.add(int(codes[n, j]))
    assert seen == {0, 1, 2, 3}
    for r in range(sensors):
        assert rule.states(r) == {j: states[r, j] for j in range(columns) if (r, j) in states}
        other = PersistenceArrays(columns, persistence=3)
        other.load(r, rule.states(r))
        assert other.states(r) == rule.states(r)


def test_the_water_watchs_batch_severity_is_limit_severity(watch):
    columns, limits, station_row = watch.columns, watch.limits, watch.station_row
    rng = np.random.default_rng(4)
    stations = np.array(sorted(station_row.values()) * 20)
    values = rng.uniform(-1, 40, size=(len(stations), len(columns)))
    got = watch.bounds.severity(stations, values)
    by_row = {k: s for s, k in station_row.items()}
    for n, k in enumerate(stations):
        for j, p in enumerate(columns):
            limit = limits[by_row[k]].get(p)
            expected = -np.inf if limit is None else limit.severity(values[n, j])
            assert np.isnan(got[n, j]) if expected is None else got[n, j] == expected, (by_row[k], p, values[n, j])
    assert np.isnan(got).any() and (got > 0).any() and np.isneginf(got).any()


def simulated_water_readings(hours: float = 6.0) -> list[bytes]:
    """A few hours of the simulator's water readings as the bridge forwards them (canonical JSON)."""
    from pipeline.city import default_city
    from pipeline.schemas import parse_reading
    from sensors_sim.recording import messages
    from sensors_sim.scenario import load_scenario
    from sensors_sim.simulation import simulate

    city = default_city()
    recording = simulate(load_scenario("quiet_week", city=city, duration_h=hours), city)
    frame = recording.frame[~recording.frame["malformed"] & (recording.frame["kind"] == "water")]
    return [parse_reading(payload).to_json() for _, _, payload in messages(frame, "yuflow")]


def test_the_water_watchs_batch_decoding_gives_each_readings_values_station_and_time(watch):
    from pipeline.schemas import Reading, encode_batch

    columns, station_row = watch.columns, watch.station_row
    readings = simulated_water_readings()
    odd = Reading.model_validate(
        {**orjson.loads(readings[0]), "values": {"do": {"value": 4, "unit": "mg/L"}}}
    ).to_json()  # one parameter
    foreign = (
        b'{"sensor_id":"x","station":"nowhere","ts":"2026-01-01T00:00:00Z","values":{"do":{"value":5,"unit":"mg/L"}}}'
    )
    half = len(readings) // 2  # records as the agent takes them: several at once, one not JSON
    batch, bad = watch.decode(
        [encode_batch(readings[:half]), b"[{not json", encode_batch(readings[half:] + [odd, foreign])]
    )
    assert [raw for raw, _ in bad] == [b"[{not json", foreign]
    assert isinstance(bad[0][1], orjson.JSONDecodeError) and isinstance(bad[1][1], KeyError)
    assert len(batch.readings) == len(batch.keys) == len(readings) + 1
    for n, raw in enumerate(readings + [odd]):
        reading = Reading.model_validate_json(raw)
        assert batch.keys[n] == reading.sensor_id and batch.stations[n] == station_row[reading.station]
        expected = [reading.values[p].value if p in reading.values else np.nan for p in columns]
        np.testing.assert_array_equal(batch.values[n], expected)
        assert batch.ts_s[n] == reading.ts.timestamp()
    simulated = [j for j, p in enumerate(columns) if p in Reading.model_validate_json(readings[0]).values]
    assert np.isnan(batch.values[-1]).sum() == len(columns) - 1 and not np.isnan(batch.values[0, simulated]).any()


def test_the_readings_sinks_line_protocol_equals_reading_line_for_each_reading():
    from pipeline.influx import reading_line, reading_lines_json
    from pipeline.schemas import Reading, encode_batch

    readings = simulated_water_readings(2.0)
    whole = Reading.model_validate(
        {
            **orjson.loads(readings[0]),  # an integer and a name to escape
            "values": {"do": {"value": 7, "unit": "mg/L"}, "odd name,=x%": {"value": 1e-7, "unit": "mg/L"}},
        }
    ).to_json()
    got = reading_lines_json(encode_batch(readings + [whole]))
    assert got == [reading_line(Reading.model_validate_json(r)) for r in readings + [whole]]
    assert "do=7.0,odd\\ name\\,\\=x%=1e-07 " in got[-1]
