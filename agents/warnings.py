"""Warning agent: Alerts -> tiered, routed Warnings, one per incident (re-issued only on escalation),
followed through their lifecycle.

Incident state (open?, tier issued, lifecycle times, the last warning) lives in a Faust table keyed
by the incident key; alerts, tracing results and lifecycle events are keyed the same way, so an
incident's messages and state share a partition. Operators' acknowledgements and closures arrive
on ``lifecycle``; a timer prompts (through the same topic, since tables change only inside a
stream) the re-sending of warnings nobody has acknowledged, one governance level up after
``escalate_after`` sends.
"""

from __future__ import annotations

import time

from agents.app import SETTINGS, alerts_topic, app, dead_letter, lifecycle_topic, tracing_topic, warnings_topic
from models.warnings import OPERATOR_STAGES, advance, levels_up, overdue, recipients, route, tier_from_severity
from pipeline.city import City, default_city, load_toml
from pipeline.schemas import Alert, LifecycleEvent, Stage, Tier, TracingResult, Warning, utc_at

incidents_table = app.Table("incidents", default=None, partitions=SETTINGS.kafka.partitions)


def decide(alert: Alert, incident: dict | None, city: City, rules: dict, routing: dict) -> tuple[dict | None, Warning | None]:
    """New incident state and the warning to issue, if any, for one alert.

    A raised alert opens an incident (warning) or escalates it (new warning, same incident id) when
    its tier is higher than the tier already issued; a lower or equal tier issues nothing. A cleared
    alert closes the incident.
    """
    if alert.resolved:
        if incident is None:
            return None, None
        closed = advance(incident.get("stages", {}), "closed", alert.ts.timestamp()) if "warned" in incident.get("stages", {}) else incident.get("stages", {})
        return {**incident, "open": False, "stages": closed}, None
    tier = alert.tier or Tier(tier_from_severity(alert.severity, rules["tier_from_severity"]))
    if incident is not None and incident["open"] and Tier(incident["tier"]).rank >= tier.rank:
        return incident, None
    if incident is None or not incident["open"]:
        incident = {"incident_id": f"{alert.incident_key}:{int(alert.ts.timestamp())}", "open": True}
    levels, departments = route(alert.category.value, tier.value, routing)
    facts = {"station_name": city.site_name(alert.station), "parameter": alert.parameter}
    warning = Warning(
        warning_id=f"{incident['incident_id']}:{tier.value}",
        incident_id=incident["incident_id"],
        category=alert.category,
        tier=tier,
        district=alert.district,
        township=alert.township,
        station=alert.station,
        levels=levels,
        departments=departments,
        recipients=who(departments, levels, alert.district, alert.township, city, routing),
        title=(f"{tier.value.upper()} {alert.category.value} warning{' (forecast)' if alert.expected_at else ''}: "
               f"{alert.parameter} at {facts['station_name']}"),
        message=alert.message,
        checklist=[item.format(**facts) for item in rules["checklists"].get(alert.category.value, [])] + alert.checklist,
        alert_ids=[alert.alert_id],
        ts=alert.ts,
    )
    return sent({**incident, "tier": tier.value}, warning, alert.ts.timestamp()), warning


def who(departments: list[str], levels: list[str], district: str, township: str, city: City, routing: dict) -> list[str]:
    """The responsible persons and duty posts (config/roster.toml, under ``routing["roster"]``) for the area."""
    names = {area: city.site_name(area) for area in (district, township) if area}
    return recipients(departments, levels, district, township, names, routing.get("roster", {}))


def sent(incident: dict, warning: Warning, sensed_s: float | None = None) -> dict:
    """The incident after issuing ``warning``: lifecycle times, the warning kept for re-sending."""
    stages = dict(incident.get("stages", {}))
    if sensed_s is not None:
        stages["sensed"] = min(stages.get("sensed", sensed_s), sensed_s)
    stages.setdefault("warned", warning.issued_at.timestamp())
    return {**incident, "stages": stages, "last_sent_s": warning.issued_at.timestamp(), "resends": 0,
            "warning": warning.model_dump(mode="json")}


def due(incident: dict | None, now_s: float, rules: dict) -> str | None:
    """What an open incident's unacknowledged warning needs now (``models.warnings.overdue``), or None."""
    if not incident or not incident.get("open"):
        return None
    cfg = rules["lifecycle"]
    return overdue(incident.get("stages", {}), incident.get("last_sent_s", 0.0), incident.get("resends", 0), now_s,
                   cfg["resend_after_min"] * 60, cfg["escalate_after"])


def apply_lifecycle(event: LifecycleEvent, incident: dict | None, now_s: float, rules: dict,
                    recipients_for=None) -> tuple[dict, Warning | None, list[LifecycleEvent]]:
    """An operator's action on an incident, or the timer's check: the new incident state, a warning to
    re-send if one is overdue, and the lifecycle events to record. ValueError with the reason when
    the action does not fit (unknown or superseded incident, out of order). ``recipients_for(warning,
    levels)`` names who an escalated re-send reaches at its new level."""
    if incident is None or incident.get("incident_id") != event.incident_id:
        raise ValueError(f"no open incident {event.incident_id} (unknown, or superseded by a newer one)")
    if event.stage == Stage.check:
        action = due(incident, now_s, rules)
        if action is None or "warning" not in incident:
            return incident, None, []
        previous = Warning.model_validate(incident["warning"])
        n = incident.get("resends", 0) + 1
        levels = levels_up(previous.levels) if action == "escalate" else previous.levels
        reached = recipients_for(previous, levels) if recipients_for and levels != previous.levels else previous.recipients
        again = previous.model_copy(update={"warning_id": f"{previous.warning_id}:resent{n}", "levels": levels, "recipients": reached,
                                            "title": f"[未签收 re-sent {n}] {previous.title.split('] ', 1)[-1]}",
                                            "issued_at": utc_at(now_s)})
        stage = Stage.escalated if levels != previous.levels else Stage.resent
        record = LifecycleEvent(incident_id=event.incident_id, stage=stage, ts=utc_at(now_s), actor="warning agent",
                                note=f"not acknowledged; sent again to {', '.join(levels)}", warning_id=again.warning_id)
        return {**incident, "warning": again.model_dump(mode="json"), "last_sent_s": now_s, "resends": n}, again, [record]
    if event.source != "operator" or event.stage.value not in OPERATOR_STAGES:
        return incident, None, []  # the system's own records: already applied when they were made
    stages = advance(incident.get("stages", {}), event.stage.value, event.ts.timestamp())
    return {**incident, "stages": stages, "open": incident["open"] and event.stage != Stage.closed}, None, []


def dam_before(city: City, source_point, intake_point):
    """The interception-dam site furthest downstream between a source and the intake it threatens."""
    on_path = [(city.network.distance_km(source_point, d.point), d) for d in city.dams.values()
               if city.network.path(source_point, d.point) and city.network.path(d.point, intake_point)]
    return max(on_path, key=lambda x: x[0])[1] if on_path else None


def decide_traced(result: TracingResult, incident: dict | None, city: City, rules: dict, routing: dict) -> tuple[dict | None, Warning | None]:
    """A warning naming the suspected source and the intake at risk, once per incident, top suspect and tier.

    The tier is the incident's, raised to red when the plume is due at an intake within
    ``escalation.intake_hours_red`` hours, and to at least orange when cameras saw the oil sheen.
    """
    # a closed station-level incident still gets its source warning: the plume has moved on downstream
    if incident is None or not result.suspects:
        return incident, None
    top = result.suspects[0]
    tier = Tier(incident["tier"])
    threatened = [a for a in result.arrivals if a.hours_left >= 0]
    first_intake = min(threatened, key=lambda a: a.hours_left) if threatened else None
    if first_intake is not None and first_intake.hours_left <= rules["escalation"]["intake_hours_red"]:
        tier = Tier.red
    # cameras that saw a sheen on the river corroborate the incident: at least orange, and said so
    seen = "".join(f"; oil sheen {c.area_m2:.0f} m² seen by camera {c.camera_id} at {city.site_name(c.station)} "
                   f"(confidence {c.confidence:.0%})" for c in result.camera_sightings)
    if result.camera_sightings and tier.rank < Tier.orange.rank:
        tier = Tier.orange
    if incident.get("traced") == top.source_id and Tier(incident.get("traced_tier", "blue")).rank >= tier.rank:
        return incident, None
    levels, departments = route(result.category.value, tier.value, routing)
    source = city.sources[top.source_id]
    checklist = []
    if first_intake is not None:
        intake = city.intakes[first_intake.intake_id]
        dam = dam_before(city, source.point, intake.point)
        facts = {"enterprise": top.enterprise or top.name, "source_name": top.name, "distance_km": top.distance_km,
                 "probability": top.probability, "dam_name": dam.name if dam else "取水口上游", "intake_name": intake.name,
                 "hours_left": first_intake.hours_left}
        checklist = [item.format(**facts) for item in rules["checklists_traced"].get(result.category.value, [])]
    arrival = (f"; due at {first_intake.name} in {first_intake.hours_left:.1f} h "
               f"({first_intake.earliest:%H:%M}-{first_intake.latest:%H:%M} UTC)") if first_intake else ""
    warning = Warning(
        warning_id=f"{incident['incident_id']}:source:{top.source_id}:{tier.value}",
        incident_id=incident["incident_id"],
        category=result.category,
        tier=tier,
        district=result.district,
        township=result.township,
        station=result.station,
        levels=levels,
        departments=departments,
        recipients=who(departments, levels, result.district, result.township, city, routing),
        title=f"{tier.value.upper()} water warning at {city.site_name(result.station)}: suspected source {top.name} ({top.probability:.0%})",
        message=top.explanation + arrival + seen,
        checklist=checklist,
        suspects=result.suspects,
        arrivals=result.arrivals,
        alert_ids=[f"tracing:{result.incident_key}"],
        ts=result.ts,
    )
    return {**sent(incident, warning), "tier": max(tier, Tier(incident["tier"]), key=lambda t: t.rank).value, "traced": top.source_id,
            "traced_tier": tier.value}, warning


CITY = default_city()
RULES = load_toml("warnings")
ROUTING = {**load_toml("routing"), "roster": load_toml("roster")}


async def issue(key: str, before: dict | None, incident: dict | None, warning: Warning | None) -> None:
    """Send the warning, and record what changed in the incident's life (opened, warned, closed)."""
    if warning is not None:
        await warnings_topic.send(key=warning.incident_id.encode(), value=warning.to_json())
    if incident is None:
        return
    old = (before or {}).get("stages", {}) if (before or {}).get("incident_id") == incident["incident_id"] else {}
    records = [LifecycleEvent(incident_id=incident["incident_id"], stage=Stage(stage), ts=utc_at(at_s), actor="warning agent",
                              warning_id=warning.warning_id if warning is not None else "")
               for stage, at_s in incident.get("stages", {}).items() if stage not in old]
    if warning is not None and "warned" in old:  # an escalation or a source warning: warned again
        records.append(LifecycleEvent(incident_id=incident["incident_id"], stage=Stage.warned, ts=warning.issued_at,
                                      actor="warning agent", warning_id=warning.warning_id))
    for record in records:
        await lifecycle_topic.send(key=key.encode(), value=record.to_json())


async def _warn(stream, parse, decide_with, source) -> None:
    """Alerts or tracing results -> the incident's new state and the warning it calls for, if any."""
    async for raw in stream:
        try:
            item = parse(raw)
            before = incidents_table.get(item.incident_key)
            incident, warning = decide_with(item, before, CITY, RULES, ROUTING)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("warnings", source, raw, error)
            continue
        if incident is not None:
            incidents_table[item.incident_key] = incident
        await issue(item.incident_key, before, incident, warning)


@app.agent(alerts_topic)
async def warn(stream):
    await _warn(stream, Alert.model_validate_json, decide, alerts_topic)


@app.agent(tracing_topic)
async def warn_traced(stream):
    await _warn(stream, TracingResult.model_validate_json, decide_traced, tracing_topic)


@app.agent(lifecycle_topic)
async def lifecycle(stream):
    async for raw in stream:
        try:
            event = LifecycleEvent.model_validate_json(raw)
            if event.source == "system" and event.stage != Stage.check:
                continue  # our own record
            incident, warning, records = apply_lifecycle(event, incidents_table.get(event.incident_key), time.time(), RULES,
                                                         lambda w, levels: who(w.departments, levels, w.district, w.township, CITY, ROUTING))
        except Exception as error:  # an action that does not fit: dead-lettered with why, never a crash
            await dead_letter("lifecycle", lifecycle_topic, raw, error)
            continue
        incidents_table[event.incident_key] = incident
        if warning is not None:
            await warnings_topic.send(key=warning.incident_id.encode(), value=warning.to_json())
        for record in records:
            await lifecycle_topic.send(key=event.incident_key.encode(), value=record.to_json())


@app.timer(interval=RULES["lifecycle"]["check_interval_s"])
async def check_unacknowledged() -> None:
    """Prompt a re-send for each open incident whose warning has waited too long for an acknowledgement."""
    now_s = time.time()
    for key, incident in list(incidents_table.items()):
        if due(incident, now_s, RULES):
            check = LifecycleEvent(incident_id=incident["incident_id"], stage=Stage.check, actor="timer")
            await lifecycle_topic.send(key=key.encode(), value=check.to_json())
