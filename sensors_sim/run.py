"""A simulation in progress: the scenario's clock and random streams, and what each step adds to it.

The steps (water, rain and crowd feeds, faults) each read the scenario and the city and add sensor
feeds as (time, sensor) arrays, sparse camera detections and ground-truth events; the frame step
flattens them into one long frame at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from pipeline.city import City
from sensors_sim.scenario import Scenario
from sensors_sim.truth import TruthEvent

# one stream per concern, so that a feed left out does not shift the draws of the others
RANDOM_STREAMS = ("water", "rain", "crowd", "camera", "faults", "messages")
TIER_ORDER = ("blue", "yellow", "orange", "red")


@dataclass
class Feed:
    """One feed's arrays before flattening."""

    kind: str
    sensor_ids: list[str]
    sites: list[str]
    districts: list[str]
    t_s: np.ndarray
    values: dict[str, np.ndarray]
    dropped: np.ndarray | None = None


@dataclass
class Detections:
    """Sparse camera detections: one message each."""

    t_s: list[np.ndarray] = field(default_factory=list)
    camera: list[np.ndarray] = field(default_factory=list)
    parameter: list[str] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    detection: list[str] = field(default_factory=list)
    confidence: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        camera_index: int,
        t_s: np.ndarray,
        parameter: str,
        value: np.ndarray,
        detection: str,
        confidence: np.ndarray,
    ) -> None:
        if len(t_s):
            self.t_s.append(t_s)
            self.camera.append(np.full(len(t_s), camera_index))
            self.parameter.append(parameter)
            self.value.append(value)
            self.detection.append(detection)
            self.confidence.append(confidence)


@dataclass
class Run:
    """One scenario being simulated on one city: what the steps read and what they add."""

    scn: Scenario
    city: City
    rng: dict[str, np.random.Generator]
    camera_ids: list[str]
    camera_index: dict[str, int]
    t_cam: np.ndarray  # every camera's sampling times
    feeds: list[Feed] = field(default_factory=list)
    cams: Detections = field(default_factory=Detections)
    truth: list[TruthEvent] = field(default_factory=list)

    @classmethod
    def begin(cls, scn: Scenario, city: City) -> Run:
        camera_ids = list(city.cameras)
        return cls(
            scn=scn,
            city=city,
            rng={name: np.random.default_rng([scn.seed, i]) for i, name in enumerate(RANDOM_STREAMS)},
            camera_ids=camera_ids,
            camera_index={c: i for i, c in enumerate(camera_ids)},
            t_cam=np.arange(0, scn.duration_s, scn.steps_s["camera"], dtype=float),
        )

    def simulates(self, feed: str) -> bool:
        return feed in self.scn.feeds

    def local_s(self, t_s: np.ndarray) -> np.ndarray:
        """Seconds since the epoch in the city's local time, for times ``t_s`` into the run."""
        return self.scn.start.timestamp() + self.city.utc_offset_h * 3600 + t_s

    def local_hour(self, t_s: np.ndarray) -> np.ndarray:
        return (self.local_s(t_s) % 86400) / 3600

    def at(self, t_s: float) -> datetime:
        """The time ``t_s`` seconds into the run."""
        return self.scn.start + timedelta(seconds=float(t_s))


def tier_rank(tier: str | None) -> int:
    return TIER_ORDER.index(tier) if tier in TIER_ORDER else -1


__all__ = ["Detections", "Feed", "Run", "tier_rank"]
