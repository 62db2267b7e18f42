"""Readings: one sample of one sensor (a camera's detection is one too), and the batch record
of readings on ``readings.*``, ``rain.tiles`` and ``crowd.camera``."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Literal

from pydantic import Field, TypeAdapter

from pipeline.schemas.message import IDENT, Message, UtcDatetime


class Kind(StrEnum):
    water = "water"
    rain = "rain"
    crowd = "crowd"
    camera = "camera"


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
