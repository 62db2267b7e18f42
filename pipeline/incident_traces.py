"""Source warnings: a TracingResult in, the incident's new state and the warning naming the suspected
source and the intake at risk out. The decisions (tier, repeat or update, members) are the incident
engine's (models/incident_decisions.py); this module feeds it plain values and composes the warning."""

from __future__ import annotations

from models import incident_decisions as engine
from models.incident_decisions import Look
from models.incident_lifecycle import sent
from models.incidents import Incident, Title, affected
from pipeline.city import City, Dam
from pipeline.incident_river import dam_ahead, plume_passed_s
from pipeline.incidents import incident_rules, routed_warning
from pipeline.rule_files import WarningsFile
from pipeline.rules import WarningRouting
from pipeline.schemas import IntakeArrival, Tier, TracingResult, Warning


def first_threatened(result: TracingResult) -> IntakeArrival | None:
    """The intake the plume reaches first among those still ahead of it."""
    threatened = [a for a in result.arrivals if a.hours_left >= 0]
    return min(threatened, key=lambda a: a.hours_left) if threatened else None


def look_at(result: TracingResult, first_intake: IntakeArrival | None) -> Look:
    """The result's top suspect and first threatened intake as the engine sees them."""
    top = result.suspects[0]
    return Look(
        station=result.station,
        at_s=result.ts.timestamp(),
        looked_s=(result.observed_until or result.ts).timestamp(),
        source_id=top.source_id,
        probability=top.probability,
        intake_hours_left=first_intake.hours_left if first_intake is not None else None,
        arrival_s=first_intake.arrival.timestamp() if first_intake is not None else None,
        intake_passed_s=first_intake.latest.timestamp() if first_intake is not None else None,
        seen=bool(result.camera_sightings),
    )


def decide_traced(
    result: TracingResult, incident: Incident | None, city: City, rules: WarningsFile, routing: WarningRouting
) -> tuple[Incident | None, Warning | None]:
    """A warning naming the suspected source and the intake at risk, once per incident, top suspect and tier.

    The tier is the incident's, raised to red when the plume is due at an intake within
    ``escalation.intake_hours_red`` hours, and to at least orange when cameras saw the oil sheen.
    """
    if incident is None or not result.suspects:
        return incident, None
    engine_rules = incident_rules(rules)
    first_intake = first_threatened(result)
    look = look_at(result, first_intake)
    if not engine.about_this_incident(incident, look):
        return incident, None
    if look.probability < engine_rules.min_source_probability:
        return incident, None  # not sure enough to name anyone: a later look, with more of the plume, may be
    tier = engine.traced_tier(incident, look, engine_rules)
    dam = dam_ahead(city, result, city.intakes[first_intake.intake_id].point) if first_intake is not None else None
    update = engine.trace_news(incident, look, tier, dam.id if dam else None, engine_rules)
    if update is None:
        return incident, None
    joined = engine.traced_members(incident, look, tier, plume_passed_s(city, result, rules))
    title = engine.source_title(tier, city.site_name(result.station), result.suspects[0].name, look.probability, update)
    steps = checklist(result, first_intake, dam, city, rules)
    warning_id = engine.traced_warning_id(joined, look, tier, update)
    warning = source_warning(joined, result, first_intake, warning_id, title, steps, city, routing)
    warned = sent(joined, warning.model_dump(mode="json"), title, warning.issued_at.timestamp())
    return engine.warned_on_trace(incident, warned, look, tier, dam.id if dam else None), warning


def checklist(
    result: TracingResult, first_intake: IntakeArrival | None, dam: Dam | None, city: City, rules: WarningsFile
) -> list[str]:
    """The steps whose facts are known: no dam or dilution plan when no intake is ahead of the plume."""
    top = result.suspects[0]
    facts = {
        "enterprise": top.enterprise or top.name,
        "source_name": top.name,
        "distance_km": top.distance_km,
        "probability": top.probability,
    }
    if first_intake is not None:
        intake = city.intakes[first_intake.intake_id]
        facts |= {
            "dam_name": dam.name if dam else "取水口上游",
            "intake_name": intake.name,
            "hours_left": first_intake.hours_left,
        }
    steps = []
    for item in rules.checklists_traced.get(result.category.value, []):
        try:
            steps.append(item.format(**facts))
        except KeyError:
            continue
    return steps


def source_warning(
    incident: Incident,
    result: TracingResult,
    first_intake: IntakeArrival | None,
    warning_id: str,
    title: Title,
    steps: list[str],
    city: City,
    routing: WarningRouting,
) -> Warning:
    """The source warning: the top suspect, the arrival at the first intake ahead, what cameras saw."""
    top = result.suspects[0]
    arrival = (
        (
            f"; due at {first_intake.name} in {first_intake.hours_left:.1f} h "
            f"({first_intake.earliest:%H:%M}-{first_intake.latest:%H:%M} UTC)"
        )
        if first_intake
        else ""
    )
    seen = "".join(  # cameras that saw a sheen on the river corroborate the incident, and it is said
        f"; oil sheen {c.area_m2:.0f} m² seen by camera {c.camera_id} at {city.site_name(c.station)} "
        f"(confidence {c.confidence:.0%})"
        for c in result.camera_sightings
    )
    return routed_warning(
        result,
        incident,
        Tier(title.tier),
        city,
        routing,
        warning_id=warning_id,
        title=title.text,
        message=top.explanation + arrival + seen,
        checklist=steps,
        suspects=result.suspects,
        arrivals=result.arrivals,
        affected=affected(incident.members, result.ts.timestamp()),
        alert_ids=[f"tracing:{result.incident_key}"],
        ts=result.ts,
    )
