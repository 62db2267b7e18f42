"""The closed-loop report from frames (no database): loop times per incident and an HTML page with plots."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pandas as pd

from pipeline.report import ReportData, highest_tier_counts, loop_times, render

T = pd.Timestamp("2026-11-24 06:00", tz="UTC")


def data() -> ReportData:
    minute = pd.Timedelta(minutes=1)
    lifecycle = pd.DataFrame(
        [
            (T, "water:a:do:1", "sensed", "system"),
            (T + 2 * minute, "water:a:do:1", "warned", "system"),
            (T + 2 * minute, "water:a:do:1", "delivered", "system"),
            (T + 9 * minute, "water:a:do:1", "acknowledged", "operator"),
            (T + 60 * minute, "water:a:do:1", "closed", "operator"),
            (T, "crowd:z:density:1", "sensed", "system"),
            (T + minute, "crowd:z:density:1", "warned", "system"),
        ],
        columns=["time", "incident_id", "stage", "source"],
    )
    warnings = pd.DataFrame(
        [
            (T + 2 * minute, "water:a:do:1", "water", "yellow", "qijiang", 120.0),
            (T + 5 * minute, "water:a:do:1", "water", "red", "qijiang", 300.0),
            (T + minute, "crowd:z:density:1", "crowd", "orange", "yuzhong", 60.0),
        ],
        columns=["time", "incident_id", "category", "tier", "district", "time_to_warn_s"],
    )
    alerts = pd.DataFrame([(T, "water", 0.4), (T, "crowd", 0.2)], columns=["time", "category", "time_to_alert_s"])
    deliveries = pd.DataFrame(
        [(T, "water_bureau", "topic", "true", 0.05), (T, "water_bureau", "webhook", "false", 5.2)],
        columns=["time", "department", "channel", "ok", "since_reading_s"],
    )
    return ReportData(warnings, lifecycle, alerts, deliveries)


def test_loop_times_take_each_stages_first_time_and_the_highest_tier():
    loop = loop_times(data().lifecycle, data().warnings)
    water = loop.loc["water:a:do:1"]
    assert water["tier"] == "red" and water["sensed -> warned min"] == 2 and water["warned -> acknowledged min"] == 7
    assert water["warned -> closed min"] == 58
    assert pd.isna(loop.loc["crowd:z:density:1"].get("warned -> closed min"))  # still open


def test_the_report_is_a_page_with_its_plots_and_tables():
    page = render(data(), days=7, now=datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    assert page.count('<img src="data:image/png;base64,') == 2
    assert "2 incident(s) warned, 3 warning(s), 2 delivery record(s)" in page
    assert "water_bureau" in page and "webhook" in page
    empty = ReportData(*(pd.DataFrame() for _ in range(4)))
    assert "0 incident(s) warned" in render(empty, days=1)


def test_incidents_are_counted_once_by_their_highest_tier_in_tier_order():
    counts = highest_tier_counts(data().warnings)
    assert list(counts.columns) == ["orange", "red"]  # blue to red, not alphabetical
    assert counts.loc["water", "red"] == 1 and counts.loc["water"].sum() == 1  # two warnings, one incident
    assert counts.loc["crowd", "orange"] == 1


def test_replayed_data_is_marked_and_durations_read_as_people_say_them():
    replay = data()
    replay.warnings.loc[replay.warnings["incident_id"] == "crowd:z:density:1", "time_to_warn_s"] = (
        21600.0  # readings 6 h old
    )
    replay.deliveries.loc[1, "since_reading_s"] = 21600.0
    page = render(replay, days=7, now=datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    assert "1 of the 2 incident(s) come from replayed or simulated data" in page
    text = re.sub(r"<img [^>]*>", "", page)  # the plots are base64
    assert "6 h 00 min" in text and "e+" not in text
