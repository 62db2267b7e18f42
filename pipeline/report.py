"""``yuflow report``: an HTML page on the closed loop, from InfluxDB, with plots.

Three questions: which incidents happened when (a timeline per category, coloured by tier, from
sensed to closed or to now); how long each step of the loop took (sensed -> warned -> delivered
-> acknowledged -> closed, per category); and how fast the pipeline detected and delivered
(reading -> alert, reading -> delivery per department). ``frames`` fetches the data; ``render``
is pure (frames in, HTML out) so it is tested without a database.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from pipeline.influx import influxql
from pipeline.settings import InfluxSettings

TIER_COLOURS = {"blue": "#1f5fbf", "yellow": "#f2c200", "orange": "#f07d00", "red": "#d31f1f"}
STEPS = (("sensed", "warned"), ("warned", "delivered"), ("warned", "acknowledged"), ("warned", "closed"))


@dataclass
class ReportData:
    warnings: pd.DataFrame    # time, incident_id, category, tier, district, time_to_warn_s
    lifecycle: pd.DataFrame   # time, incident_id, stage, source
    alerts: pd.DataFrame      # time, category, time_to_alert_s
    deliveries: pd.DataFrame  # time, department, channel, ok, since_reading_s


def _frame(settings: InfluxSettings, query: str) -> pd.DataFrame:
    series = influxql(settings, query, timeout_s=30)
    if not series:
        return pd.DataFrame()
    frame = pd.DataFrame([row for s in series for row in s["values"]], columns=series[0]["columns"])
    frame["time"] = pd.to_datetime(frame["time"], unit="ms", utc=True)
    return frame


def frames(settings: InfluxSettings, days: float) -> ReportData:
    since = f"time > now() - {int(days * 86400)}s"
    return ReportData(
        warnings=_frame(settings, f'SELECT "incident_id", "category", "tier", "district", "time_to_warn_s" FROM warnings WHERE {since}'),
        lifecycle=_frame(settings, f'SELECT "incident_id", "stage", "source" FROM lifecycle WHERE {since}'),
        alerts=_frame(settings, f'SELECT "category", "time_to_alert_s" FROM alerts WHERE {since} AND "resolved" = \'false\''),
        deliveries=_frame(settings, f'SELECT "department", "channel", "ok", "since_reading_s" FROM deliveries WHERE {since}'),
    )


def loop_times(lifecycle: pd.DataFrame, warnings: pd.DataFrame) -> pd.DataFrame:
    """Per incident: the first time of each stage, its category and highest tier, and each step's minutes."""
    if lifecycle.empty:
        return pd.DataFrame()
    first = lifecycle.groupby(["incident_id", "stage"])["time"].min().unstack()
    tiers = list(TIER_COLOURS)
    if not warnings.empty:
        top = warnings.assign(rank=warnings["tier"].map(tiers.index)).sort_values("rank").groupby("incident_id").last()
        first = first.join(top[["category", "tier"]], how="left")
    for a, b in STEPS:
        if a in first and b in first:
            first[f"{a} -> {b} min"] = (first[b] - first[a]).dt.total_seconds() / 60
    return first


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _timeline(loop: pd.DataFrame, now: datetime) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = loop.dropna(subset=["sensed"]).sort_values("sensed") if "sensed" in loop else loop.iloc[:0]
    fig, ax = plt.subplots(figsize=(10, max(2.0, 0.28 * len(rows) + 1)))
    for i, (incident, r) in enumerate(rows.iterrows()):
        end = r.get("closed") if pd.notna(r.get("closed")) else pd.Timestamp(now)
        colour = TIER_COLOURS.get(r.get("tier"), "grey")
        ax.plot([r["sensed"], end], [i, i], color=colour, linewidth=6, solid_capstyle="butt")
        if pd.notna(r.get("acknowledged")):
            ax.plot([r["acknowledged"]], [i], marker="|", color="black", markersize=12)
    ax.set_yticks(range(len(rows)), [f"{r.get('category', '')} {i[:48]}" for i, r in rows.iterrows()], fontsize=7)
    ax.set_title("incidents: sensed to closed (bar colour: highest tier; tick: acknowledged)")
    ax.invert_yaxis()
    return _png(fig)


def _boxes(loop: pd.DataFrame, deliveries: pd.DataFrame, alerts: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
    steps = [c for c in loop.columns if c.endswith(" min")] if not loop.empty else []
    if steps:
        left.boxplot([loop[c].dropna() for c in steps], showfliers=True)
        left.set_xticks(range(1, len(steps) + 1), [c.removesuffix(" min") for c in steps], fontsize=7, rotation=15)
        left.set_ylabel("minutes")
    left.set_title("closed-loop steps")
    speed = [("reading -> alert", alerts.get("time_to_alert_s", pd.Series(dtype=float)).dropna()),
             ("reading -> delivery", deliveries.get("since_reading_s", pd.Series(dtype=float)).dropna())]
    right.boxplot([s for _, s in speed], showfliers=True)
    right.set_xticks([1, 2], [name for name, _ in speed], fontsize=8)
    if any((s > 0).any() for _, s in speed):
        right.set_yscale("log")
    right.set_ylabel("seconds")
    right.set_title("detection and delivery (event time to record)")
    return _png(fig)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(border=0, classes="t", float_format=lambda v: f"{v:.3g}", na_rep="") if not frame.empty else "<p>(none)</p>"


def render(data: ReportData, days: float, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    loop = loop_times(data.lifecycle, data.warnings)
    by_tier = (data.warnings.pivot_table(index="category", columns="tier", values="incident_id", aggfunc="nunique", fill_value=0)
               if not data.warnings.empty else pd.DataFrame())
    steps = [c for c in loop.columns if c.endswith(" min")] if not loop.empty else []
    per_category = loop.groupby("category")[steps].median() if steps and "category" in loop else pd.DataFrame()
    delivery = (data.deliveries.groupby(["department", "channel"]).agg(deliveries=("since_reading_s", "size"),
                                                                       failed=("ok", lambda s: int((s.astype(str) != "true").sum())),
                                                                       median_s=("since_reading_s", "median"), max_s=("since_reading_s", "max"))
                if not data.deliveries.empty else pd.DataFrame())
    parts = [f"<h1>Yuflow closed-loop report</h1><p>Last {days:g} day(s) to {now:%Y-%m-%d %H:%M} UTC: "
             f"{data.warnings['incident_id'].nunique() if not data.warnings.empty else 0} incident(s) warned, "
             f"{len(data.warnings)} warning(s), {len(data.deliveries)} delivery record(s).</p>",
             "<h2>Incidents by category and highest tier</h2>", _table(by_tier),
             "<h2>Timeline</h2>", _timeline(loop, now) if not loop.empty else "<p>(no incidents)</p>",
             "<h2>Closed-loop times (median minutes per category)</h2>", _table(per_category),
             "<h2>Detection and delivery</h2>", _boxes(loop, data.deliveries, data.alerts),
             "<h2>Deliveries per department and channel (seconds since the reading)</h2>", _table(delivery)]
    style = ("body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:24px;color:#1d2329}"
             "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:4px 8px;border-bottom:1px solid #ddd}"
             "img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Yuflow report</title><style>{style}</style></head><body>" \
           + "\n".join(parts) + f"<p style='color:#888'>generated {html.escape(now.isoformat())}</p></body></html>"
