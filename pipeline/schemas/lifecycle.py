"""An incident's life: its stages, the events that record them (the system's and operators'
actions), the answer to an operator's request, and the incident and warning ids."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import Field

from models.incident_lifecycle import OPERATOR_STAGES
from pipeline.schemas.alerts import Category
from pipeline.schemas.message import Message, UtcDatetime, utc_now


class Stage(StrEnum):
    """Closed-loop stages of an incident (感知 → 预警 → 送达 → 签收 → 处置 → 办结 → 复盘), plus the
    system's re-sends; ``check`` is the timer's prompt to re-send what is overdue, not a stage."""

    sensed = "sensed"
    warned = "warned"
    delivered = "delivered"
    acknowledged = "acknowledged"
    disposed = "disposed"
    closed = "closed"
    reviewed = "reviewed"
    resent = "resent"
    escalated = "escalated"
    check = "check"


class LifecycleEvent(Message):
    """A step in an incident's life: recorded by the system or an operator's action (ack, close ...)."""

    incident_id: str
    stage: Stage
    ts: UtcDatetime = Field(default_factory=utc_now)
    source: Literal["operator", "system"] = "system"
    actor: str = Field("", max_length=128, description="who (an operator's name, a department, or the agent)")
    note: str = Field("", max_length=2000)
    warning_id: str = ""
    request_id: str = Field(
        "", max_length=64, description="an operator's request this records (its answer carries the same id)"
    )

    @property
    def incident_key(self) -> str:
        """The incident's key (category:area), which partitions its alerts and state."""
        return incident_key_of(self.incident_id)

    @classmethod
    def by_operator(cls, warning_or_incident_id: str, stage: Stage | str, actor: str, note: str = "") -> LifecycleEvent:
        """An operator's action on a warning or incident id (ValueError when the id or stage is not one)."""
        incident_id = incident_id_of(warning_or_incident_id)
        if Stage(stage).value not in OPERATOR_STAGES:
            raise ValueError(f"stage must be one of {', '.join(OPERATOR_STAGES)}")
        return cls(
            incident_id=incident_id,
            stage=Stage(stage),
            source="operator",
            actor=actor,
            note=note,
            warning_id=warning_or_incident_id if warning_or_incident_id != incident_id else "",
            request_id=uuid.uuid4().hex,
        )


class ActionResult(Message):
    """The warning agent's answer to an operator's request: accepted (and recorded on ``lifecycle``)
    or rejected with the reason (and dead-lettered as ``rejected_action``)."""

    request_id: str
    incident_id: str
    stage: Stage
    accepted: bool
    reason: str = Field("", max_length=1000)
    ts: UtcDatetime = Field(default_factory=utc_now)


def incident_key_of(incident_or_warning_id: str) -> str:
    """``category:area`` from an incident id (key:opened_s) or a warning id (incident id:tier...)."""
    parts = incident_or_warning_id.split(":")
    if len(parts) < 3 or parts[0] not in Category.__members__ or not parts[2].isdigit():
        raise ValueError(f"{incident_or_warning_id!r} is not an incident or warning id (category:area:opened_s[...])")
    return ":".join(parts[:2])


def incident_id_of(incident_or_warning_id: str) -> str:
    incident_key_of(incident_or_warning_id)
    return ":".join(incident_or_warning_id.split(":")[:3])
