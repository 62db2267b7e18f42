"""Message schemas, defined once. JSON on the wire; timestamps ISO 8601 in UTC ("...Z").

Every message is a pydantic model: ``Model.model_validate_json(raw)`` to read, ``to_json()`` to write.
This package's names are the contract every stage imports (``from pipeline.schemas import Alert``);
each family of messages is defined in its own module:

- ``message``: the ``Message`` base (frozen, no extra keys) and UTC timestamps;
- ``readings``: ``Reading``, ``CameraDetection`` and the readings batch record (``encode_batch``);
- ``alerts``: ``Alert``, a model's finding, with its ``Category`` and ``Tier``;
- ``tracing``: the ``water.trace`` record and tracing's answer (suspects, arrivals at intakes);
- ``rain``: the ``rain.districts`` record between the rain agents;
- ``warnings``: the operators' ``Warning`` and the ``Delivery`` record of each delivery;
- ``lifecycle``: an incident's ``Stage``s, ``LifecycleEvent``, ``ActionResult``, incident ids;
- ``silences``: maintenance windows and the alerts they hold back;
- ``dead_letters``: input that could not be accepted.
"""

from __future__ import annotations

from pipeline.schemas.alerts import Alert, Category, Tier
from pipeline.schemas.dead_letters import PAYLOAD_KEEP_CHARS, DeadLetter
from pipeline.schemas.lifecycle import ActionResult, LifecycleEvent, Stage, incident_id_of, incident_key_of
from pipeline.schemas.message import IDENT, Message, UtcDatetime, utc_at, utc_now
from pipeline.schemas.rain import GaugeStatus, RainDistrictRecord, RainDistrictStatus
from pipeline.schemas.readings import (
    CameraDetection,
    Kind,
    Quantity,
    Reading,
    encode_batch,
    parse_batch,
    parse_reading,
)
from pipeline.schemas.silences import Silence, SuppressedAlert
from pipeline.schemas.tracing import CameraSighting, IntakeArrival, SourceSuspect, TracingResult, WaterTraceRecord
from pipeline.schemas.warnings import Delivery, Warning

__all__ = [
    "IDENT",
    "Message",
    "UtcDatetime",
    "utc_at",
    "utc_now",
    "Kind",
    "Quantity",
    "Reading",
    "CameraDetection",
    "encode_batch",
    "parse_batch",
    "parse_reading",
    "Category",
    "Tier",
    "Alert",
    "SourceSuspect",
    "IntakeArrival",
    "CameraSighting",
    "WaterTraceRecord",
    "TracingResult",
    "GaugeStatus",
    "RainDistrictStatus",
    "RainDistrictRecord",
    "Warning",
    "Delivery",
    "Stage",
    "LifecycleEvent",
    "ActionResult",
    "incident_key_of",
    "incident_id_of",
    "Silence",
    "SuppressedAlert",
    "PAYLOAD_KEEP_CHARS",
    "DeadLetter",
]
