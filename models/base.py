"""The detector contract: every online anomaly detector in Yuflow learns one reading and scores one.

Agents use detectors test-then-train: ``score_one(x)`` first (with the state learned from earlier
readings only), then ``learn_one(x)``. Because every detector follows the same two methods, they can
be swapped freely; classifying a score (alarm or not) is kept apart from scoring.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping


class Detector(ABC):
    """An online anomaly detector over readings given as ``{feature: value}`` mappings.

    ``score_one(x)`` returns a score in [0, 1]: **high means anomalous**, 0 means normal or not
    enough data yet (warm-up). It never changes the state. ``learn_one(x)`` updates the state in
    place and returns ``None``. Which keys ``x`` needs is documented by each detector.

    Examples
    --------
    A toy detector: how far a value is from the largest one seen so far, capped at 1.

    >>> class AboveMax(Detector):
    ...     def __init__(self):
    ...         self.max_seen = None
    ...     def learn_one(self, x):
    ...         v = x["value"]
    ...         self.max_seen = v if self.max_seen is None else max(self.max_seen, v)
    ...     def score_one(self, x):
    ...         if self.max_seen is None:
    ...             return 0.0
    ...         return min(1.0, max(0.0, x["value"] - self.max_seen))
    >>> det, scores = AboveMax(), []
    >>> for v in [1.0, 1.2, 0.9, 1.5, 4.0]:
    ...     scores.append(det.score_one({"value": v}))  # test ...
    ...     det.learn_one({"value": v})                # ... then train
    >>> [round(s, 2) for s in scores]
    [0.0, 0.2, 0.0, 0.3, 1.0]
    """

    @abstractmethod
    def learn_one(self, x: Mapping[str, float]) -> None:
        """Update the state with one reading (in place)."""

    @abstractmethod
    def score_one(self, x: Mapping[str, float]) -> float:
        """Anomaly score of one reading in [0, 1]; high = anomalous. Does not change the state."""
