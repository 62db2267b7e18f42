"""Water-quality standard limits (GB 3838-2002) and how far a value is beyond them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

CLASSES = ("I", "II", "III", "IV", "V")


@dataclass(frozen=True)
class Limit:
    """An allowed band for one parameter: value >= low (if set) and value <= high (if set)."""

    parameter: str
    low: float | None = None
    high: float | None = None

    def severity(self, value: float) -> float | None:
        """None when the value meets the limit, else how far beyond it in [0, 1].

        0 is just past the limit; 1 is (at least) a full limit's width beyond it.

        >>> do = Limit("do", low=5.0)
        >>> do.severity(6.1) is None, round(do.severity(3.5), 2), do.severity(0.0)
        (True, 0.3, 1.0)
        >>> Limit("nh3n", high=1.0).severity(1.5)
        0.5
        """
        if self.low is not None and value < self.low:
            return min(1.0, (self.low - value) / self.low) if self.low > 0 else 1.0
        if self.high is not None and value > self.high:
            return min(1.0, (value - self.high) / self.high) if self.high > 0 else 1.0
        return None

    def severity_many(self, values: np.ndarray) -> np.ndarray:
        """Vectorised ``severity``: NaN where a value meets the limit.

        >>> Limit("do", low=5.0).severity_many(np.array([6.0, 4.0, -1.0]))
        array([nan, 0.2, 1. ])
        """
        values = np.asarray(values, dtype=float)
        out = np.full(values.shape, np.nan)
        if self.low is not None:
            below = values < self.low
            out[below] = np.minimum(1.0, (self.low - values[below]) / self.low) if self.low > 0 else 1.0
        if self.high is not None:
            above = values > self.high
            out[above] = np.minimum(1.0, (values[above] - self.high) / self.high) if self.high > 0 else 1.0
        return out

    @property
    def bound(self) -> float:
        """The limit that is crossed when the value is bad (low for minimums, high otherwise)."""
        return self.low if self.high is None else self.high  # type: ignore[return-value]


def class_limits(table: Mapping[str, Mapping[str, Any]], water_class: str) -> dict[str, Limit]:
    """Limits of one GB 3838 class from the config table (config/gb3838.toml).

    >>> table = {"do": {"bound": "min", "III": 5.0}, "ph": {"bound": "range", "low": 6, "high": 9}}
    >>> class_limits(table, "III")["do"]
    Limit(parameter='do', low=5.0, high=None)
    """
    if water_class not in CLASSES:
        raise ValueError(f"unknown GB 3838 class {water_class!r}; expected one of {CLASSES}")
    limits = {}
    for parameter, row in table.items():
        bound: Literal["min", "max", "range"] = row["bound"]
        if bound == "min":
            limits[parameter] = Limit(parameter, low=float(row[water_class]))
        elif bound == "max":
            limits[parameter] = Limit(parameter, high=float(row[water_class]))
        elif bound == "range":
            limits[parameter] = Limit(parameter, low=float(row["low"]), high=float(row["high"]))
        else:
            raise ValueError(f"{parameter}: bound must be min, max or range, not {bound!r}")
    return limits
