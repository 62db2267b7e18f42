"""Sensor faults, so false alarms can be measured: spikes, stuck values, drift, dropouts (on the
(time, sensor) arrays), and late, duplicate and malformed messages (on the message list)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaultRates:
    spike_prob: float = 0.0005  # per sample and parameter
    stuck_per_sensor_week: float = 0.1
    drift_per_sensor_week: float = 0.05
    dropout_per_sensor_week: float = 0.3
    late_fraction: float = 0.002  # of messages
    late_max_s: float = 1800
    duplicate_fraction: float = 0.002
    malformed: int = 0  # count of corrupted payloads


@dataclass(frozen=True)
class FaultRecord:
    kind: str  # spike | stuck | drift | dropout | late | duplicate | malformed
    sensor_index: int
    parameter: str | None
    start_index: int
    end_index: int  # inclusive


def _episodes(rng, n_sensors: int, n_steps: int, per_sensor_week: float, step_s: float, min_len: int, max_len: int):
    weeks = n_steps * step_s / (7 * 86400)
    count = rng.poisson(per_sensor_week * n_sensors * weeks)
    for _ in range(count):
        length = int(rng.integers(min_len, max(min_len + 1, max_len)))
        start = int(rng.integers(0, max(1, n_steps - length)))
        yield int(rng.integers(0, n_sensors)), start, min(n_steps - 1, start + length - 1)


def apply_array_faults(
    values: dict[str, np.ndarray],
    rates: FaultRates,
    step_s: float,
    rng: np.random.Generator,
    spike_scale: dict[str, float],
) -> tuple[np.ndarray, list[FaultRecord]]:
    """Corrupt ``values`` (param -> (T, S)) in place; returns the dropout mask (T, S) and the records."""
    params = list(values)
    T, S = values[params[0]].shape
    records: list[FaultRecord] = []
    for p in params:  # spikes: single samples far off
        mask = rng.random((T, S)) < rates.spike_prob
        signs = rng.choice([-1.0, 1.0], size=int(mask.sum()))
        values[p][mask] += signs * spike_scale[p] * rng.uniform(6, 12, size=signs.size)
        records += [FaultRecord("spike", int(s), p, int(t), int(t)) for t, s in zip(*np.nonzero(mask))]
    hour = max(1, int(3600 / step_s))
    for s, a, b in _episodes(rng, S, T, rates.stuck_per_sensor_week, step_s, 2 * hour, 12 * hour):
        for p in params:  # the whole instrument freezes
            values[p][a : b + 1, s] = values[p][a, s]
        records.append(FaultRecord("stuck", s, None, a, b))
    for s, a, b in _episodes(rng, S, T, rates.drift_per_sensor_week, step_s, 24 * hour, 96 * hour):
        p = params[int(rng.integers(0, len(params)))]
        ramp = np.linspace(0, 1, b - a + 1) * spike_scale[p] * rng.choice([-1.0, 1.0]) * 8
        values[p][a : b + 1, s] += ramp
        values[p][b + 1 :, s] += ramp[-1]  # uncorrected until someone recalibrates
        records.append(FaultRecord("drift", s, p, a, b))
    dropped = np.zeros((T, S), dtype=bool)
    for s, a, b in _episodes(rng, S, T, rates.dropout_per_sensor_week, step_s, hour // 2 + 1, 6 * hour):
        dropped[a : b + 1, s] = True
        records.append(FaultRecord("dropout", s, None, a, b))
    return dropped, records
