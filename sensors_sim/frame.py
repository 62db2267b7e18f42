"""The last step of a simulation: every feed and camera detection as one long frame, a row per
reading (one parameter value), in publishing order, with the message faults applied.

Rows of one message share ``msg``; ``send_ms`` is when it is published (late messages later than
their ``ts_ms``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from sensors_sim.fault_injection import message_faults
from sensors_sim.run import Feed, Run

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
CATEGORIES = ("kind", "sensor_id", "site", "district", "parameter", "unit", "detection")


def to_frame(run: Run, specs: Mapping[str, Mapping]) -> pd.DataFrame:
    """All feeds and detections as one long frame in publishing order, with message faults applied."""
    start_ms = int(run.scn.start.timestamp() * 1000)
    parts = []
    msg_offset = 0
    for feed in run.feeds:
        parts += _feed_parts(feed, start_ms, msg_offset, specs)
        msg_offset += len(feed.t_s) * len(feed.sensor_ids)
    if run.cams.t_s:
        parts.append(_camera_part(run, start_ms, msg_offset, specs))
    unsent = [c for c in COLUMNS if c not in ("send_ms", "malformed")]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=unsent)
    frame["send_ms"] = frame["ts_ms"].astype(np.int64)
    frame["malformed"] = False
    frame = message_faults(run, frame)
    order = np.lexsort((frame["msg"].to_numpy(), frame["send_ms"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    for c in CATEGORIES:
        frame[c] = frame[c].astype("category")
    return frame[COLUMNS]


def _feed_parts(feed: Feed, start_ms: int, msg_offset: int, specs: Mapping[str, Mapping]) -> list[pd.DataFrame]:
    """A feed's readings, a frame per parameter; message ``msg_offset + t * sensors + s`` is sensor
    ``s`` at time ``t`` (dropped ones left out)."""
    T, S = len(feed.t_s), len(feed.sensor_ids)
    keep = ~feed.dropped.ravel() if feed.dropped is not None else np.ones(T * S, bool)
    msg = (msg_offset + np.arange(T * S))[keep]
    t_idx, s_idx = np.divmod(np.arange(T * S), S)
    t_idx, s_idx = t_idx[keep], s_idx[keep]
    return [
        pd.DataFrame(
            {
                "msg": msg,
                "ts_ms": start_ms + (feed.t_s[t_idx] * 1000).astype(np.int64),
                "kind": feed.kind,
                "sensor_id": np.asarray(feed.sensor_ids)[s_idx],
                "site": np.asarray(feed.sites)[s_idx],
                "district": np.asarray(feed.districts)[s_idx],
                "parameter": p,
                "value": np.round(values.ravel()[keep], 4),
                "unit": specs[feed.kind][p]["unit"],
                "detection": "",
                "confidence": np.nan,
            }
        )
        for p, values in feed.values.items()
    ]


def _camera_part(run: Run, start_ms: int, msg_offset: int, specs: Mapping[str, Mapping]) -> pd.DataFrame:
    """The camera detections, one message each, numbered after the feeds' messages."""
    cams = run.cams
    t = np.concatenate(cams.t_s)
    cam = np.concatenate(cams.camera)
    sensors = [run.city.sensors[c] for c in run.camera_ids]
    lengths = [len(a) for a in cams.t_s]
    return pd.DataFrame(
        {
            "msg": msg_offset + np.arange(len(t)),
            "ts_ms": start_ms + (t * 1000).astype(np.int64),
            "kind": "camera",
            "sensor_id": np.asarray(run.camera_ids)[cam],
            "site": np.asarray([s.site for s in sensors])[cam],
            "district": np.asarray([s.district for s in sensors])[cam],
            "parameter": np.repeat(cams.parameter, lengths),
            "value": np.concatenate(cams.value).astype(float),
            "unit": np.repeat([specs["camera"][p]["unit"] for p in cams.parameter], lengths),
            "detection": np.repeat(cams.detection, lengths),
            "confidence": np.concatenate(cams.confidence).astype(float),
        }
    )


__all__ = ["COLUMNS", "to_frame"]
