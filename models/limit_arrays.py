"""Many stations' limits as arrays: ``Limit.severity`` for a batch of readings of many stations at once.

A batch is a (readings, columns) matrix of values and each reading's station row; a station's limits
are laid out over the same columns, NaN where it has no bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.standards import Limit


class LimitArrays:
    """The limits of each station (row) over ``columns``.

    >>> bounds = LimitArrays([{"do": Limit("do", low=5.0)}, {}], ["do", "cod"])
    >>> bounds.severity(np.array([0, 0, 1]), np.array([[6.0, 1.0], [4.0, 1.0], [4.0, 1.0]]))
    array([[ nan, -inf],
           [ 0.2, -inf],
           [-inf, -inf]])
    """

    def __init__(self, limits: Sequence[Mapping[str, Limit]], columns: Sequence[str]):
        column = {p: j for j, p in enumerate(columns)}
        self.low = np.full((len(limits), len(columns)), np.nan)
        self.high = np.full((len(limits), len(columns)), np.nan)
        for k, station_limits in enumerate(limits):
            for p, limit in station_limits.items():
                if p in column and limit.low is not None:
                    self.low[k, column[p]] = limit.low
                if p in column and limit.high is not None:
                    self.high[k, column[p]] = limit.high
        self.has_limit = ~np.isnan(self.low) | ~np.isnan(self.high)

    def severity(self, stations: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``Limit.severity`` for a batch: NaN within the limit, -inf where the station has no limit."""
        low, high = self.low[stations], self.high[stations]
        with np.errstate(invalid="ignore", divide="ignore"):
            below = values < low
            above = ~below & (values > high)
            from_low = np.where(low > 0, np.minimum(1.0, (low - values) / low), 1.0)
            from_high = np.where(high > 0, np.minimum(1.0, (values - high) / high), 1.0)
        severity = np.where(below, from_low, np.where(above, from_high, np.nan))
        return np.where(self.has_limit[stations], severity, -np.inf)
