"""Warnings as CAP 1.2: valid against the OASIS schema (tests/data/CAP-v1.2.xsd), tiers mapped to
severity, escalations as Updates that reference the incident's earlier warnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from pipeline.cap import NS, cap_documents
from pipeline.city import default_city
from pipeline.schemas import Category, IntakeArrival, SourceSuspect, Tier, Warning

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parents[1] / "data" / "CAP-v1.2.xsd")))
T = datetime(2025, 7, 20, 6, 30, tzinfo=UTC)
CITY = default_city()


def warning(tier: Tier, minutes: int, **changes) -> Warning:
    fields = dict(
        warning_id=f"water:ruxi-mingda:oil:1753000000:{tier.value}",
        incident_id="water:ruxi-mingda:oil:1753000000",
        category=Category.water,
        tier=tier,
        district="liangping",
        township="",
        station="ruxi-mingda",
        levels=["township", "district"],
        departments=["water_bureau", "ecology_environment"],
        title=f"{tier.value.upper()} water warning: oil at Ruxi",
        message="石油类 0.31 mg/L, 6.2x the limit",
        checklist=["责令停产 (stop order)", "启用拦截坝 (interception dam)"],
        alert_ids=["a1"],
        ts=T + timedelta(minutes=minutes),
        issued_at=T + timedelta(minutes=minutes, seconds=1.5),
    )
    return Warning(**{**fields, **changes})


def parsed(xml: bytes):
    doc = etree.fromstring(xml)
    SCHEMA.assertValid(doc)
    return doc


def text(doc, path: str) -> str:
    return doc.findtext(path, namespaces={"c": NS})


def test_a_warning_and_its_escalation_are_valid_cap_with_tiers_as_severity():
    suspect = SourceSuspect(
        source_id="ruxi-food-factory",
        name="汝溪食品厂",
        type="factory",
        enterprise="汝溪食品有限公司",
        probability=0.91,
        distance_km=2.3,
        travel_time_h=1.1,
        explanation="fits",
    )
    arrival = IntakeArrival(
        intake_id="ruxi-intake",
        name="汝溪水厂取水口",
        arrival=T + timedelta(hours=6),
        earliest=T + timedelta(hours=5.5),
        latest=T + timedelta(hours=6.5),
        peak_mg_l=0.12,
        hours_left=5.9,
    )
    first = warning(Tier.yellow, 0)
    red = warning(
        Tier.red,
        20,
        suspects=[suspect],
        arrivals=[arrival],
        departments=[
            "water_bureau",
            "ecology_environment",
            "emergency_management",
            "township_leaders",
            "grassroots_governance_centre",
        ],
    )
    docs = cap_documents([red, first], CITY)  # out of order on purpose: issue order decides Alert / Update
    assert [name for name, _ in docs] == [
        f"{first.warning_id.replace(':', '_')}.xml",
        f"{red.warning_id.replace(':', '_')}.xml",
    ]
    a, b = (parsed(xml) for _, xml in docs)
    assert text(a, "c:msgType") == "Alert" and text(a, "c:info/c:severity") == "Moderate"
    assert text(b, "c:msgType") == "Update" and text(b, "c:info/c:severity") == "Extreme"
    assert first.warning_id in text(b, "c:references")
    assert text(b, "c:sent").endswith("+08:00") and "." not in text(b, "c:sent")  # local time, whole seconds
    assert len(text(b, "c:addresses").split()) == 5  # the 5 departments
    assert (
        text(b, "c:info/c:urgency") == "Expected" and text(b, "c:info/c:certainty") == "Likely"
    )  # a plume due at the intake
    assert "1. 责令停产" in text(b, "c:info/c:instruction")
    values = {
        p.findtext("c:valueName", namespaces={"c": NS}): p.findtext("c:value", namespaces={"c": NS})
        for p in b.findall("c:info/c:parameter", namespaces={"c": NS})
    }
    assert values["tier"] == "red" and values["tier_zh"] == "红色" and "汝溪食品厂" in values["suspect_1"]
    assert "5.9 h left" in values["arrival_ruxi-intake"]
    assert "梁平" in text(b, "c:info/c:area/c:areaDesc")


@pytest.mark.parametrize("category", list(Category))
def test_every_category_and_tier_maps_to_valid_cap(category):
    for tier in Tier:
        w = warning(
            tier,
            0,
            category=category,
            warning_id=f"{category.value}:x y,z:{tier.value}",
            incident_id=f"{category.value}:x y,z",
        )
        doc = parsed(cap_documents([w], CITY)[0][1])
        assert " " not in text(doc, "c:identifier") and "," not in text(doc, "c:identifier")  # reserved in CAP
