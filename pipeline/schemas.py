"""Message schemas, defined once. JSON on the wire; timestamps ISO 8601 in UTC ("...Z").

Every message is a pydantic model: ``Model.model_validate_json(raw)`` to read, ``to_json()`` to write.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from models.warnings import OPERATOR_STAGES

IDENT = r"^[A-Za-z0-9_.-]{1,64}$"
PAYLOAD_KEEP_CHARS = 4096  # of a dead letter's raw payload


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_at(t_s: float) -> datetime:
    """The UTC datetime of a Unix time in seconds."""
    return datetime.fromtimestamp(t_s, UTC)


class Kind(StrEnum):
    water = "water"
    rain = "rain"
    crowd = "crowd"
    camera = "camera"


class Category(StrEnum):
    """What a warning is about; decides routing and contingency plans."""

    water = "water"
    rain = "rain"
    crowd = "crowd"


class Tier(StrEnum):
    """Warning tiers, lowest to highest (蓝/黄/橙/红)."""

    blue = "blue"
    yellow = "yellow"
    orange = "orange"
    red = "red"

    @property
    def rank(self) -> int:
        return list(Tier).index(self)

    @property
    def zh(self) -> str:
        """The tier's colour as the signals name it (蓝色 / 黄色 / 橙色 / 红色)."""
        return {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}[self.value]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def to_json(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json() without the str round trip


class Quantity(Message):
    value: float
    unit: str = Field(min_length=1, max_length=16)


class Reading(Message):
    """One sample of one sensor: one or more parameter values, each with its unit."""

    sensor_id: str = Field(pattern=IDENT)
    kind: Kind
    station: str = Field(pattern=IDENT, description="station, gauge or zone id")
    district: str = Field(pattern=IDENT)
    ts: UtcDatetime
    values: dict[str, Quantity] = Field(min_length=1, max_length=64)


class CameraDetection(Reading):
    """An edge-AI camera's finding: a Reading of kind camera plus the label and its confidence.

    Measures go in ``values`` (``oil_area`` m2, ``person_count`` persons, ``flood_depth`` m).
    """

    kind: Literal[Kind.camera] = Kind.camera
    detection: Literal["oil_sheen", "crowd", "road_flooding"]
    confidence: float = Field(ge=0.0, le=1.0)
    image_ref: str | None = Field(default=None, max_length=512)


class Alert(Message):
    """A model's finding about one sensor or station; input of the warning stage."""

    alert_id: str
    category: Category
    rule: str = Field(description="what found it, e.g. gb3838_exceedance")
    sensor_id: str
    station: str
    district: str
    township: str = ""
    ts: UtcDatetime = Field(description="event time of the reading that completed the finding")
    parameter: str
    value: float
    unit: str
    limit: float
    severity: float = Field(ge=0.0, le=1.0, description="0 = at the limit, 1 = far beyond it")
    message: str
    resolved: bool = False
    detected_at: UtcDatetime = Field(default_factory=utc_now)
    tier: Tier | None = Field(
        None,
        description="set when the rule itself defines the tier (CMA rain signals, "
        "Fruin levels); otherwise the warning stage derives it from severity",
    )
    expected_at: UtcDatetime | None = Field(None, description="for a forecast: when the tier is expected to be reached")
    checklist: list[str] = Field(
        [], description="disposal steps filled with this finding's facts (risk points, dispersal plan)"
    )
    area: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]{0,64}$",
        description="the incident's area: the river for water, the district for rain, the zone for crowds "
        "(empty: the station)",
    )

    @property
    def incident_key(self) -> str:
        """Alerts of one category in one area (a river's stations and parameters, a district, a zone)
        belong to one incident, and one partition."""
        return f"{self.category.value}:{self.area or self.station}"


class SourceSuspect(Message):
    """A candidate source of a water incident, from tracing."""

    source_id: str
    name: str
    type: str
    enterprise: str = ""
    probability: float = Field(ge=0.0, le=1.0)
    distance_km: float
    travel_time_h: float
    explanation: str


class IntakeArrival(Message):
    """When a traced plume reaches a drinking-water intake (or other sensitive point)."""

    intake_id: str
    name: str
    arrival: UtcDatetime
    earliest: UtcDatetime
    latest: UtcDatetime
    peak_mg_l: float
    hours_left: float


class CameraSighting(Message):
    """An edge camera's oil-sheen detections at a station during an incident (corroboration)."""

    station: str
    camera_id: str
    area_m2: float
    confidence: float


class WaterTraceRecord(Message):
    """A record on ``water.trace``: the traced parameters of a batch of water readings as columns
    (``values[parameter][n]`` of ``stations[n]`` at ``ts_s[n]``, None where not read), the water
    alerts the batch raised, and oil-sheen sightings of cameras. The water agent sends its readings
    before its alerts, so tracing has a station's series up to the reading that raised an alert."""

    stations: list[str] = []
    ts_s: list[float] = []
    values: dict[str, list[float | None]] = {}
    alerts: list[Alert] = []
    sightings: list[CameraDetection] = []


class GaugeStatus(Message):
    """A gauge at a rainstorm tier, reached or forecast."""

    gauge: str
    tier: Tier
    mm: float
    window_h: float
    expected_s: float | None = None  # a forecast: when the tier is expected to be reached


class RainDistrictStatus(Message):
    """One tile's gauges of one district at a tier after one step, with the district's nowcast band
    summed over all the tile's gauges of the district (for the district's mean)."""

    tile: str
    district: str
    t_s: float
    gauges: list[GaugeStatus] = []
    band_sum_mm: dict[str, float] = {}  # quantile -> sum over the tile's gauges of the district, next nowcast_h
    band_n: int = 0


class RainDistrictRecord(Message):
    """A record on ``rain.districts`` (keyed by district): a tile's status of the district after a
    step, or road-flooding sightings in it."""

    status: RainDistrictStatus | None = None
    flooding: list[CameraDetection] = []


class TracingResult(Message):
    """The tracing agent's answer for one incident: suspects, ranked, and arrivals downstream."""

    incident_key: str
    category: Category
    station: str
    district: str
    township: str = ""
    parameter: str
    ts: UtcDatetime
    suspects: list[SourceSuspect]
    arrivals: list[IntakeArrival] = []
    camera_sightings: list[CameraSighting] = []
    compute_ms: float
    computed_at: UtcDatetime = Field(default_factory=utc_now)
    observed_until: UtcDatetime | None = Field(
        None, description="the end of the readings this look saw (event time): arrivals' hours left count from it"
    )


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


class Silence(Message):
    """A maintenance window (静默): the alerts of a sensor, a station or an area (a river, district,
    township or zone) are held back until ``until``, recorded as suppressed, and warn no one.
    The same ``silence_id`` again with ``removed`` ends it early."""

    silence_id: str = Field(pattern=IDENT)
    sensor_id: str = ""
    station: str = ""
    area: str = ""
    until: UtcDatetime
    reason: str = Field(min_length=1, max_length=500)
    by: str = Field("operator", max_length=128)
    created_at: UtcDatetime = Field(default_factory=utc_now)
    removed: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> Silence:
        if sum(bool(x) for x in (self.sensor_id, self.station, self.area)) != 1:
            raise ValueError("a silence names exactly one of sensor_id, station, area")
        return self

    def active(self, at: datetime) -> bool:
        return not self.removed and at < self.until

    def matches(self, alert: Alert) -> bool:
        return (
            alert.sensor_id == self.sensor_id
            if self.sensor_id
            else alert.station == self.station
            if self.station
            else self.area in (alert.area, alert.district, alert.township, alert.station)
        )

    @property
    def target(self) -> str:
        return (
            f"sensor {self.sensor_id}"
            if self.sensor_id
            else f"station {self.station}"
            if self.station
            else f"area {self.area}"
        )


class SuppressedAlert(Message):
    """An alert a silence held back."""

    alert: Alert
    silence_id: str
    reason: str


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


class DeadLetter(Message):
    """Input that could not be accepted, with why. Raw payload kept (truncated) for diagnosis."""

    code: str = Field(description="short reason class for counting, e.g. invalid, unknown_sensor, duplicate")
    reason: str
    source_topic: str
    payload: str
    payload_bytes: int
    truncated: bool = False
    stage: str = "bridge"
    received_at: UtcDatetime = Field(default_factory=utc_now)
    sensor_id: str | None = None
    kind: str | None = None

    @classmethod
    def of(cls, code: str, reason: str, source_topic: str, payload: bytes, **context) -> DeadLetter:
        """A record for ``payload``, kept as text (undecodable bytes escaped), truncated past 4 KiB."""
        text = payload.decode("utf-8", errors="backslashreplace")
        return cls(
            code=code,
            reason=reason,
            source_topic=source_topic,
            payload=text[:PAYLOAD_KEEP_CHARS],
            payload_bytes=len(payload),
            truncated=len(text) > PAYLOAD_KEEP_CHARS,
            **context,
        )


_ANY_READING = TypeAdapter(CameraDetection | Reading)
_READING_BATCH = TypeAdapter(list[CameraDetection | Reading])


def parse_reading(raw: bytes | str) -> Reading:
    """A reading of any kind from JSON (a CameraDetection when it carries a detection)."""
    return _ANY_READING.validate_json(raw)


def encode_batch(readings_json: Sequence[bytes]) -> bytes:
    """A readings batch, the value of every record on ``readings.*``, ``rain.tiles`` and
    ``crowd.camera``: a JSON array of readings (of one partition, in arrival order). One record
    per reading would cost Kafka and the agents their per-record work for each reading."""
    return b"[" + b",".join(readings_json) + b"]"


def parse_batch(raw: bytes | str) -> list[Reading]:
    """The readings of a batch record (``encode_batch``)."""
    return _READING_BATCH.validate_json(raw)
