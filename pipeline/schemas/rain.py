"""The rain agents' record between tiles and districts (``rain.districts``)."""

from __future__ import annotations

from pipeline.schemas.alerts import Tier
from pipeline.schemas.message import Message
from pipeline.schemas.readings import CameraDetection


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
