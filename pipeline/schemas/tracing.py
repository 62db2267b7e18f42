"""Tracing: the record it reads (``water.trace``) and its answer for an incident (suspects,
arrivals at intakes, camera sightings)."""

from __future__ import annotations

from pydantic import Field

from pipeline.schemas.alerts import Alert, Category
from pipeline.schemas.message import Message, UtcDatetime, utc_now
from pipeline.schemas.readings import CameraDetection


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
