"""Warnings as OASIS Common Alerting Protocol 1.2 messages (``yuflow warnings export --cap``).

One ``<alert>`` per warning. The first warning of an incident is ``msgType`` Alert; an escalation
(same incident, higher tier) is an Update that references the incident's earlier warnings, so a
CAP consumer replaces rather than adds. Tiers map to CAP severity (blue Minor, yellow Moderate,
orange Severe, red Extreme); a forecast (rain or crowd expected, a plume due at an intake) is
urgency Expected and certainty Likely, an observation Immediate and Observed. The departments
and governance levels go in ``addresses`` and ``parameter`` elements, the checklist in
``instruction``, the suspects and intake arrivals in parameters.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import timedelta, timezone

from pipeline.city import City
from pipeline.schemas import Category, Tier, Warning

NS = "urn:oasis:names:tc:emergency:cap:1.2"
SEVERITY = {Tier.blue: "Minor", Tier.yellow: "Moderate", Tier.orange: "Severe", Tier.red: "Extreme"}
RESPONSE = {Tier.blue: "Monitor", Tier.yellow: "Monitor", Tier.orange: "Prepare", Tier.red: "Execute"}
CAP_CATEGORY = {Category.water: "Env", Category.rain: "Met", Category.crowd: "Safety"}
SENDER = "yuflow@digital-chongqing"
RESERVED = re.compile(r"[\s,&<]")  # CAP forbids spaces, commas and "<", "&" in identifiers and addresses


def _ident(text: str) -> str:
    return RESERVED.sub("_", text)


def _time(ts, city: City) -> str:
    """CAP dateTime: local time with its offset, whole seconds, never "Z"."""
    local = ts.astimezone(timezone(timedelta(hours=city.utc_offset_h))).replace(microsecond=0)
    return local.isoformat()


def _is_forecast(w: Warning) -> bool:
    return "(forecast)" in w.title or bool(w.arrivals)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    """A CAP element under ``parent``, with its text."""
    element = ET.SubElement(parent, f"{{{NS}}}{tag}")
    if text is not None:
        element.text = text
    return element


def cap_alert(w: Warning, city: City, earlier: Iterable[Warning] = ()) -> ET.Element:
    """The CAP 1.2 ``<alert>`` of one warning; ``earlier`` are the incident's warnings before it."""
    alert = _alert_head(w, city, list(earlier))
    info = _info(alert, w, city)
    for name, value in _parameters(w, city):
        parameter = _sub(info, "parameter")
        _sub(parameter, "valueName", name)
        _sub(parameter, "value", value)
    _area(info, w, city)
    return alert


def _alert_head(w: Warning, city: City, earlier: list[Warning]) -> ET.Element:
    """The ``<alert>`` element with who sent it, to whom, and (for an Update) the warnings it replaces."""
    alert = ET.Element(f"{{{NS}}}alert")
    _sub(alert, "identifier", _ident(w.warning_id))
    _sub(alert, "sender", SENDER)
    _sub(alert, "sent", _time(w.issued_at, city))
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", "Update" if earlier else "Alert")
    _sub(alert, "source", "Yuflow")
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", "Government departments and responsible persons named in addresses (分级推送)")
    _sub(alert, "addresses", " ".join(_ident(d) for d in w.departments))
    if earlier:
        _sub(
            alert,
            "references",
            " ".join(f"{SENDER},{_ident(e.warning_id)},{_time(e.issued_at, city)}" for e in earlier),
        )
    _sub(alert, "incidents", _ident(w.incident_id))
    return alert


def _info(alert: ET.Element, w: Warning, city: City) -> ET.Element:
    """The ``<info>`` element: what kind of event, how urgent, severe and certain, and what to do."""
    info = _sub(alert, "info")
    forecast = _is_forecast(w)
    for tag, text in (
        ("language", "zh-CN"),
        ("category", CAP_CATEGORY[w.category]),
        ("event", f"{w.category.value} warning"),
        ("responseType", RESPONSE[w.tier]),
        ("urgency", "Expected" if forecast else "Immediate"),
        ("severity", SEVERITY[w.tier]),
        ("certainty", "Likely" if forecast else "Observed"),
    ):
        _sub(info, tag, text)
    _sub(info, "effective", _time(w.ts, city))
    _sub(info, "senderName", "数字重庆 Yuflow 预警中心")
    _sub(info, "headline", w.title[:160])
    _sub(info, "description", w.message)
    if w.checklist:
        _sub(info, "instruction", "\n".join(f"{i}. {step}" for i, step in enumerate(w.checklist, 1)))
    return info


def _parameters(w: Warning, city: City) -> list[tuple[str, str]]:
    """The ``<parameter>`` (name, value) pairs: tier, levels, departments, recipients, what the
    incident covers, the top suspects and the arrivals at intakes."""
    parameters = [
        ("tier", w.tier.value),
        ("tier_zh", w.tier.zh),
        ("levels", " ".join(w.levels)),
        ("departments", " ".join(w.departments)),
        ("station", w.station),
    ]
    parameters += [("recipient", person) for person in w.recipients]
    parameters += [("affected", member) for member in w.affected]
    parameters += [
        (f"suspect_{i}", f"{s.name} ({s.probability:.0%}, {s.distance_km:.1f} km, {s.travel_time_h:.1f} h)")
        for i, s in enumerate(w.suspects[:3], 1)
    ]
    parameters += [
        (
            f"arrival_{a.intake_id}",
            f"{a.name}: {_time(a.arrival, city)} ({a.hours_left:.1f} h left, "
            f"{_time(a.earliest, city)} - {_time(a.latest, city)}, peak {a.peak_mg_l:.3g} mg/L)",
        )
        for a in w.arrivals
    ]
    return parameters


def _area(info: ET.Element, w: Warning, city: City) -> None:
    """The ``<area>`` element: the place by name, and the district and township as geocodes."""
    area = _sub(info, "area")
    place = (
        [city.site_name(w.district)]
        + ([city.site_name(w.township)] if w.township else [])
        + [city.site_name(w.station)]
    )
    _sub(area, "areaDesc", " / ".join(dict.fromkeys(place)))
    for name, value in (("district", w.district), ("township", w.township)):
        if value:
            geocode = _sub(area, "geocode")
            _sub(geocode, "valueName", f"yuflow:{name}")
            _sub(geocode, "value", value)


def cap_documents(warnings: Iterable[Warning], city: City) -> list[tuple[str, bytes]]:
    """(file name, CAP XML) per warning, in issue order; escalations reference their incident's earlier warnings."""
    ET.register_namespace("", NS)
    by_incident: dict[str, list[Warning]] = {}
    out = []
    for w in sorted(warnings, key=lambda w: w.issued_at):
        earlier = by_incident.setdefault(w.incident_id, [])
        xml = ET.tostring(cap_alert(w, city, earlier), encoding="utf-8", xml_declaration=True)
        out.append((f"{_ident(w.warning_id).replace(':', '_')}.xml", xml))
        earlier.append(w)
    return out
