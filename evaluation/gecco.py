"""``yuflow eval gecco``: the water screen on real, labelled drinking-water data in the GECCO format.

The GECCO Industrial Challenge files ("Online anomaly detection for drinking-water quality",
SPOTSeven Lab, TH Köln) hold one row a minute of one station: ``Time, Tp, Cl, pH, Redox, Leit,
Trueb, Cl_2, Fm, Fm_2, EVENT``. The rows go through the water screen the water agent runs
(pipeline/water_screen.py), causally, one row at a time, as one sensor. What is calibrated is chosen
on the first half only (the screen's window and acceptance time, its raise threshold: a small grid,
scored by per-minute F1); the second half is scored: per-minute precision, recall and F1 of the
screen's own alarm state, events found, the median detection delay and false alarms per day.

``--stream`` sends the rows as readings of the treated-water station ``ruxi-waterworks`` through
MQTT -> bridge -> Kafka -> the water agent and reads its alerts back.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from models.water_verdicts import RAISED
from pipeline.water_screen import new_screen, water_parameters

# the file's columns and the parameters they are (a second instrument of a quantity: name_2)
COLUMNS = {
    "Tp": "temperature",
    "Cl": "chlorine_dioxide",
    "pH": "ph",
    "Redox": "redox",
    "Leit": "conductivity",
    "Trueb": "turbidity",
    "Cl_2": "chlorine_dioxide_2",
    "Fm": "flow",
    "Fm_2": "flow_2",
}
LABEL = "EVENT"
STATION = "ruxi-waterworks"
# what calibration may choose, on the first half: the two times that depend on the station rather
# than on the statistics, the evidence's window (its cadence) and the time after which a lasting
# shift is its new normal (how long its events last). The raise threshold is not calibrated: on
# the development file a threshold fitted to the first half cost a third of the second half's recall.
GRID = {"window_s": (60.0, 600.0), "accept_after_s": (1800.0, 21600.0)}


@dataclass
class Series:
    """A GECCO file: its times as written, as epoch seconds (the times are the station's local time,
    here the city's), the values over ``parameters`` (NaN: missing) and the labels (None: none)."""

    time: pd.Series
    ts_s: np.ndarray
    parameters: list[str]
    values: np.ndarray
    labels: np.ndarray | None

    def head(self, rows: int) -> Series:
        labels = None if self.labels is None else self.labels[:rows]
        return Series(self.time.iloc[:rows], self.ts_s[:rows], self.parameters, self.values[:rows], labels)

    def tail(self, start: int) -> Series:
        labels = None if self.labels is None else self.labels[start:]
        return Series(
            self.time.iloc[start:].reset_index(drop=True),
            self.ts_s[start:],
            self.parameters,
            self.values[start:],
            labels,
        )


def load(path: Path, utc_offset_h: float, days: float | None = None) -> Series:
    """Read a GECCO file (``days``: only its first days). A missing column is an error that names it."""
    try:
        return load_frame(pd.read_csv(path), utc_offset_h, days)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def load_frame(frame: pd.DataFrame, utc_offset_h: float, days: float | None = None) -> Series:
    missing = [c for c in ("Time", *COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; a GECCO file has Time, {', '.join(COLUMNS)} and {LABEL}")
    local = pd.to_datetime(frame["Time"])
    if days is not None:
        keep = (local - local.iloc[0]) < pd.Timedelta(days=days)
        frame, local = frame[keep.to_numpy()], local[keep]
    ts_s = ((local - pd.Timestamp("1970-01-01")).dt.total_seconds() - utc_offset_h * 3600).to_numpy()
    values = frame[list(COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    labels = None
    if LABEL in frame.columns:
        labels = frame[LABEL].astype(str).str.upper().isin(("TRUE", "1", "1.0")).to_numpy()
    return Series(frame["Time"].reset_index(drop=True), ts_s, list(COLUMNS.values()), values, labels)


@dataclass
class Run:
    """The screen over a series: per row its alarm state after the row (a row with no reading keeps
    the state), the unsaturated evidence, and the times the screen raised an event."""

    flags: np.ndarray
    scores: np.ndarray
    raised_ts_s: list[float]


def run(series: Series, settings: Mapping[str, float], utc_offset_h: float) -> Run:
    """The series through a fresh screen as one sensor, causally (``step_many`` is a loop of rounds)."""
    screen = new_screen(settings, series.parameters, utc_offset_h=utc_offset_h)
    row = screen.add(STATION, series.parameters)
    read = np.isfinite(series.values).any(axis=1)
    verdicts = screen.step_many(np.full(int(read.sum()), row), series.values[read], series.ts_s[read])
    alarm = np.full(len(read), np.nan)
    score = np.full(len(read), np.nan)
    alarm[read], score[read] = verdicts.alarm, verdicts.evidence
    flags = pd.Series(alarm).ffill().fillna(0).to_numpy().astype(bool)
    scores = pd.Series(score).ffill().fillna(0).to_numpy()
    return Run(flags, scores, [float(t) for t in series.ts_s[read][verdicts.change == RAISED]])


@dataclass
class Scores:
    precision: float
    recall: float
    f1: float
    events: int
    events_found: int
    delay_median_min: float | None
    false_alarms_per_day: float


def score(flags: np.ndarray, labels: np.ndarray, ts_s: np.ndarray) -> Scores:
    """Per-minute precision, recall and F1; event-wise recall and detection delay (first flagged row
    of an event); false alarms: alarm runs that touch no event, per day.

    >>> scores = score(np.array([0, 1, 1, 0, 1, 0], bool), np.array([0, 1, 1, 1, 0, 0], bool), np.arange(6) * 60.0)
    >>> scores  # doctest: +NORMALIZE_WHITESPACE
    Scores(precision=0.6666666666666666, recall=0.6666666666666666, f1=0.6666666666666666, events=1, events_found=1,
           delay_median_min=0.0, false_alarms_per_day=288.0)
    """
    flags, labels = np.asarray(flags, bool), np.asarray(labels, bool)
    hit = int((flags & labels).sum())
    precision = hit / int(flags.sum()) if flags.sum() else 0.0
    recall = hit / int(labels.sum()) if labels.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    events, delays = _runs(labels), []
    for a, b in events:
        found = np.flatnonzero(flags[a : b + 1])
        if len(found):
            delays.append((ts_s[a + found[0]] - ts_s[a]) / 60)
    false = sum(1 for a, b in _runs(flags) if not labels[a : b + 1].any())
    days = (ts_s[-1] - ts_s[0]) / 86400 if len(ts_s) > 1 else 0.0
    return Scores(
        precision,
        recall,
        f1,
        len(events),
        len(delays),
        float(np.median(delays)) if delays else None,
        float(false / days) if days else float("nan"),
    )


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def _f1_of(args) -> float:
    series, settings, utc_offset_h = args
    return score(run(series, settings, utc_offset_h).flags, series.labels, series.ts_s).f1


def candidates_of(base: Mapping[str, float]) -> list[dict[str, float]]:
    """``base`` first, then the grid over it (without repeats)."""
    out = [dict(base)]
    for values in itertools.product(*GRID.values()):
        candidate = {**base, **dict(zip(GRID, values))}
        if candidate not in out:
            out.append(candidate)
    return out


def calibrate(
    train: Series,
    base: Mapping[str, float],
    utc_offset_h: float,
    workers: int = 2,
    progress: Callable[[], None] | None = None,
) -> tuple[dict[str, float], float]:
    """The grid's settings (over ``base``) with the best per-minute F1 on ``train``; ties keep the
    earlier candidate, and ``base`` itself comes first."""
    candidates = candidates_of(base)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        f1s = []
        for f1 in pool.map(_f1_of, [(train, c, utc_offset_h) for c in candidates]):
            f1s.append(f1)
            if progress is not None:
                progress()
    best = int(np.argmax(f1s))
    return candidates[best], f1s[best]


def write_flags(path: Path, series: Series, result: Run) -> None:
    """One line per row: ``Time,flag,score`` (flag from the screen's alarm state, score its evidence)."""
    pd.DataFrame({"Time": series.time, "flag": result.flags.astype(int), "score": np.round(result.scores, 4)}).to_csv(
        path, index=False
    )


def score_flags_file(path: Path, series: Series, start: int = 0) -> Scores:
    """Score the rows from ``start`` of a file ``write_flags`` wrote against the series' labels
    (an independent check of what was written)."""
    flags = pd.read_csv(path)
    if list(flags["Time"].astype(str)) != list(series.time.astype(str)):
        raise ValueError(f"{path}: its Time column is not the series'")
    return score(flags["flag"].to_numpy()[start:].astype(bool), series.labels[start:], series.ts_s[start:])


# --- through the pipeline ----------------------------------------------------------------------------


def reading_payloads(
    series: Series, sensor_id: str, station: str, district: str, utc_offset_h: float
) -> list[tuple[str, bytes]]:
    """The rows as the station would send them: (MQTT topic suffix, reading JSON), one per row that
    has a value (a missing value is left out of the reading, as a station does)."""
    units = {p: spec for p, spec in _units().items()}
    zone = timezone(timedelta(hours=utc_offset_h))
    out = []
    for t, row in zip(series.ts_s, series.values):
        values = {p: {"value": float(v), "unit": units[p]} for p, v in zip(series.parameters, row) if np.isfinite(v)}
        if not values:
            continue
        ts = pd.Timestamp(t, unit="s", tz="UTC").tz_convert(zone).isoformat()
        out.append(
            (
                f"{district}/water/{sensor_id}",
                orjson.dumps(
                    {
                        "sensor_id": sensor_id,
                        "kind": "water",
                        "station": station,
                        "district": district,
                        "ts": ts,
                        "values": values,
                    }
                ),
            )
        )
    return out


def _units() -> dict[str, str]:
    from pipeline.city import load_toml
    from pipeline.schemas import Kind
    from pipeline.validation import parameter_specs

    return {
        p: s.unit for p, s in parameter_specs(load_toml("parameters"))[Kind.water].items() if p in water_parameters()
    }


def stream(settings, series: Series, city, timeout_s: float = 120.0, log: Callable[[str], None] = print) -> list[float]:
    """Publish ``series`` as readings of ``STATION`` over MQTT (the services, worker and bridge must
    be running) and return the event times of the water screen's alerts the agent raised for it."""
    from pipeline.mqtt import make_client
    from pipeline.processes import wait_until

    station = city.stations[STATION]
    sensor_id = f"wq-{STATION}"
    payloads = reading_payloads(series, sensor_id, STATION, station.district, city.utc_offset_h)
    client = make_client(settings.mqtt, f"{settings.mqtt.client_id_prefix}-gecco-{int(time.time() * 1000) % 10**8}")
    acked: list[int] = []
    client.on_publish = lambda c, u, mid, rc, p: acked.append(mid)
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    try:
        for topic, payload in payloads:
            client.publish(f"{settings.mqtt.topic_root}/{topic}", payload, qos=1)
        wait_until(lambda: len(acked) >= len(payloads), timeout_s, what="the broker to acknowledge every reading")
    finally:
        client.disconnect()
        client.loop_stop()
    log(f"published {len(payloads):,} readings of {sensor_id}; reading the agent's alerts back ...")
    last = orjson.loads(payloads[-1][1])["ts"]
    return asyncio.run(_alerts(settings, sensor_id, pd.Timestamp(last).timestamp(), timeout_s))


async def _alerts(settings, sensor_id: str, last_ts_s: float, timeout_s: float) -> list[float]:
    """The screen's alerts for ``sensor_id`` until the agent has screened its last reading (the
    readings sink has stored it) and nothing new has come for a few seconds."""
    from aiokafka import AIOKafkaConsumer

    from pipeline.influx import influxql
    from pipeline.schemas import Alert
    from pipeline.topics import ALERTS

    consumer = AIOKafkaConsumer(
        ALERTS, bootstrap_servers=settings.kafka.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    stored_at = None
    try:
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    alert = Alert.model_validate_json(r.value)
                    if alert.sensor_id == sensor_id and alert.rule == "statistical":
                        found[alert.alert_id] = alert.ts.timestamp()
            if stored_at is None:
                rows = influxql(
                    settings.influx,
                    f"SELECT count(\"ph\") FROM readings WHERE sensor_id = '{sensor_id}' "
                    f"AND time >= {int(last_ts_s * 1e9)}",
                )
                if rows:
                    stored_at = time.monotonic()
            elif time.monotonic() - stored_at > 5:
                break
    finally:
        await consumer.stop()
    return sorted(found.values())


def same_alerts(batch_s: Sequence[float], streamed_s: Sequence[float], tolerance_s: float = 0.5) -> bool:
    return len(batch_s) == len(streamed_s) and all(abs(a - b) <= tolerance_s for a, b in zip(batch_s, streamed_s))
