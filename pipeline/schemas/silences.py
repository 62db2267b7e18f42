"""Maintenance windows (静默) and the alerts they hold back."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from pipeline.schemas.alerts import Alert
from pipeline.schemas.message import IDENT, Message, UtcDatetime, utc_now


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
