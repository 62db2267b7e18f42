"""Alerts: a model's finding about one sensor or station, what it is about (``Category``) and
the warning tiers (``Tier``)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from pipeline.schemas.message import Message, UtcDatetime, utc_now


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
