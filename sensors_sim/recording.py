"""A simulator run as data: one row per reading (one parameter value), grouped into messages.

Columns: ``msg`` (message number), ``send_ms`` (when the sensor sends it: later than ``ts_ms`` for
late messages), ``ts_ms`` (reading time), ``kind``, ``sensor_id``, ``site``, ``district``,
``parameter``, ``value``, ``unit``, ``detection`` and ``confidence`` (cameras), ``malformed``.
Rows are in publishing order. Recordings are Parquet (columnar, compact) or JSONL (one wire message
a line: ``{"send_ms", "topic", "payload"}``); the ground truth goes beside them as ``*.truth.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from pipeline.topics import mqtt_topic
from sensors_sim.truth import GroundTruth

COLUMNS = [
    "msg",
    "send_ms",
    "ts_ms",
    "kind",
    "sensor_id",
    "site",
    "district",
    "parameter",
    "value",
    "unit",
    "detection",
    "confidence",
    "malformed",
]


@dataclass
class Recording:
    frame: pd.DataFrame
    truth: GroundTruth

    @property
    def readings(self) -> int:
        return len(self.frame)

    @property
    def messages(self) -> int:
        return int(self.frame["msg"].nunique())


def truth_path(path: Path) -> Path:
    return path.with_name(path.name.split(".")[0] + ".truth.json")


def save(recording: Recording, path: Path) -> Path:
    """Write ``path`` (.parquet or .jsonl) and its ``.truth.json``; both byte-identical for equal runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        recording.frame.to_parquet(path, index=False, compression="zstd")
    elif path.suffix == ".jsonl":
        with open(path, "wb") as f:
            for send_ms, topic, payload in messages(recording.frame, "yuflow"):
                f.write(
                    orjson.dumps(
                        {"send_ms": send_ms, "topic": topic, "payload": payload.decode(errors="backslashreplace")}
                    )
                    + b"\n"
                )
    else:
        raise ValueError(f"unknown recording format {path.suffix!r}: use .parquet or .jsonl")
    truth_path(path).write_text(recording.truth.model_dump_json(indent=1))
    return path


def load_truth(path: Path) -> GroundTruth:
    return GroundTruth.model_validate_json(truth_path(Path(path)).read_text())


def load_frame(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def _iso_ms(ts_ms: np.ndarray) -> np.ndarray:
    return np.char.add(np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms"), "Z")


def messages(frame: pd.DataFrame, topic_root: str, shift_ms: int = 0) -> Iterator[tuple[int, str, bytes]]:
    """(send_ms, MQTT topic, payload) in publishing order; ``shift_ms`` moves every timestamp."""
    if frame.empty:
        return
    msg = frame["msg"].to_numpy()
    starts = np.concatenate([[0], np.flatnonzero(msg[1:] != msg[:-1]) + 1])
    ends = np.concatenate([starts[1:], [len(msg)]])
    send = frame["send_ms"].to_numpy() + shift_ms
    iso = _iso_ms(frame["ts_ms"].to_numpy()[starts] + shift_ms)
    cols = {
        c: frame[c].astype(str).to_numpy()
        for c in ("kind", "sensor_id", "site", "district", "parameter", "unit", "detection")
    }
    value = frame["value"].to_numpy()
    confidence = frame["confidence"].to_numpy()
    malformed = frame["malformed"].to_numpy()
    for i, (a, b) in enumerate(zip(starts, ends)):
        payload = {
            "sensor_id": cols["sensor_id"][a],
            "kind": cols["kind"][a],
            "station": cols["site"][a],
            "district": cols["district"][a],
            "ts": iso[i],
            "values": {cols["parameter"][k]: {"value": float(value[k]), "unit": cols["unit"][k]} for k in range(a, b)},
        }
        if cols["detection"][a]:
            payload["detection"] = cols["detection"][a]
            payload["confidence"] = float(confidence[a])
        raw = orjson.dumps(payload)
        if malformed[a]:
            raw = raw[: len(raw) // 2]  # cut off mid-message, as a broken link would
        yield int(send[a]), mqtt_topic(topic_root, cols["district"][a], cols["kind"][a], cols["sensor_id"][a]), raw


def jsonl_messages(path: Path) -> Iterator[tuple[int, str, bytes]]:
    with open(path, "rb") as f:
        for line in f:
            record = json.loads(line)
            yield record["send_ms"], record["topic"], record["payload"].encode()
