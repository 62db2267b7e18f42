"""Warning agent: Alerts -> tiered, routed Warnings, one per incident (re-issued only on escalation).

Incident state (open?, tier issued) lives in a Faust table keyed by the incident key; alerts are keyed
the same way, so an incident's alerts and state share a partition.
"""

from __future__ import annotations

from agents.app import SETTINGS, alerts_topic, app, dead_letter, tracing_topic, warnings_topic
from models.warnings import route, tier_from_severity
from pipeline.city import City, default_city, load_toml
from pipeline.schemas import Alert, Tier, TracingResult, Warning

incidents_table = app.Table("incidents", default=None, partitions=SETTINGS.kafka.partitions)


def decide(alert: Alert, incident: dict | None, city: City, rules: dict, routing: dict) -> tuple[dict | None, Warning | None]:
    """New incident state and the warning to issue, if any, for one alert.

    A raised alert opens an incident (warning) or escalates it (new warning, same incident id) when
    its tier is higher than the tier already issued; a lower or equal tier issues nothing. A cleared
    alert closes the incident.
    """
    if alert.resolved:
        return (None if incident is None else {**incident, "open": False}), None
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
        title=(f"{tier.value.upper()} {alert.category.value} warning{' (forecast)' if alert.expected_at else ''}: "
               f"{alert.parameter} at {facts['station_name']}"),
        message=alert.message,
        checklist=[item.format(**facts) for item in rules["checklists"].get(alert.category.value, [])] + alert.checklist,
        alert_ids=[alert.alert_id],
        ts=alert.ts,
    )
    return {**incident, "tier": tier.value}, warning


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
        title=f"{tier.value.upper()} water warning at {city.site_name(result.station)}: suspected source {top.name} ({top.probability:.0%})",
        message=top.explanation + arrival + seen,
        checklist=checklist,
        suspects=result.suspects,
        arrivals=result.arrivals,
        alert_ids=[f"tracing:{result.incident_key}"],
        ts=result.ts,
    )
    return {**incident, "tier": max(tier, Tier(incident["tier"]), key=lambda t: t.rank).value, "traced": top.source_id,
            "traced_tier": tier.value}, warning


CITY = default_city()
RULES = load_toml("warnings")
ROUTING = load_toml("routing")


@app.agent(alerts_topic)
async def warn(stream):
    async for raw in stream:
        try:
            alert = Alert.model_validate_json(raw)
            incident, warning = decide(alert, incidents_table.get(alert.incident_key), CITY, RULES, ROUTING)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("warnings", alerts_topic, raw, error)
            continue
        incidents_table[alert.incident_key] = incident
        if warning is not None:
            await warnings_topic.send(key=warning.incident_id.encode(), value=warning.to_json())


@app.agent(tracing_topic)
async def warn_traced(stream):
    async for raw in stream:
        try:
            result = TracingResult.model_validate_json(raw)
            incident, warning = decide_traced(result, incidents_table.get(result.incident_key), CITY, RULES, ROUTING)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("warnings", tracing_topic, raw, error)
            continue
        if incident is not None:
            incidents_table[result.incident_key] = incident
        if warning is not None:
            await warnings_topic.send(key=warning.incident_id.encode(), value=warning.to_json())
