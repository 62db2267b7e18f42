"""The fault step of a simulation: sensor faults on the feeds' arrays, camera false positives, and
late, duplicate and malformed messages; each recorded as a ``fault`` ground-truth event.

The fault models themselves (spikes, stuck, drift, dropouts) are in ``sensors_sim.faults``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import numpy as np
import pandas as pd

from sensors_sim import water
from sensors_sim.faults import FaultRecord, apply_array_faults
from sensors_sim.run import Feed, Run
from sensors_sim.scenario import FEEDS
from sensors_sim.truth import TruthEvent

SPIKE_SCALE = {**water.NOISE, "rain": 2.0, "interval_s": 0.0, "count": 50.0, "flow_in": 5.0, "flow_out": 5.0}


def inject_sensor_faults(run: Run, specs: Mapping[str, Mapping]) -> None:
    """Spikes, stuck values, drift and dropouts on every feed; values then clipped to each
    parameter's physical range (``specs``: config/parameters.toml)."""
    scn = run.scn
    for feed in run.feeds:
        feed.dropped, records = apply_array_faults(
            feed.values,
            scn.faults,
            float(feed.t_s[1] - feed.t_s[0]) if len(feed.t_s) > 1 else 60.0,
            np.random.default_rng([scn.seed, 7, FEEDS.index(feed.kind)]),
            SPIKE_SCALE,
        )
        for p, v in feed.values.items():
            np.clip(v, specs[feed.kind][p]["min"], specs[feed.kind][p]["max"], out=v)
        run.truth += _fault_truth(run, feed, records)


def _fault_truth(run: Run, feed: Feed, records: list[FaultRecord]) -> list[TruthEvent]:
    step = float(feed.t_s[1] - feed.t_s[0]) if len(feed.t_s) > 1 else 60.0
    return [
        TruthEvent(
            id=f"fault-{r.kind}-{feed.sensor_ids[r.sensor_index]}-{r.start_index}-{r.parameter or 'all'}",
            type="fault",
            start=run.at(feed.t_s[r.start_index]),
            end=run.at(feed.t_s[r.end_index] + step - 1),
            affected_sensors=[feed.sensor_ids[r.sensor_index]],
            details={"fault": r.kind, "parameter": r.parameter},
        )
        for r in records
    ]


def false_oil_detections(run: Run) -> None:
    """Sun glint and foam: rare, small, low-confidence sheen detections (camera false positives)."""
    r, t_cam = run.rng["faults"], run.t_cam
    oil_cams = [c for c in run.city.cameras.values() if "oil_sheen" in c.detects]
    weeks = run.scn.duration_s / (7 * 86400)
    for cam in oil_cams:
        for k in range(r.poisson(0.3 * weeks)):
            t = float(t_cam[int(r.integers(0, len(t_cam)))])
            run.cams.add(
                run.camera_index[cam.id],
                np.array([t]),
                "oil_area",
                np.array([round(float(r.uniform(2, 25)), 1)]),
                "oil_sheen",
                np.array([round(float(r.uniform(0.3, 0.55)), 3)]),
            )
            run.truth.append(
                TruthEvent(
                    id=f"fault-false_detection-{cam.id}-{k}",
                    type="fault",
                    start=run.at(t),
                    end=run.at(t),
                    affected_sensors=[cam.id],
                    details={"fault": "false_detection"},
                )
            )


def message_faults(run: Run, frame: pd.DataFrame) -> pd.DataFrame:
    """Late and duplicate messages (later ``send_ms``; duplicates as extra rows) and malformed ones
    (``malformed`` set), over the frame's messages."""
    if frame.empty:
        return frame
    r, f = run.rng["messages"], run.scn.faults
    msgs = np.unique(frame["msg"].to_numpy())
    late = msgs[r.random(len(msgs)) < f.late_fraction]
    delay = pd.Series(r.uniform(60, f.late_max_s, len(late)) * 1000, index=late).astype(np.int64)
    is_late = frame["msg"].isin(late)
    frame.loc[is_late, "send_ms"] += frame.loc[is_late, "msg"].map(delay).to_numpy()
    dup = msgs[r.random(len(msgs)) < f.duplicate_fraction]
    copies = frame[frame["msg"].isin(dup)].copy()
    copies["send_ms"] += (
        (copies["msg"].map(pd.Series(r.uniform(0, 120, len(dup)) * 1000, index=dup))).astype(np.int64).to_numpy()
    )
    copies["msg"] += int(msgs.max()) + 1
    broken = (
        r.choice(msgs, size=min(f.malformed, len(msgs)), replace=False)
        if f.malformed
        else np.array([], dtype=msgs.dtype)
    )
    frame.loc[frame["msg"].isin(broken), "malformed"] = True
    for kind, chosen in (("late", late), ("duplicate", dup), ("malformed", broken)):
        if len(chosen):
            run.truth.append(
                TruthEvent(
                    id=f"fault-{kind}-messages",
                    type="fault",
                    start=run.scn.start,
                    end=run.scn.start + timedelta(seconds=run.scn.duration_s),
                    affected_sensors=sorted(set(frame.loc[frame["msg"].isin(chosen), "sensor_id"])),
                    details={"fault": kind, "messages": int(len(chosen))},
                )
            )
    return pd.concat([frame, copies], ignore_index=True)


__all__ = ["SPIKE_SCALE", "false_oil_detections", "inject_sensor_faults", "message_faults"]
