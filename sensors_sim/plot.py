"""A picture of a simulator run: the series that matter, with ground-truth events shaded."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sensors_sim.recording import Recording  # noqa: E402

PANELS = [  # (kind, parameter, y label, how many sensors at most)
    ("water", "do", "dissolved oxygen (mg/L)", 6),
    ("water", "nh3n", "NH3-N (mg/L)", 6),
    ("water", "oil", "petroleum (mg/L)", 6),
    ("rain", "rain", "rain per interval (mm)", 6),
    ("crowd", "count", "persons present", 6),
    ("camera", "oil_area", "oil sheen area (m²)", 6),
]
EVENT_COLOURS = {
    "release": "tab:red",
    "oil_spill": "black",
    "do_sag": "tab:purple",
    "storm": "tab:blue",
    "crowd_surge": "tab:orange",
}


def _interesting(frame: pd.DataFrame, truth_sensors: set[str], limit: int) -> list[str]:
    """Sensors named by the ground truth first, then the most variable ones."""
    spread = frame.groupby("sensor_id", observed=True)["value"].std().sort_values(ascending=False)
    chosen = [s for s in spread.index if s in truth_sensors][:limit]
    return chosen + [s for s in spread.index if s not in chosen][: max(0, limit - len(chosen))]


def plot_recording(recording: Recording, path: Path) -> Path:
    frame = recording.frame
    events = [e for e in recording.truth.events if e.type not in ("fault", "visitors")]
    truth_sensors = {s for e in events for s in e.affected_sensors}
    panels = [(k, p, label, n) for k, p, label, n in PANELS if ((frame["kind"] == k) & (frame["parameter"] == p)).any()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(13, 2.6 * len(panels)), sharex=True, squeeze=False)
    for ax, (kind, parameter, label, n) in zip(axes[:, 0], panels):
        rows = frame[(frame["kind"] == kind) & (frame["parameter"] == parameter)]
        for sensor in _interesting(rows, truth_sensors, n):
            series = rows[rows["sensor_id"] == sensor].sort_values("ts_ms")
            ax.plot(
                pd.to_datetime(series["ts_ms"], unit="ms"),
                series["value"],
                lw=0.9,
                marker="." if kind == "camera" else None,
                ls="" if kind == "camera" else "-",
                label=sensor,
            )
        for e in events:
            ax.axvspan(
                pd.Timestamp(e.start).tz_convert(None),
                pd.Timestamp(e.end).tz_convert(None),
                color=EVENT_COLOURS.get(e.type, "grey"),
                alpha=0.12,
            )
            if e.expected_detection is not None:
                ax.axvline(
                    pd.Timestamp(e.expected_detection).tz_convert(None),
                    color=EVENT_COLOURS.get(e.type, "grey"),
                    ls="--",
                    lw=0.8,
                )
        ax.set_ylabel(label)
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    title = f"{recording.truth.scenario} (seed {recording.truth.seed}): " + (
        ", ".join(f"{e.type} {e.source_id or ''}".strip() for e in events) or "no events"
    )
    axes[0, 0].set_title(title + "  — shaded: events, dashed: expected detection (UTC)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
