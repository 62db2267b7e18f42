"""The water screen's verdicts: per reading of a batch as arrays (``Verdicts``), and of one
reading by name (``Verdict``); the change and fault codes they hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

RAISED, CLEARED = 1, 2  # change codes (0: no change)
FAULT_NONE, FAULT_STUCK, FAULT_SPIKE, FAULT_DROPOUT = 0, 1, 2, 3
FAULT_NAMES = {FAULT_STUCK: "stuck", FAULT_SPIKE: "spike", FAULT_DROPOUT: "dropout"}


@dataclass
class Verdicts:
    """Per reading of a batch (n readings over P parameters)."""

    change: np.ndarray  # (n,) int8: RAISED, CLEARED or 0
    alarm: np.ndarray  # (n,) bool: the station's event state after the reading
    evidence: np.ndarray  # (n,) float: -log10 P of the outliers in the window (unsaturated)
    z: np.ndarray  # (n, P) signed z (NaN: not read, warming up, or stuck)
    outlier: np.ndarray  # (n, P) bool
    top: np.ndarray  # (n,) int: the parameter furthest from normal in its direction (-1: none)
    fault: np.ndarray  # (n,) int8: FAULT_* of this reading (a spike: of the previous one)
    fault_parameter: np.ndarray  # (n,) int: the spike's parameter (-1: none)

    def take(self, index: np.ndarray) -> Verdicts:
        """The verdicts of the readings at ``index``."""
        return Verdicts(*(getattr(self, f.name)[index] for f in fields(self)))


@dataclass(frozen=True)
class Verdict:
    """One reading's verdict (``WaterScreen.step_one``)."""

    change: str | None  # "raised" | "cleared" | None
    alarm: bool
    evidence: float
    z: dict[str, float]  # per parameter read and scored
    parameter: str | None  # the parameter furthest from normal in its direction
    fault: str | None  # stuck | spike | dropout
    fault_parameter: str | None

    @classmethod
    def of(cls, v: Verdicts, n: int, parameters: Sequence[str]) -> Verdict:
        change = {RAISED: "raised", CLEARED: "cleared"}.get(int(v.change[n]))
        z = {p: float(v.z[n, j]) for j, p in enumerate(parameters) if np.isfinite(v.z[n, j])}
        top = int(v.top[n])
        fp = int(v.fault_parameter[n])
        return cls(
            change,
            bool(v.alarm[n]),
            float(v.evidence[n]),
            z,
            parameters[top] if top >= 0 else None,
            FAULT_NAMES.get(int(v.fault[n])),
            parameters[fp] if fp >= 0 else None,
        )
