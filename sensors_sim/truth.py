"""Ground truth written with every simulator run: what happened, where, and what should be detected."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class TruthEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    type: str  # release | oil_spill | do_sag | storm | crowd_surge | fault
    start: datetime
    end: datetime
    source_id: str | None = None
    affected_sensors: list[str] = []
    expected_detection: datetime | None = None  # earliest time the clean signal crosses its threshold
    expected_tier: str | None = None
    details: dict[str, Any] = {}


class GroundTruth(BaseModel):
    scenario: str
    seed: int
    scale: int
    start: datetime
    end: datetime
    steps_s: dict[str, int]
    events: list[TruthEvent]

    def of_type(self, *types: str) -> list[TruthEvent]:
        return [e for e in self.events if e.type in types]
