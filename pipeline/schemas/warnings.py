"""Warnings for operators, and the record of each delivery of one to a department."""

from __future__ import annotations

from pydantic import Field

from pipeline.schemas.alerts import Category, Tier
from pipeline.schemas.message import Message, UtcDatetime, utc_now
from pipeline.schemas.tracing import IntakeArrival, SourceSuspect


class Warning(Message):  # noqa: A001 - the domain's word; shadows the builtin only inside this module
    """A tiered, routed warning for operators: which area, which tier, which levels, which departments."""

    warning_id: str
    incident_id: str
    category: Category
    tier: Tier
    district: str
    township: str = ""
    station: str
    levels: list[str]
    departments: list[str]
    recipients: list[str] = Field([], description="responsible persons and duty posts, from config/roster.toml")
    title: str
    message: str
    checklist: list[str] = []
    suspects: list[SourceSuspect] = []
    arrivals: list[IntakeArrival] = []
    affected: list[str] = Field(
        [], description="what the incident covers now: station:parameter, and source:<id> once traced"
    )
    alert_ids: list[str]
    ts: UtcDatetime
    issued_at: UtcDatetime = Field(default_factory=utc_now)


class Delivery(Message):
    """One warning handed to one department by one channel (or the failure to), for the record."""

    delivery_id: str = Field(description="warning_id|department|channel: the same delivery is never made twice")
    warning_id: str
    incident_id: str
    category: Category
    tier: Tier
    department: str
    channel: str
    ok: bool
    detail: str = Field("", max_length=1000)
    delivered_at: UtcDatetime = Field(default_factory=utc_now)
    since_reading_s: float = Field(
        description="from the event time of the reading that completed the finding to delivery"
    )
