"""A river network: rivers as chains of reaches, joined at confluences. Pure; built from plain data.

A point on the network is ``(river_id, km)``, km measured from the river's upstream end. Water flows
towards larger km, then into the receiving river at its confluence km (``mouth``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Point = tuple[str, float]


@dataclass(frozen=True)
class RiverSpec:
    """One river: reaches from source to mouth, and where it joins another river (None: leaves the map)."""

    id: str
    lengths_km: tuple[float, ...]
    velocities_mps: tuple[float, ...]
    discharges_m3s: tuple[float, ...]
    mouth: Point | None = None
    dispersion_m2s: float = 10.0

    def __post_init__(self):
        if not (len(self.lengths_km) == len(self.velocities_mps) == len(self.discharges_m3s) >= 1):
            raise ValueError(f"river {self.id}: reaches need length, velocity and discharge each")
        if min(self.lengths_km) <= 0 or min(self.velocities_mps) <= 0 or min(self.discharges_m3s) <= 0:
            raise ValueError(f"river {self.id}: lengths, velocities and discharges must be positive")

    @property
    def length_km(self) -> float:
        return float(sum(self.lengths_km))


class RiverNetwork:
    """Travel times, distances and discharges along the network.

    >>> net = RiverNetwork({
    ...     "trib": RiverSpec("trib", (10.0,), (0.5,), (2.0,), mouth=("main", 4.0)),
    ...     "main": RiverSpec("main", (4.0, 6.0), (1.0, 0.5), (8.0, 10.0)),
    ... })
    >>> round(net.travel_time_s(("trib", 2.0), ("main", 6.0)) / 3600, 3)  # 8 km at 0.5 + 2 km at 0.5
    5.556
    >>> net.travel_time_s(("main", 6.0), ("trib", 2.0)) is None  # not downstream
    True
    >>> net.distance_km(("trib", 2.0), ("main", 6.0)), net.discharge_m3s(("main", 5.0))
    (10.0, 10.0)
    """

    def __init__(self, rivers: Mapping[str, RiverSpec]):
        self.rivers = dict(rivers)
        self._km_edges: dict[str, np.ndarray] = {}
        self._time_at_edges: dict[str, np.ndarray] = {}
        for river in self.rivers.values():
            if river.mouth is not None and river.mouth[0] not in self.rivers:
                raise ValueError(f"river {river.id} flows into unknown river {river.mouth[0]}")
            edges = np.concatenate([[0.0], np.cumsum(river.lengths_km)])
            seconds = np.array(river.lengths_km) * 1000 / np.array(river.velocities_mps)
            self._km_edges[river.id] = edges
            self._time_at_edges[river.id] = np.concatenate([[0.0], np.cumsum(seconds)])
        for river_id in self.rivers:  # a cycle would make "downstream" endless
            self.path((river_id, 0.0), ("\0", 0.0))

    def _reach_index(self, point: Point) -> int:
        river_id, km = point
        edges = self._km_edges[river_id]
        return int(np.clip(np.searchsorted(edges, km, side="right") - 1, 0, len(edges) - 2))

    def discharge_m3s(self, point: Point) -> float:
        return self.rivers[point[0]].discharges_m3s[self._reach_index(point)]

    def velocity_mps(self, point: Point) -> float:
        return self.rivers[point[0]].velocities_mps[self._reach_index(point)]

    def path(self, a: Point, b: Point) -> list[tuple[str, float, float]] | None:
        """Segments (river, km_from, km_to) from a down to b, or None when b is not downstream of a."""
        segments = []
        river_id, km = a
        for _ in range(len(self.rivers) + 1):
            if river_id == b[0] and b[1] >= km:
                segments.append((river_id, km, b[1]))
                return segments
            river = self.rivers[river_id]
            segments.append((river_id, km, river.length_km))
            if river.mouth is None:
                return None
            river_id, km = river.mouth
        raise ValueError(f"the river network has a cycle through {a[0]}")

    def _segment_time_s(self, river_id: str, km_from: float, km_to: float) -> float:
        edges, times = self._km_edges[river_id], self._time_at_edges[river_id]
        return float(np.interp(km_to, edges, times) - np.interp(km_from, edges, times))

    def travel_time_s(self, a: Point, b: Point) -> float | None:
        segments = self.path(a, b)
        return None if segments is None else sum(self._segment_time_s(*s) for s in segments)

    def distance_km(self, a: Point, b: Point) -> float | None:
        segments = self.path(a, b)
        return None if segments is None else sum(km_to - km_from for _, km_from, km_to in segments)

    def with_velocity_factor(self, factor: float) -> RiverNetwork:
        """The same network with every velocity multiplied (today's flow differs from the nominal)."""
        from dataclasses import replace

        return RiverNetwork(
            {
                rid: replace(r, velocities_mps=tuple(v * factor for v in r.velocities_mps))
                for rid, r in self.rivers.items()
            }
        )

    def dispersion_m2s(self, point: Point) -> float:
        return self.rivers[point[0]].dispersion_m2s
