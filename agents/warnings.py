"""Warning agent: Alerts -> tiered, routed Warnings, one per incident (re-issued only on escalation),
followed through their lifecycle.

Incident state (open?, tier issued, lifecycle times, the last warning) lives in a Faust table keyed
by the incident key; alerts, tracing results and lifecycle events are keyed the same way, so an
incident's messages and state share a partition. Operators' acknowledgements and closures arrive
on ``lifecycle``; a timer prompts (through the same topic, since tables change only inside a
stream) the re-sending of warnings nobody has acknowledged, one governance level up after
``escalate_after`` sends.

The decisions are the incident engine's (models/incidents.py, incident_decisions.py,
incident_lifecycle.py; pipeline/incidents.py and incident_traces.py in the pipeline's messages):
this module is its Faust wiring. The table holds each incident as ``Incident.to_dict()``.
"""

from __future__ import annotations

import time
from functools import cache
from typing import NamedTuple

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
from models.incident_lifecycle import OPERATOR_STAGES, due
from models.incidents import Incident, IncidentRules
from pipeline.city import City, default_city
from pipeline.incident_traces import decide_traced
from pipeline.incidents import apply_lifecycle, decide, incident_rules, stage_records
from pipeline.rule_files import WarningsFile
from pipeline.rules import WarningRouting, rules_or_exit
from pipeline.schemas import (
    ActionResult,
    Alert,
    LifecycleEvent,
    Silence,
    Stage,
    SuppressedAlert,
    TracingResult,
    Warning,
    utc_now,
)
from pipeline.topics import SILENCES as SILENCES_TOPIC

incidents_table = app.Table("incidents", default=None, partitions=SETTINGS.kafka.partitions)


class Engine(NamedTuple):
    """What the incident engine decides with: the city, the warning rules and routing."""

    city: City
    rules: WarningsFile
    routing: WarningRouting
    incident_rules: IncidentRules


@cache
def engine() -> Engine:
    """Built on the first record (not at import); the rule files were checked when the worker started."""
    rule_files = rules_or_exit("yuflow worker")
    return Engine(default_city(), rule_files.warnings, rule_files.warning_routing, incident_rules(rule_files.warnings))


def stored(key: str) -> Incident | None:
    """The incident under ``key`` in the table, typed (the table holds ``Incident.to_dict()``)."""
    value = incidents_table.get(key)
    return Incident.from_dict(value) if value is not None else None


def store(key: str, incident: Incident) -> None:
    incidents_table[key] = incident.to_dict()


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
            before = stored(item.incident_key)
            incident, warning = decide_with(item, before, *engine()[:3])
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("warnings", source, raw, error)
            continue
        if incident is not None:
            store(item.incident_key, incident)
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
            incident, warning, records = apply_lifecycle(event, stored(event.incident_key), time.time(), *engine()[:3])
        except Exception as error:  # never a crash
            await dead_letter("lifecycle", lifecycle_topic, raw, error)
            continue
        store(event.incident_key, incident)
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
            incident, warning, records = apply_lifecycle(event, stored(event.incident_key), time.time(), *engine()[:3])
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
        store(event.incident_key, incident)
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


@app.timer(interval=rules_or_exit("yuflow worker").warnings.lifecycle.check_interval_s)  # (declared: read once)
async def check_due() -> None:
    """Prompt each open incident that needs something now: a re-send nobody acknowledged, a lower tier, closing."""
    now_s = time.time()
    for key, value in list(incidents_table.items()):
        incident = Incident.from_dict(value) if value else None
        if due(incident, now_s, engine().incident_rules):
            check = LifecycleEvent(incident_id=incident.incident_id, stage=Stage.check, actor="timer")
            await lifecycle_topic.send(key=key.encode(), value=check.to_json())
