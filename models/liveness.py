"""Deadman watch: a sensor that has been reporting live and then falls silent for longer than its
kind's limit is reported offline once; its next live reading brings it back.

"Live" is judged on the wall clock: a reading whose own time is already older than the limit when it
arrives (a replay of old data, a backlog) says nothing about whether the sensor reports now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class LivenessWatch:
    """>>> w = LivenessWatch({"water": 600.0})
    >>> w.learn_one("wq-a", "water", reading_ts_s=1000.0, now_s=1001.0)
    False
    >>> w.due(now_s=1500.0), w.due(now_s=1700.0), w.due(now_s=1800.0)  # reported once
    ([], [('wq-a', 699.0)], [])
    >>> w.learn_one("wq-a", "water", reading_ts_s=1801.0, now_s=1802.0)  # back
    True
    >>> w.learn_one("wq-b", "water", reading_ts_s=0.0, now_s=1802.0), w.due(now_s=9999.0)  # a replay: not watched
    (False, [('wq-a', 8197.0)])
    """

    silence_s: Mapping[str, float]  # per kind: how long a sensor may be quiet
    last_seen_s: dict[str, float] = field(default_factory=dict)  # wall-clock time of each sensor's last live reading
    kind_of: dict[str, str] = field(default_factory=dict)
    offline: set[str] = field(default_factory=set)

    def learn_one(self, sensor_id: str, kind: str, reading_ts_s: float, now_s: float) -> bool:
        """Note a reading; True when it brings an offline sensor back."""
        limit = self.silence_s.get(kind)
        if limit is None or now_s - reading_ts_s > limit:
            return False
        self.last_seen_s[sensor_id] = now_s
        self.kind_of[sensor_id] = kind
        if sensor_id in self.offline:
            self.offline.discard(sensor_id)
            return True
        return False

    def due(self, now_s: float) -> list[tuple[str, float]]:
        """Sensors silent beyond their limit and not reported yet, with how long (s); now reported."""
        found = [
            (s, now_s - seen)
            for s, seen in self.last_seen_s.items()
            if s not in self.offline and now_s - seen > self.silence_s[self.kind_of[s]]
        ]
        self.offline.update(s for s, _ in found)
        return found

    def forget(self) -> None:
        """Drop everything (the worker no longer owns these sensors' partitions)."""
        self.last_seen_s.clear()
        self.kind_of.clear()
        self.offline.clear()
