"""The bank (many stations as arrays, a batch at a time) gives what the one-reading forms give."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from models.persistence import Change, PersistenceState, step
from models.standards import Limit
from models.station_bank import CLEARED, RAISED, WORSENED, StationBank
from models.station_watch import StationWatch

PARAMETERS = ["cod", "do", "nh3n", "ph", "temp"]
LIMITS = {"do": Limit("do", low=5.0), "nh3n": Limit("nh3n", high=1.0), "cod": Limit("cod", high=20.0), "ph": Limit("ph", low=6, high=9)}
CODES = {Change.raised: RAISED, Change.worsened: WORSENED, Change.cleared: CLEARED}


def stream(seed: int, sensors: int, steps: int):
    """(sensor, values, hour) in arrival order: daily cycles, noise, pollution episodes, frozen
    repeats, missing parameters, hours exactly on the profile's knots."""
    rng = np.random.default_rng(seed)
    own = {s: [p for p in PARAMETERS if s % 3 != 1 or p != "ph"] for s in range(sensors)}  # some never send pH
    out, previous = [], {}
    for t in range(steps):
        for s in rng.permutation(sensors):
            hour = (t / 6) % 24 if rng.random() < 0.8 else float(rng.integers(0, 24))
            bump = 1.0 if (t // 40) % 4 == 3 and s % 2 == 0 else 0.0
            v = {"do": 8 + 0.5 * np.sin(hour / 24 * 2 * np.pi) - 4 * bump + rng.normal(0, 0.1),
                 "nh3n": 0.3 + 1.5 * bump + rng.normal(0, 0.03), "cod": 12 + 12 * bump + rng.normal(0, 0.6),
                 "ph": 7.5 + rng.normal(0, 0.05), "temp": 20 + 2 * np.sin(hour / 24 * 2 * np.pi)}
            v = {p: v[p] for p in own[s]}
            if t > 0 and rng.random() < 0.03:
                v = dict(previous[s])  # frozen instrument
            elif rng.random() < 0.05:
                v.pop(rng.choice(sorted(v)))
            previous[s] = v
            out.append((f"s{s}", v, hour))
    return out


def reference(readings):
    watches, states, results = {}, {}, []
    for key, values, hour in readings:
        limit_changes = {}
        for p, value in values.items():
            if p in LIMITS:
                states[key, p], change = step(states.get((key, p), PersistenceState()), LIMITS[p].severity(value), 3)
                if change is not None:
                    limit_changes[p] = CODES[change]
        watch = watches.setdefault(key, StationWatch(sorted(values)))
        verdict = watch.step(values, hour)
        results.append((verdict.change, verdict.stuck, verdict.parameter, verdict.z, limit_changes))
    return watches, states, results


def bank_arrays(bank: StationBank, batch):
    for key, values, _ in batch:
        if key not in bank:
            bank.add(key, sorted(values))
    rows = np.array([bank.rows[key] for key, _, _ in batch])
    values = np.full((len(batch), len(PARAMETERS)), np.nan)
    severity = np.full(values.shape, -np.inf)
    for n, (_, v, _) in enumerate(batch):
        for p, x in v.items():
            values[n, bank.column[p]] = x
            if p in LIMITS:
                s = LIMITS[p].severity(x)
                severity[n, bank.column[p]] = np.nan if s is None else s
    return rows, values, np.array([h for _, _, h in batch]), severity


def run_bank(bank: StationBank, readings, batch_sizes):
    results, start = [], 0
    for size in batch_sizes:
        batch = readings[start:start + size]
        start += size
        if not batch:
            break
        v = bank.step_many(*bank_arrays(bank, batch))
        for n in range(len(batch)):
            change = {1: "raised", 3: "cleared"}.get(int(v.change[n]))
            parameter = bank.parameters[v.best[n]] if v.best[n] >= 0 else None
            limits = {bank.parameters[j]: int(c) for j, c in enumerate(v.limit_change[n]) if c}
            results.append((change, bool(v.stuck[n]), parameter, float(v.z[n]), limits))
    return results


@pytest.mark.parametrize("seed", [1, 2])
def test_batches_give_the_one_reading_results(seed):
    readings = stream(seed, sensors=7, steps=200)
    watches, states, expected = reference(readings)
    rng = np.random.default_rng(seed)
    bank = StationBank(PARAMETERS, capacity=2)  # grows while it runs
    got = run_bank(bank, readings, rng.integers(1, 60, size=len(readings)))
    assert len(got) == len(expected)
    for (c, s, p, z, lim), (ec, es, ep, ez, elim) in zip(got, expected):
        assert (c, s, p, lim) == (ec, es, ep, elim)
        assert z == pytest.approx(ez, rel=1e-9, abs=1e-12)
    kinds = [r[0] for r in expected] + [c for r in expected for c in r[4].values()]
    assert {"raised", "cleared", RAISED, WORSENED, CLEARED} <= set(kinds)  # the stream exercised every change
    assert any(r[1] for r in expected)
    for key, watch in watches.items():
        screen, persistence = bank.state(key)
        assert screen["parameters"] == watch.parameters
        np.testing.assert_allclose(screen["detectors"][1]["profile"], watch.state()["detectors"][1]["profile"], rtol=1e-12)
        assert {k: v for k, v in screen.items() if k != "detectors"} == {k: v for k, v in watch.state().items() if k != "detectors"}
        assert persistence == {p: [s.bad_run, s.good_run, s.active, s.reported_severity] for (k, p), s in states.items() if k == key}


def test_a_row_checkpointed_and_loaded_goes_on_as_if_never_stopped():
    readings = stream(5, sensors=3, steps=150)
    half = len(readings) // 2
    whole = run_bank(StationBank(PARAMETERS), readings, [40] * 20)
    first = StationBank(PARAMETERS)
    before = run_bank(first, readings[:half], [40] * 20)
    restored = StationBank(PARAMETERS)
    for key in first.rows:
        watch, persistence = first.state(key)
        restored.load(key, watch, persistence, parameters=[])
    after = run_bank(restored, readings[half:], [40] * 20)
    assert [r[:3] + (r[4],) for r in before + after] == [r[:3] + (r[4],) for r in whole]


def test_the_water_agents_batch_severity_is_limit_severity():
    from agents.water import COLUMNS, LIMITS, STATION_ROW, severity_many

    rng = np.random.default_rng(4)
    stations = np.array(sorted(STATION_ROW.values()) * 20)
    values = rng.uniform(-1, 40, size=(len(stations), len(COLUMNS)))
    got = severity_many(stations, values)
    by_row = {k: s for s, k in STATION_ROW.items()}
    for n, k in enumerate(stations):
        for j, p in enumerate(COLUMNS):
            limit = LIMITS[by_row[k]].get(p)
            expected = -np.inf if limit is None else limit.severity(values[n, j])
            assert (np.isnan(got[n, j]) if expected is None else got[n, j] == expected), (by_row[k], p, values[n, j])
    assert np.isnan(got).any() and (got > 0).any() and np.isneginf(got).any()


def simulated_water_readings(hours: float = 6.0) -> list[bytes]:
    """A few hours of the simulator's water readings as the bridge forwards them (canonical JSON)."""
    from pipeline.city import default_city
    from pipeline.schemas import parse_reading
    from sensors_sim.recording import messages
    from sensors_sim.scenario import load_scenario, simulate

    city = default_city()
    recording = simulate(load_scenario("quiet_week", city=city, duration_h=hours), city)
    frame = recording.frame[~recording.frame["malformed"] & (recording.frame["kind"] == "water")]
    return [parse_reading(payload).to_json() for _, _, payload in messages(frame, "yuflow")]


def test_the_water_agents_batch_decoding_gives_each_readings_values_station_and_local_hour():
    from agents.water import COLUMNS, CITY, STATION_ROW, decode_batch
    from pipeline.schemas import Reading, encode_batch

    readings = simulated_water_readings()
    odd = Reading.model_validate({**orjson.loads(readings[0]), "values": {"do": {"value": 4, "unit": "mg/L"}}}).to_json()  # one parameter
    foreign = b'{"sensor_id":"x","station":"nowhere","ts":"2026-01-01T00:00:00Z","values":{"do":{"value":5,"unit":"mg/L"}}}'
    half = len(readings) // 2  # records as the agent takes them: several at once, one not JSON
    batch, bad = decode_batch([encode_batch(readings[:half]), b"[{not json", encode_batch(readings[half:] + [odd, foreign])], CITY)
    assert [raw for raw, _ in bad] == [b"[{not json", foreign]
    assert isinstance(bad[0][1], orjson.JSONDecodeError) and isinstance(bad[1][1], KeyError)
    assert len(batch.readings) == len(batch.keys) == len(readings) + 1
    for n, raw in enumerate(readings + [odd]):
        reading = Reading.model_validate_json(raw)
        assert batch.keys[n] == reading.sensor_id and batch.stations[n] == STATION_ROW[reading.station]
        expected = [reading.values[p].value if p in reading.values else np.nan for p in COLUMNS]
        np.testing.assert_array_equal(batch.values[n], expected)
        assert batch.hours[n] == pytest.approx(CITY.local_hour(reading.ts))
    assert np.isnan(batch.values[-1]).sum() == len(COLUMNS) - 1 and not np.isnan(batch.values[0]).any()


def test_the_readings_sinks_line_protocol_equals_reading_line_for_each_reading():
    from pipeline.influx import reading_line, reading_lines_json
    from pipeline.schemas import Reading, encode_batch

    readings = simulated_water_readings(2.0)
    whole = Reading.model_validate({**orjson.loads(readings[0]),  # an integer and a name to escape
                                    "values": {"do": {"value": 7, "unit": "mg/L"}, "odd name,=x%": {"value": 1e-7, "unit": "mg/L"}}}).to_json()
    got = reading_lines_json(encode_batch(readings + [whole]))
    assert got == [reading_line(Reading.model_validate_json(r)) for r in readings + [whole]]
    assert "do=7.0,odd\\ name\\,\\=x%=1e-07 " in got[-1]
