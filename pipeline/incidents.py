"""The incident engine (models/incidents.py, incident_decisions.py, incident_lifecycle.py) in the
pipeline's messages: an Alert or an operator's LifecycleEvent in, the incident's new state and the
Warning and lifecycle records to send out. The decisions are the engine's; this module turns the
messages into its plain values and composes the warnings (routing, recipients, checklists).

Source warnings from tracing results are pipeline/incident_traces.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from models import incident_decisions as engine
from models.incident_decisions import Finding
from models.incident_lifecycle import (
    OPERATOR_STAGES,
    due,
    new_stages,
    operator_action,
    resend_title,
    resent,
    sent,
    was_warned,
)
from models.incidents import Incident, IncidentRules, affected, member_stations, warning_id
from models.warnings import levels_up, tier_from_severity
from pipeline.city import City
from pipeline.incident_river import river_passed_s
from pipeline.rule_files import WarningsFile
from pipeline.rules import WarningRouting
from pipeline.schemas import Alert, Category, LifecycleEvent, Stage, Tier, TracingResult, Warning, utc_at, utc_now
from pipeline.water_tracing import TRACED_PARAMETERS


def incident_rules(rules: WarningsFile) -> IncidentRules:
    """The engine's rules from config/warnings.toml."""
    grouping, lifecycle, escalation = rules.grouping, rules.lifecycle, rules.escalation
    return IncidentRules(
        deescalate_after_s=grouping.deescalate_after_min * 60,
        early_alert_s=grouping.early_alert_h * 3600,
        trace_hold_s=grouping.trace_hold_h * 3600,
        resend_after_s=lifecycle.resend_after_min * 60,
        escalate_after=lifecycle.escalate_after,
        intake_hours_red=escalation.intake_hours_red,
        arrival_update_s=escalation.arrival_update_h * 3600,
        min_source_probability=escalation.min_source_probability,
    )


def who(
    departments: Sequence[str], levels: Sequence[str], district: str, township: str, city: City, routing: WarningRouting
) -> list[str]:
    """The responsible persons and duty posts (config/roster.toml, ``routing.roster``) for the area."""
    names = {area: city.site_name(area) for area in (district, township) if area}
    return routing.recipients(departments, levels, district, township, names)


def routed_warning(
    about: Alert | TracingResult, incident: Incident, tier: Tier, city: City, routing: WarningRouting, **content
) -> Warning:
    """A warning of the incident about an alert or a trace, routed by its category and tier to levels,
    departments and the persons and posts of its area; ``content``: the rest of its fields."""
    levels, departments = routing.route(about.category.value, tier.value)
    return Warning(
        incident_id=incident.incident_id,
        category=about.category,
        tier=tier,
        district=about.district,
        township=about.township,
        station=about.station,
        levels=levels,
        departments=departments,
        recipients=who(departments, levels, about.district, about.township, city, routing),
        **content,
    )


# --- alerts ----------------------------------------------------------------------------------------
def finding(alert: Alert, city: City, rules: WarningsFile) -> Finding:
    """The alert as the engine's grouping sees it."""
    at_s = alert.ts.timestamp()
    if alert.resolved:
        return Finding(alert.incident_key, alert.station, alert.parameter, "", at_s, resolved=True)
    tier = alert.tier or Tier(tier_from_severity(alert.severity, rules.tier_from_severity))
    plume_until_s = None
    if alert.category is Category.water and alert.station in city.stations:  # on a river: it flows on downstream
        station = city.stations[alert.station]
        plume_until_s = river_passed_s(city, station.point, station.river, at_s, rules)
    return Finding(
        alert.incident_key,
        alert.station,
        alert.parameter,
        tier.value,
        at_s,
        early=alert.rule == "statistical",
        plume_until_s=plume_until_s,
        traced=alert.parameter in TRACED_PARAMETERS,
    )


def decide(
    alert: Alert, incident: Incident | None, city: City, rules: WarningsFile, routing: WarningRouting
) -> tuple[Incident | None, Warning | None]:
    """New incident state and the warning to issue, if any, for one alert (models/incident_decisions.py:
    grouping by category and area, the tier of the highest active member, hysteresis on the way down)."""
    joined = engine.join(incident, finding(alert, city, rules), incident_rules(rules))
    if joined is None:
        return incident, None  # nothing open to clear
    return settle(joined, alert.ts.timestamp(), city, rules, routing, alert)


def settle(
    incident: Incident,
    now_s: float,
    city: City,
    rules: WarningsFile,
    routing: WarningRouting,
    alert: Alert | None = None,
) -> tuple[Incident, Warning | None]:
    """Issue, raise, lower (after the hold) or close the incident's warning to match its members."""
    incident, action, active = engine.settle(incident, now_s, incident_rules(rules), raising=alert is not None)
    if action == "lower":
        return lowered(incident, Tier(active), now_s, city, routing)
    if action:
        return alert_warning(incident, alert, Tier(active), city, rules, routing)
    return incident, None


def lowered(
    incident: Incident, tier: Tier, now_s: float, city: City, routing: WarningRouting
) -> tuple[Incident, Warning]:
    """The incident's last warning at a lower tier, to everyone warned before as well."""
    previous = Warning.model_validate(incident.warning)
    levels, departments = routing.route(previous.category.value, tier.value)
    departments = list(dict.fromkeys(previous.departments + departments))  # those warned before hear it is lower
    title = engine.lowered_title(incident, tier.value)
    warning = previous.model_copy(
        update={
            "warning_id": warning_id(incident, tier.value, now_s),
            "tier": tier,
            "levels": levels,
            "departments": departments,
            "recipients": who(departments, levels, previous.district, previous.township, city, routing),
            "title": title.text,
            "affected": affected(incident.members, now_s),
            "ts": utc_at(now_s),
            "issued_at": utc_now(),
        }
    )
    issued = sent(incident, warning.model_dump(mode="json"), title, warning.issued_at.timestamp())
    return replace(issued, tier=tier.value), warning


def alert_warning(
    incident: Incident, alert: Alert, tier: Tier, city: City, rules: WarningsFile, routing: WarningRouting
) -> tuple[Incident, Warning]:
    """The warning an alert raises the incident to (or opens it with)."""
    now_s = alert.ts.timestamp()
    facts = {"station_name": city.site_name(alert.station), "parameter": alert.parameter}
    others = len(member_stations(incident.members) - {alert.station})
    title = engine.alert_title(
        tier.value, alert.category.value, alert.parameter, facts["station_name"], bool(alert.expected_at), others
    )
    warning = routed_warning(
        alert,
        incident,
        tier,
        city,
        routing,
        warning_id=warning_id(incident, tier.value, now_s),
        title=title.text,
        message=alert.message,
        checklist=[item.format(**facts) for item in rules.checklists.get(alert.category.value, [])] + alert.checklist,
        affected=affected(incident.members, now_s),
        alert_ids=[alert.alert_id],
        ts=alert.ts,
    )
    raised = replace(incident, tier=tier.value)
    return sent(raised, warning.model_dump(mode="json"), title, warning.issued_at.timestamp(), now_s), warning


# --- lifecycle ---------------------------------------------------------------------------------------
def apply_lifecycle(
    event: LifecycleEvent,
    incident: Incident | None,
    now_s: float,
    city: City,
    rules: WarningsFile,
    routing: WarningRouting,
) -> tuple[Incident, Warning | None, list[LifecycleEvent]]:
    """An operator's action on an incident, or the timer's check: the new incident state, a warning to
    issue if one is due (lowered tier, or a re-send of one nobody acknowledged), and the lifecycle
    events to record. ValueError with the reason when the action does not fit (unknown or superseded
    incident, out of order)."""
    if incident is None or incident.incident_id != event.incident_id:
        raise ValueError(f"no open incident {event.incident_id} (unknown, or superseded by a newer one)")
    if event.stage == Stage.check:
        return check(incident, now_s, city, rules, routing)
    if event.source != "operator" or event.stage.value not in OPERATOR_STAGES:
        return incident, None, []  # the system's own records: already applied when they were made
    return operator_action(incident, event.stage.value, event.ts.timestamp()), None, []


def check(
    incident: Incident, now_s: float, city: City, rules: WarningsFile, routing: WarningRouting
) -> tuple[Incident, Warning | None, list[LifecycleEvent]]:
    """The timer's check: lower or close the incident when due, or re-send the warning nobody acknowledged."""
    action = due(incident, now_s, incident_rules(rules))
    if action == "settle":
        settled, warning = settle(incident, now_s, city, rules, routing)
        return settled, warning, stage_records(incident, settled, warning)
    if action is None or incident.warning is None:
        return incident, None, []
    return resend(incident, action == "escalate", now_s, city, routing)


def resend(
    incident: Incident, escalate: bool, now_s: float, city: City, routing: WarningRouting
) -> tuple[Incident, Warning, list[LifecycleEvent]]:
    """The unacknowledged warning sent again (one governance level up when ``escalate``), and its record."""
    previous = Warning.model_validate(incident.warning)
    title = resend_title(incident)
    levels = levels_up(previous.levels) if escalate else previous.levels
    higher = levels != previous.levels
    again = previous.model_copy(
        update={
            "warning_id": f"{previous.warning_id}:resent{incident.resends + 1}",
            "levels": levels,
            "recipients": (
                who(previous.departments, levels, previous.district, previous.township, city, routing)
                if higher
                else previous.recipients
            ),
            "title": title.text,
            "issued_at": utc_at(now_s),
        }
    )
    record = LifecycleEvent(
        incident_id=incident.incident_id,
        stage=Stage.escalated if higher else Stage.resent,
        ts=utc_at(now_s),
        actor="warning agent",
        note=f"not acknowledged; sent again to {', '.join(levels)}",
        warning_id=again.warning_id,
    )
    return resent(incident, again.model_dump(mode="json"), title, now_s), again, [record]


def stage_records(before: Incident | None, incident: Incident | None, warning: Warning | None) -> list[LifecycleEvent]:
    """What changed in the incident's life (opened, warned, closed) as lifecycle records."""
    if incident is None:
        return []
    said = f"{warning.tier.value.upper()}: {warning.title}" if warning is not None else ""  # which warning, which tier
    records = [
        LifecycleEvent(
            incident_id=incident.incident_id,
            stage=Stage(stage),
            ts=utc_at(at_s),
            actor="warning agent",
            warning_id=warning.warning_id if warning is not None else "",
            note=said[:2000] if stage == "warned" else "",
        )
        for stage, at_s in new_stages(before, incident)
    ]
    if warning is not None and was_warned(before, incident):  # an escalation, a lowering or a source warning
        records.append(
            LifecycleEvent(
                incident_id=incident.incident_id,
                stage=Stage.warned,
                ts=warning.issued_at,
                actor="warning agent",
                warning_id=warning.warning_id,
                note=said[:2000],
            )
        )
    return records
