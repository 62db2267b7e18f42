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

from agents.app import (
    SETTINGS,
    action_results_topic,
    actions_topic,
    alerts_topic,
    app,
    dead_letter,
    lifecycle_topic,
    silences_topic,
    suppressed_topic,
    tracing_topic,
    warnings_topic,
)
from models.warnings import (
    OPERATOR_STAGES,
    active_tier,
    add_member,
    advance,
    levels_up,
    overdue,
    rank,
    tier_change,
    tier_from_severity,
)
from pipeline.city import City, default_city
from pipeline.rule_files import WarningsFile
from pipeline.rules import WarningRouting, rules_or_exit
from pipeline.schemas import (
    ActionResult,
    Alert,
    Category,
    LifecycleEvent,
    Silence,
    Stage,
    SuppressedAlert,
    Tier,
    TracingResult,
    Warning,
    utc_at,
    utc_now,
)
from pipeline.topics import SILENCES as SILENCES_TOPIC
from pipeline.water_tracing import TRACED_PARAMETERS

TRACE_HOLD = "trace:"  # a member that holds a water incident's tier while tracing looks for its source

incidents_table = app.Table("incidents", default=None, partitions=SETTINGS.kafka.partitions)


def decide(
    alert: Alert, incident: dict | None, city: City, rules: WarningsFile, routing: WarningRouting
) -> tuple[dict | None, Warning | None]:
    """New incident state and the warning to issue, if any, for one alert.

    An incident groups the alerts of one category and area (all the stations and parameters of a
    river, a district, a zone) as members. Its tier is its highest active member's: a higher tier
    issues a warning at once (same incident id); a lower one is issued only after it has held for
    ``grouping.deescalate_after_min`` (hysteresis); when every member has cleared or lapsed the
    incident closes by itself. Nothing is issued for an alert that changes no tier.
    """
    now_s = alert.ts.timestamp()
    lapsed = incident is not None and incident.get("members") and active_tier(incident["members"], now_s) is None
    if (
        incident is None or not incident["open"] or lapsed
    ):  # (a lapsed one the timer has not closed yet: a replay ahead of the clock)
        if alert.resolved:
            return incident, None  # nothing open to clear
        incident = {"incident_id": f"{alert.incident_key}:{int(now_s)}", "open": True, "members": {}}
    member = f"{alert.station}:{alert.parameter}"
    if alert.resolved:
        members = {k: v for k, v in incident.get("members", {}).items() if k != member}
    else:
        tier = alert.tier or Tier(tier_from_severity(alert.severity, rules.tier_from_severity))
        early = alert.rule == "statistical"  # an early finding nobody clears: it lapses unless renewed
        until_s = now_s + rules.grouping.early_alert_h * 3600 if early else None
        members = add_member(incident.get("members", {}), member, tier.value, until_s, keeps_higher=early)
        if (
            alert.category is Category.water and alert.station in city.stations
        ):  # what was seen here flows on downstream
            station = city.stations[alert.station]
            members = add_member(
                members,
                f"plume:{alert.station}",
                Tier.blue.value,
                river_passed_s(city, station.point, station.river, now_s, rules),
                keeps_higher=True,
            )
            if alert.parameter in TRACED_PARAMETERS:  # no false comfort: the tier holds until tracing has had its looks
                members = add_member(
                    members,
                    f"{TRACE_HOLD}{member}",
                    tier.value,
                    now_s + rules.grouping.trace_hold_h * 3600,
                    keeps_higher=True,
                )
    incident = {**incident, "members": members}
    return settle(incident, now_s, city, rules, routing, alert)


def settle(
    incident: dict, now_s: float, city: City, rules: WarningsFile, routing: WarningRouting, alert: Alert | None = None
) -> tuple[dict, Warning | None]:
    """Issue, raise, lower (after the hold) or close the incident's warning to match its members."""
    active = active_tier(incident["members"], now_s)
    action, lower_since_s = tier_change(
        incident.get("tier"),
        active,
        incident.get("lower_since_s"),
        now_s,
        rules.grouping.deescalate_after_min * 60,
    )
    incident = {**incident, "lower_since_s": lower_since_s}
    if action == "hold" or (alert is None and action in ("open", "raise")):  # only an alert raises a tier
        return incident, None
    if action == "close":
        stages = incident.get("stages", {})
        closed = advance(stages, "closed", now_s) if "warned" in stages else stages
        return {**incident, "open": False, "stages": closed}, None
    tier = Tier(active)
    if action == "lower":
        previous = Warning.model_validate(incident["warning"])
        levels, departments = routing.route(previous.category.value, tier.value)
        departments = list(dict.fromkeys(previous.departments + departments))  # those warned before hear it is lower
        plain_title = previous.title.split("] ", 1)[-1].split(" ", 1)[-1]  # without a re-send's prefix and the old tier
        warning = previous.model_copy(
            update={
                "warning_id": warning_id(incident, tier, now_s),
                "tier": tier,
                "levels": levels,
                "departments": departments,
                "recipients": who(departments, levels, previous.district, previous.township, city, routing),
                "title": f"[降级 lowered] {tier.value.upper()} {plain_title}",
                "affected": affected(incident, now_s),
                "ts": utc_at(now_s),
                "issued_at": utc_now(),
            }
        )
        return {**sent(incident, warning), "tier": tier.value}, warning
    levels, departments = routing.route(alert.category.value, tier.value)
    facts = {"station_name": city.site_name(alert.station), "parameter": alert.parameter}
    others = len(member_stations(incident["members"]) - {alert.station})
    warning = Warning(
        warning_id=warning_id(incident, tier, now_s),
        incident_id=incident["incident_id"],
        category=alert.category,
        tier=tier,
        district=alert.district,
        township=alert.township,
        station=alert.station,
        levels=levels,
        departments=departments,
        recipients=who(departments, levels, alert.district, alert.township, city, routing),
        title=(
            f"{tier.value.upper()} {alert.category.value} warning{' (forecast)' if alert.expected_at else ''}: "
            f"{alert.parameter} at {facts['station_name']}"
            f"{f' and {others} more station' + 's' * (others > 1) if others else ''}"
        ),
        message=alert.message,
        checklist=[item.format(**facts) for item in rules.checklists.get(alert.category.value, [])] + alert.checklist,
        affected=affected(incident, now_s),
        alert_ids=[alert.alert_id],
        ts=alert.ts,
    )
    return sent({**incident, "tier": tier.value}, warning, now_s), warning


def member_stations(members) -> set[str]:
    """The stations among an incident's members (``station:parameter``), not its plumes, sources or holds.

    >>> sorted(member_stations({"a:do": 1, "a:cod": 1, "plume:a": 1, "source:f": 1, "trace:b:oil": 1, "c:oil": 1}))
    ['a', 'c']
    """
    internal = ("plume", "source", TRACE_HOLD.rstrip(":"))
    return {m.split(":", 1)[0] for m in members if m.split(":", 1)[0] not in internal}


def warning_id(incident: dict, tier: Tier, now_s: float) -> str:
    """``<incident id>:<tier>``, made unique when the incident comes back to a tier it was warned at."""
    first = f"{incident['incident_id']}:{tier.value}"
    return first if tier.value not in incident.get("tiers_issued", []) else f"{first}:{int(now_s)}"


def affected(incident: dict, now_s: float) -> list[str]:
    """The incident's active members, highest tier first (not the holds while tracing looks)."""
    live = [
        (m, v["tier"])
        for m, v in incident["members"].items()
        if (v["until_s"] is None or v["until_s"] > now_s) and not m.startswith(TRACE_HOLD)
    ]
    return [m for m, _ in sorted(live, key=lambda mt: (-rank(mt[1]), mt[0]))]


def who(
    departments: list[str], levels: list[str], district: str, township: str, city: City, routing: WarningRouting
) -> list[str]:
    """The responsible persons and duty posts (config/roster.toml, ``routing.roster``) for the area."""
    names = {area: city.site_name(area) for area in (district, township) if area}
    return routing.recipients(departments, levels, district, township, names)


def sent(incident: dict, warning: Warning, sensed_s: float | None = None) -> dict:
    """The incident after issuing ``warning``: lifecycle times, the warning kept for re-sending."""
    stages = dict(incident.get("stages", {}))
    if sensed_s is not None:
        stages["sensed"] = min(stages.get("sensed", sensed_s), sensed_s)
    stages.setdefault("warned", warning.issued_at.timestamp())
    return {
        **incident,
        "stages": stages,
        "last_sent_s": warning.issued_at.timestamp(),
        "resends": 0,
        "warning": warning.model_dump(mode="json"),
        "tiers_issued": list(dict.fromkeys([*incident.get("tiers_issued", []), warning.tier.value])),
    }


def due(incident: dict | None, now_s: float, rules: WarningsFile) -> str | None:
    """What an open incident needs now, or None: ``"settle"`` when its tier is due to be lowered or
    it is due to close (its members cleared or lapsed), else what its unacknowledged warning needs
    (``models.warnings.overdue``: resend or escalate)."""
    if not incident or not incident.get("open"):
        return None
    if "members" in incident:
        action, _ = tier_change(
            incident.get("tier"),
            active_tier(incident["members"], now_s),
            incident.get("lower_since_s"),
            now_s,
            rules.grouping.deescalate_after_min * 60,
        )
        if action in ("lower", "close"):
            return "settle"
    lifecycle = rules.lifecycle
    return overdue(
        incident.get("stages", {}),
        incident.get("last_sent_s", 0.0),
        incident.get("resends", 0),
        now_s,
        lifecycle.resend_after_min * 60,
        lifecycle.escalate_after,
    )


def apply_lifecycle(
    event: LifecycleEvent, incident: dict | None, now_s: float, city: City, rules: WarningsFile, routing: WarningRouting
) -> tuple[dict, Warning | None, list[LifecycleEvent]]:
    """An operator's action on an incident, or the timer's check: the new incident state, a warning to
    issue if one is due (lowered tier, or a re-send of one nobody acknowledged), and the lifecycle
    events to record. ValueError with the reason when the action does not fit (unknown or superseded
    incident, out of order)."""
    if incident is None or incident.get("incident_id") != event.incident_id:
        raise ValueError(f"no open incident {event.incident_id} (unknown, or superseded by a newer one)")
    if event.stage == Stage.check:
        action = due(incident, now_s, rules)
        if action == "settle":
            settled, warning = settle(incident, now_s, city, rules, routing)
            return settled, warning, stage_records(incident, settled, warning)
        if action is None or "warning" not in incident:
            return incident, None, []
        previous = Warning.model_validate(incident["warning"])
        n = incident.get("resends", 0) + 1
        levels = levels_up(previous.levels) if action == "escalate" else previous.levels
        reached = (
            who(previous.departments, levels, previous.district, previous.township, city, routing)
            if levels != previous.levels
            else previous.recipients
        )
        again = previous.model_copy(
            update={
                "warning_id": f"{previous.warning_id}:resent{n}",
                "levels": levels,
                "recipients": reached,
                "title": f"[未签收 re-sent {n}] {previous.title.split('] ', 1)[-1]}",
                "issued_at": utc_at(now_s),
            }
        )
        stage = Stage.escalated if levels != previous.levels else Stage.resent
        record = LifecycleEvent(
            incident_id=event.incident_id,
            stage=stage,
            ts=utc_at(now_s),
            actor="warning agent",
            note=f"not acknowledged; sent again to {', '.join(levels)}",
            warning_id=again.warning_id,
        )
        return (
            {**incident, "warning": again.model_dump(mode="json"), "last_sent_s": now_s, "resends": n},
            again,
            [record],
        )
    if event.source != "operator" or event.stage.value not in OPERATOR_STAGES:
        return incident, None, []  # the system's own records: already applied when they were made
    stages = advance(incident.get("stages", {}), event.stage.value, event.ts.timestamp())
    return {**incident, "stages": stages, "open": incident["open"] and event.stage != Stage.closed}, None, []


def opened_s(incident: dict) -> float:
    return float(incident["incident_id"].rsplit(":", 1)[1])


def river_passed_s(city: City, point, river: str, at_s: float, rules: WarningsFile) -> float:
    """When what was at ``point`` at ``at_s`` will have passed the river's last station, plus a margin."""
    times = [
        t
        for st in city.stations.values()
        if st.river == river and not st.treated
        if (t := city.network.travel_time_s(point, st.point)) is not None
    ]
    return at_s + max(times, default=0.0) + rules.grouping.plume_margin_h * 3600


def plume_passed_s(city: City, result: TracingResult, rules: WarningsFile) -> float:
    """When a traced plume will have passed the last station of the incident's river: the incident
    stays open, at least blue, while it travels, so the downstream exceedances it causes join it."""
    top = result.suspects[0]
    released_s = result.ts.timestamp() - top.travel_time_h * 3600
    return river_passed_s(
        city, city.sources[top.source_id].point, result.incident_key.split(":", 1)[1], released_s, rules
    )


def dam_ahead(city: City, result: TracingResult, intake_point):
    """The interception-dam site furthest downstream between the top suspect and the intake it
    threatens that the plume has not reached by the end of the readings traced (None: none left)."""
    top = result.suspects[0]
    source_point = city.sources[top.source_id].point
    now_s = (result.observed_until or result.ts).timestamp()
    released_s = result.ts.timestamp() - top.travel_time_h * 3600
    nominal_s = city.network.travel_time_s(source_point, city.stations[result.station].point)
    slower = top.travel_time_h * 3600 / nominal_s if nominal_s else 1.0  # today's flow against the model's
    ahead = [
        (city.network.distance_km(source_point, d.point), d)
        for d in city.dams.values()
        if city.network.path(source_point, d.point)
        and city.network.path(d.point, intake_point)
        and released_s + city.network.travel_time_s(source_point, d.point) * slower > now_s
    ]
    return max(ahead, key=lambda x: x[0])[1] if ahead else None


def decide_traced(
    result: TracingResult, incident: dict | None, city: City, rules: WarningsFile, routing: WarningRouting
) -> tuple[dict | None, Warning | None]:
    """A warning naming the suspected source and the intake at risk, once per incident, top suspect and tier.

    The tier is the incident's, raised to red when the plume is due at an intake within
    ``escalation.intake_hours_red`` hours, and to at least orange when cameras saw the oil sheen.
    """
    # a closed incident still gets its source warning (the plume has moved on), but not a newer incident
    # (an incident opened by a later alert that came first, in a backlog, holds what the traced station saw:
    # it is this one's)
    if (
        incident is None
        or not result.suspects
        or (result.ts.timestamp() < opened_s(incident) and f"plume:{result.station}" not in incident.get("members", {}))
    ):
        return incident, None
    top = result.suspects[0]
    if top.probability < rules.escalation.min_source_probability:
        return incident, None  # not sure enough to name anyone: a later look, with more of the plume, may be
    tier = Tier(incident["tier"])
    threatened = [a for a in result.arrivals if a.hours_left >= 0]
    first_intake = min(threatened, key=lambda a: a.hours_left) if threatened else None
    if first_intake is not None and first_intake.hours_left <= rules.escalation.intake_hours_red:
        tier = Tier.red
    # cameras that saw a sheen on the river corroborate the incident: at least orange, and said so
    seen = "".join(
        f"; oil sheen {c.area_m2:.0f} m² seen by camera {c.camera_id} at {city.site_name(c.station)} "
        f"(confidence {c.confidence:.0%})"
        for c in result.camera_sightings
    )
    if result.camera_sightings and tier.rank < Tier.orange.rank:
        tier = Tier.orange
    arrival_s = first_intake.arrival.timestamp() if first_intake is not None else None
    dam = dam_ahead(city, result, city.intakes[first_intake.intake_id].point) if first_intake is not None else None
    same = incident.get("traced") == top.source_id and Tier(incident.get("traced_tier", "blue")).rank >= tier.rank
    # a later look with more of the plume that moves the intake arrival materially, or whose plume
    # has passed the dam named before, is an update, not a repeat
    moved = arrival_s is not None and (
        incident.get("traced_arrival_s") is None  # now names the intake at risk
        or abs(arrival_s - incident["traced_arrival_s"]) > rules.escalation.arrival_update_h * 3600
    )
    revised = same and (moved or (arrival_s is not None and (dam.id if dam else None) != incident.get("traced_dam")))
    if same and not revised:
        return incident, None
    if incident.get("traced") not in (None, top.source_id) and top.probability < incident.get(
        "traced_probability", 0.0
    ):
        return incident, None  # a later trace (often from a station further down) less sure than the one warned on
    looked_s = (result.observed_until or result.ts).timestamp()
    update = (
        ("[更新 arrival revised] " if moved else "[更新 dam revised] ")
        if revised
        else ("[更新 source revised] " if incident.get("traced") not in (None, top.source_id) else "")
    )
    # the trace has spoken: what it says holds the tier now (its source member until the plume is past the intake)
    members = {m: v for m, v in incident.get("members", {}).items() if not m.startswith(TRACE_HOLD)}
    if first_intake is not None:  # the threat stands, at this tier, until the plume has passed the intake
        members = add_member(
            members, f"source:{top.source_id}", tier.value, first_intake.latest.timestamp(), keeps_higher=True
        )
    members = add_member(
        members, f"plume:{top.source_id}", Tier.blue.value, plume_passed_s(city, result, rules), keeps_higher=True
    )
    incident = {**incident, "members": members, "lower_since_s": None}
    levels, departments = routing.route(result.category.value, tier.value)
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
    checklist = []  # the steps whose facts are known: no dam or dilution plan when no intake is ahead of the plume
    for item in rules.checklists_traced.get(result.category.value, []):
        try:
            checklist.append(item.format(**facts))
        except KeyError:
            continue
    arrival = (
        (
            f"; due at {first_intake.name} in {first_intake.hours_left:.1f} h "
            f"({first_intake.earliest:%H:%M}-{first_intake.latest:%H:%M} UTC)"
        )
        if first_intake
        else ""
    )
    warning = Warning(
        warning_id=f"{incident['incident_id']}:source:{top.source_id}:{tier.value}"
        + (f":updated{int(looked_s)}" if revised else ""),
        incident_id=incident["incident_id"],
        category=result.category,
        tier=tier,
        district=result.district,
        township=result.township,
        station=result.station,
        levels=levels,
        departments=departments,
        recipients=who(departments, levels, result.district, result.township, city, routing),
        title=(
            f"{update}{tier.value.upper()} water warning at {city.site_name(result.station)}: "
            f"suspected source {top.name} ({top.probability:.0%})"
        ),
        message=top.explanation + arrival + seen,
        checklist=checklist,
        suspects=result.suspects,
        arrivals=result.arrivals,
        affected=affected(incident, result.ts.timestamp()),
        alert_ids=[f"tracing:{result.incident_key}"],
        ts=result.ts,
    )
    return {
        **sent(incident, warning),
        "tier": max(tier, Tier(incident["tier"]), key=lambda t: t.rank).value,
        "traced": top.source_id,
        "traced_tier": tier.value,
        "traced_arrival_s": arrival_s,
        "traced_probability": top.probability,
        "traced_dam": dam.id if dam else None,
    }, warning


CITY = default_city()
RULES = rules_or_exit("yuflow worker").warnings
ROUTING = rules_or_exit("yuflow worker").warning_routing


def stage_records(before: dict | None, incident: dict | None, warning: Warning | None) -> list[LifecycleEvent]:
    """What changed in the incident's life (opened, warned, closed) as lifecycle records."""
    if incident is None:
        return []
    old = (before or {}).get("stages", {}) if (before or {}).get("incident_id") == incident["incident_id"] else {}
    said = (
        f"{warning.tier.value.upper()}: {warning.title}" if warning is not None else ""
    )  # which warning, at which tier
    records = [
        LifecycleEvent(
            incident_id=incident["incident_id"],
            stage=Stage(stage),
            ts=utc_at(at_s),
            actor="warning agent",
            warning_id=warning.warning_id if warning is not None else "",
            note=said[:2000] if stage == "warned" else "",
        )
        for stage, at_s in incident.get("stages", {}).items()
        if stage not in old
    ]
    if warning is not None and "warned" in old:  # an escalation, a lowering or a source warning: warned again
        records.append(
            LifecycleEvent(
                incident_id=incident["incident_id"],
                stage=Stage.warned,
                ts=warning.issued_at,
                actor="warning agent",
                warning_id=warning.warning_id,
                note=said[:2000],
            )
        )
    return records


async def issue(key: str, warning: Warning | None, records: list[LifecycleEvent]) -> None:
    """Send the warning and the lifecycle records."""
    if warning is not None:
        await warnings_topic.send(key=warning.incident_id.encode(), value=warning.to_json())
    for record in records:
        await lifecycle_topic.send(key=key.encode(), value=record.to_json())


async def _warn(stream, parse, decide_with, source, held_back=lambda item: None) -> None:
    """Alerts or tracing results -> the incident's new state and the warning it calls for, if any;
    an item ``held_back`` by a silence is recorded as suppressed instead."""
    async for raw in stream:
        try:
            item = parse(raw)
            silence = held_back(item)
            if silence is not None:
                await suppressed_topic.send(
                    key=item.incident_key.encode(),
                    value=SuppressedAlert(alert=item, silence_id=silence.silence_id, reason=silence.reason).to_json(),
                )
                continue
            before = incidents_table.get(item.incident_key)
            incident, warning = decide_with(item, before, CITY, RULES, ROUTING)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("warnings", source, raw, error)
            continue
        if incident is not None:
            incidents_table[item.incident_key] = incident
        await issue(item.incident_key, warning, stage_records(before, incident, warning))


SILENCES: dict[
    str, Silence
] = {}  # every silence on the topic, on every worker (few; read whole by ``follow_silences``)


def silenced(alert: Alert) -> Silence | None:
    now = utc_now()
    return next((x for x in SILENCES.values() if x.active(now) and x.matches(alert)), None)


@app.task
async def follow_silences() -> None:
    """Keep ``SILENCES`` as the ``silences`` topic says, from its start: each worker needs them all."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        SILENCES_TOPIC,
        bootstrap_servers=SETTINGS.kafka.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async for record in consumer:
            try:
                silence = Silence.model_validate_json(record.value)
            except ValueError as error:
                await dead_letter("silences", silences_topic, record.value, error, code="invalid")
                continue
            SILENCES[silence.silence_id] = silence
    finally:
        await consumer.stop()


@app.agent(alerts_topic)
async def warn(stream):
    await _warn(stream, Alert.model_validate_json, decide, alerts_topic, held_back=silenced)


@app.agent(tracing_topic)
async def warn_traced(stream):
    await _warn(stream, TracingResult.model_validate_json, decide_traced, tracing_topic)


@app.agent(lifecycle_topic)
async def lifecycle(stream):
    """The timer's checks; the topic's other records (the system's, operators' accepted actions) are the record."""
    async for raw in stream:
        try:
            event = LifecycleEvent.model_validate_json(raw)
            if event.stage != Stage.check:
                continue
            incident, warning, records = apply_lifecycle(
                event, incidents_table.get(event.incident_key), time.time(), CITY, RULES, ROUTING
            )
        except Exception as error:  # never a crash
            await dead_letter("lifecycle", lifecycle_topic, raw, error)
            continue
        incidents_table[event.incident_key] = incident
        await issue(event.incident_key, warning, records)


@app.agent(actions_topic)
async def act(stream):
    """Operators' requests: applied and recorded on ``lifecycle``, or rejected with the reason
    (dead letter ``rejected_action``); either way answered on ``actions.results``."""
    async for raw in stream:
        try:
            event = LifecycleEvent.model_validate_json(raw)
        except ValueError as error:
            await dead_letter("actions", actions_topic, raw, error, code="rejected_action")
            continue
        try:
            if event.source != "operator" or event.stage.value not in OPERATOR_STAGES:
                raise ValueError(f"not an operator's action: {event.source} {event.stage.value}")
            incident, warning, records = apply_lifecycle(
                event, incidents_table.get(event.incident_key), time.time(), CITY, RULES, ROUTING
            )
        except (
            Exception
        ) as error:  # unknown or closed incident, out of order: the operator is told why; a bug is logged
            mistake = isinstance(error, ValueError)
            await dead_letter(
                "actions", actions_topic, raw, error, code="rejected_action" if mistake else "agent_error"
            )
            await answer(
                event, accepted=False, reason=str(error) if mistake else "the warning agent failed; see its log"
            )
            continue
        incidents_table[event.incident_key] = incident
        await issue(event.incident_key, warning, [event, *records])
        await answer(event, accepted=True)


async def answer(event: LifecycleEvent, accepted: bool, reason: str = "") -> None:
    if event.request_id:
        result = ActionResult(
            request_id=event.request_id,
            incident_id=event.incident_id,
            stage=event.stage,
            accepted=accepted,
            reason=reason,
        )
        await action_results_topic.send(key=event.incident_key.encode(), value=result.to_json())


@app.timer(interval=RULES.lifecycle.check_interval_s)
async def check_due() -> None:
    """Prompt each open incident that needs something now: a re-send nobody acknowledged, a lower tier, closing."""
    now_s = time.time()
    for key, incident in list(incidents_table.items()):
        if due(incident, now_s, RULES):
            check = LifecycleEvent(incident_id=incident["incident_id"], stage=Stage.check, actor="timer")
            await lifecycle_topic.send(key=key.encode(), value=check.to_json())
