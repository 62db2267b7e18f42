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
    warnings: pd.DataFrame  # time, incident_id, category, tier, district, time_to_warn_s
    lifecycle: pd.DataFrame  # time, incident_id, stage, source
    alerts: pd.DataFrame  # time, category, time_to_alert_s
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
        warnings=_frame(
            settings,
            f'SELECT "incident_id", "category", "tier", "district", "time_to_warn_s" FROM warnings WHERE {since}',
        ),
        lifecycle=_frame(settings, f'SELECT "incident_id", "stage", "source" FROM lifecycle WHERE {since}'),
        alerts=_frame(
            settings, f'SELECT "category", "time_to_alert_s" FROM alerts WHERE {since} AND "resolved" = \'false\''
        ),
        deliveries=_frame(
            settings, f'SELECT "department", "channel", "ok", "since_reading_s" FROM deliveries WHERE {since}'
        ),
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


REPLAYED_AFTER_S = 3600  # a warning issued this long after its reading's time came from replayed (or simulated) data


def highest_tier_counts(warnings: pd.DataFrame) -> pd.DataFrame:
    """Incidents (not warnings) per category and highest tier, tiers in their order, blue to red."""
    if warnings.empty:
        return pd.DataFrame()
    tiers = list(TIER_COLOURS)
    top = warnings.assign(rank=warnings["tier"].map(tiers.index)).sort_values("rank").groupby("incident_id").last()
    counts = pd.crosstab(top["category"], top["tier"])
    return counts.reindex(columns=[t for t in tiers if t in counts.columns]).rename_axis(
        index="category", columns="highest tier"
    )


def replayed_incidents(warnings: pd.DataFrame) -> set[str]:
    """Incidents whose warnings came long after their readings' time: replayed or simulated data."""
    if warnings.empty or "time_to_warn_s" not in warnings:
        return set()
    return set(warnings.loc[warnings["time_to_warn_s"] > REPLAYED_AFTER_S, "incident_id"])


def humane(seconds: float) -> str:
    """A duration for people (not 2.16e+04 s).

    >>> humane(0.31), humane(21600.0), humane(95.0)
    ('0.31 s', '6 h 00 min', '1 min 35 s')
    """
    if pd.isna(seconds):
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.2g} s" if s < 10 else f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _timeline(loop: pd.DataFrame, now: datetime, replayed: set[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    rows = loop.dropna(subset=["sensed"]) if "sensed" in loop else loop.iloc[:0]
    rows = rows.assign(category=rows.get("category", pd.Series("", index=rows.index)).fillna("")).sort_values(
        ["category", "sensed"]
    )
    fig, ax = plt.subplots(figsize=(10, max(2.0, 0.3 * len(rows) + 1)))
    labels, previous = [], None
    for i, (incident, r) in enumerate(rows.iterrows()):
        end = r.get("closed") if pd.notna(r.get("closed")) else pd.Timestamp(now)
        colour = TIER_COLOURS.get(r.get("tier"), "grey")
        ax.plot(
            [r["sensed"], end],
            [i, i],
            color=colour,
            linewidth=6,
            solid_capstyle="butt",
            alpha=0.45 if incident in replayed else 1,
        )
        if pd.notna(r.get("acknowledged")):
            ax.plot([r["acknowledged"]], [i], marker="|", color="black", markersize=12)
        if r["category"] != previous:  # each category named once, above its incidents
            if previous is not None:
                ax.axhline(i - 0.5, color="#999", linewidth=0.5)
            ax.annotate(
                r["category"] or "?",
                (0, i - 0.45),
                xycoords=("axes fraction", "data"),
                fontsize=8,
                fontweight="bold",
                va="bottom",
            )
            previous = r["category"]
        area = incident.split(":")[1] if incident.count(":") >= 2 else incident
        labels.append(f"{area} {r['sensed']:%m-%d %H:%M}{' (replay)' if incident in replayed else ''}")
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_title(
        "incidents: sensed to closed (colour: highest tier; pale: replayed data; tick: acknowledged)", fontsize=9
    )
    ax.invert_yaxis()
    return _png(fig)


def _boxes(loop: pd.DataFrame, deliveries: pd.DataFrame, alerts: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
    steps = [c for c in loop.columns if c.endswith(" min")] if not loop.empty else []
    series = [(c.removesuffix(" min").replace(" -> ", "→\n"), loop[c].dropna()) for c in steps]
    _box(left, series, "minutes", "no closed-loop steps yet")
    left.set_title("closed-loop steps")
    speed = [
        ("reading → alert", alerts.get("time_to_alert_s", pd.Series(dtype=float)).dropna()),
        ("reading → delivery", deliveries.get("since_reading_s", pd.Series(dtype=float)).dropna()),
    ]
    _box(right, speed, "seconds (log)", "no alerts or deliveries yet")
    if any((s > 0).any() for _, s in speed):
        right.set_yscale("log")
    right.set_title("detection and delivery (event time to record)")
    fig.tight_layout()
    return _png(fig)


def _box(ax, series: list[tuple[str, pd.Series]], unit: str, nothing: str) -> None:
    """A box per series; a series with no data is named "(none)" on its axis, not drawn as an empty box."""
    if not series or all(s.empty for _, s in series):
        ax.text(0.5, 0.5, nothing, ha="center", va="center", transform=ax.transAxes, color="#666")
        ax.set_xticks([])
        return
    ax.boxplot([s if not s.empty else [float("nan")] for _, s in series], showfliers=True)
    ax.set_xticks(
        range(1, len(series) + 1),
        [f"{name}{' (none)' if s.empty else f' (n={len(s)})'}" for name, s in series],
        fontsize=7,
    )
    ax.set_ylabel(unit)


def _table(frame: pd.DataFrame) -> str:
    return (
        frame.to_html(border=0, classes="t", float_format=lambda v: f"{v:.3g}", na_rep="")
        if not frame.empty
        else "<p>(none)</p>"
    )


STYLE = (
    "body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:24px;color:#1d2329}"
    "table.t{border-collapse:collapse;font-size:13px}"
    "table.t td,table.t th{padding:4px 8px;border-bottom:1px solid #ddd}"
    "img{max-width:100%}.replay{background:#fff3cd;padding:8px 12px}"
)


def render(data: ReportData, days: float, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    loop = loop_times(data.lifecycle, data.warnings)
    replayed = replayed_incidents(data.warnings)
    parts = [
        *_summary(data, days, now, replayed),
        "<h2>Incidents by category and highest tier</h2>",
        _table(highest_tier_counts(data.warnings)),
        "<h2>Timeline</h2>",
        _timeline(loop, now, replayed) if not loop.empty else "<p>(no incidents)</p>",
        "<h2>Closed-loop times (median per category)</h2>",
        _table(_median_steps_per_category(loop)),
        "<h2>Detection and delivery</h2>",
        _boxes(loop, data.deliveries, data.alerts),
        "<h2>Deliveries per department and channel (time since the reading)</h2>",
        _table(_deliveries_per_department(data.deliveries)),
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Yuflow report</title>"
        f"<style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + f"<p style='color:#888'>generated {html.escape(now.isoformat())}</p></body></html>"
    )


def _summary(data: ReportData, days: float, now: datetime, replayed: set[str]) -> list[str]:
    """The heading, the counts, and (when there are any) how many incidents come from replayed data."""
    incidents = data.warnings["incident_id"].nunique() if not data.warnings.empty else 0
    return [
        f"<h1>Yuflow closed-loop report</h1><p>Last {days:g} day(s) to {now:%Y-%m-%d %H:%M} UTC: "
        f"{incidents} incident(s) warned, {len(data.warnings)} warning(s), "
        f"{len(data.deliveries)} delivery record(s).</p>",
        (
            f"<p class='replay'><b>{len(replayed)} of the {incidents} incident(s) "
            f"come from replayed or simulated data</b> (warned "
            f'more than {REPLAYED_AFTER_S // 3600} h after their readings\' time): marked "(replay)" and pale below; '
            f"their delays are not the live pipeline's.</p>"
            if replayed
            else ""
        ),
    ]


def _median_steps_per_category(loop: pd.DataFrame) -> pd.DataFrame:
    """The median time of each closed-loop step per category, for people."""
    steps = [c for c in loop.columns if c.endswith(" min")] if not loop.empty else []
    if not steps or "category" not in loop:
        return pd.DataFrame()
    return (
        loop.groupby("category")[steps]
        .median()
        .map(lambda m: humane(m * 60))
        .rename(columns=lambda c: c.removesuffix(" min"))
    )


def _deliveries_per_department(deliveries: pd.DataFrame) -> pd.DataFrame:
    """Deliveries, failures, and the median and longest time since the reading per department and channel."""
    if deliveries.empty:
        return pd.DataFrame()
    table = deliveries.groupby(["department", "channel"]).agg(
        deliveries=("since_reading_s", "size"),
        failed=("ok", lambda s: int((s.astype(str) != "true").sum())),
        median=("since_reading_s", "median"),
        max=("since_reading_s", "max"),
    )
    table[["median", "max"]] = table[["median", "max"]].map(humane)
    return table
