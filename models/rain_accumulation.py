"""Rain accumulations: one gauge's interval amounts on a fixed grid of reporting slots.

``GaugeAccumulator`` keeps them so that late readings land in their own slot, a duplicate replaces
its slot instead of adding twice, and a gap is reported as missing coverage rather than as dry
weather. ``rolling_sum_mm`` is the same sums over a whole (T, ...) array at once. The rainstorm
tiers read these sums (``models/rain_tiers.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class GaugeAccumulator:
    """Rolling rain accumulations of one gauge, from the amounts (mm) it reports per interval.

    A reading ``(end_s, mm)`` is the rain fallen in the reporting interval that ends at ``end_s``.
    It is stored in the slot ``round(end_s / step_s)`` of a ring of ``horizon_h`` hours, with the
    slot number beside it: a slot whose number does not match is empty, so nothing has to be
    cleared when the clock moves on. Adding is O(1); a window sum reads at most one ring.

    - a late reading (older than the newest, but within the horizon) lands in its own slot;
    - a duplicate (same interval end again) replaces the slot's amount, never adds twice;
    - a missing interval stays empty: sums add what is there and ``coverage`` says how much of the
      window was reported (1.0 = complete), so callers know a total is only a lower bound;
    - a reading older than the horizon cannot be placed: ``add`` returns ``"too_late"``.

    When it fails: the slot grid is the reporting interval, so a gauge that reports more often
    than ``step_s`` overwrites itself (readings covering several slots are spread evenly); a
    reading with a wrong clock far in the future moves the horizon and makes the rest too late.

    Parameters
    ----------
    step_s
        The gauges' reporting interval, s (the slot width).
    horizon_h
        How far back readings are kept, h (the longest window).
    windows_h
        Windows reported by ``totals_mm`` and ``coverage``, h.

    Examples
    --------
    Five-minute amounts; one arrives late, one twice, one never.

    >>> acc = GaugeAccumulator(step_s=300, windows_h=(0.25, 0.5))
    >>> [acc.add(end_s, mm) for end_s, mm in [(300, 1.0), (900, 2.0), (600, 0.5), (900, 2.0), (1800, 4.0)]]
    ['added', 'added', 'added', 'replaced', 'added']
    >>> acc.totals_mm(1800), acc.coverage(1800)
    ({0.25: 4.0, 0.5: 7.5}, {0.25: 0.333, 0.5: 0.667})
    >>> acc.add(1800 - 24 * 3600, 9.9)
    'too_late'
    """

    def __init__(self, step_s: float = 300.0, horizon_h: float = 24.0, windows_h: Sequence[float] = (1, 3, 6, 12, 24)):
        if not step_s > 0:
            raise ValueError(f"step_s must be > 0, got {step_s!r}")
        if not horizon_h * 3600 >= step_s:
            raise ValueError(f"horizon_h must cover at least one step, got {horizon_h!r}")
        if any(not 0 < w <= horizon_h for w in windows_h):
            raise ValueError(f"windows_h must lie in (0, horizon_h={horizon_h}], got {list(windows_h)!r}")
        self.step_s = float(step_s)
        self.horizon_h = float(horizon_h)
        self.windows_h = tuple(windows_h)
        self.n_slots = int(round(self.horizon_h * 3600 / self.step_s))
        self._slot = np.full(self.n_slots, -1, dtype=np.int64)  # which slot each ring cell holds (-1: none)
        self._mm = np.zeros(self.n_slots)
        self.newest_slot: int | None = None

    def _slots(self, hours: float) -> int:
        return max(1, int(round(hours * 3600 / self.step_s)))

    def add(self, end_s: float, mm: float, interval_s: float | None = None) -> str:
        """Store one reading; returns ``"added"``, ``"replaced"`` (a duplicate) or ``"too_late"``."""
        n = 1 if interval_s is None else int(round(interval_s / self.step_s))
        if n < 1 or abs(n * self.step_s - (interval_s or self.step_s)) > 0.01 * self.step_s:
            raise ValueError(f"interval_s must be a multiple of step_s={self.step_s:g}, got {interval_s!r}")
        last = int(round(end_s / self.step_s))
        if self.newest_slot is not None and last <= self.newest_slot - self.n_slots:
            return "too_late"
        self.newest_slot = last if self.newest_slot is None else max(self.newest_slot, last)
        status = "added"
        for k in range(max(last - n, self.newest_slot - self.n_slots) + 1, last + 1):  # a long interval: spread evenly
            i = k % self.n_slots
            status = "replaced" if self._slot[i] == k else status
            self._slot[i], self._mm[i] = k, mm / n
        return status

    def recent_mm(self, now_s: float, hours: float) -> np.ndarray:
        """The amounts of the slots in ``(now_s - hours, now_s]``, oldest first; NaN where missing."""
        m = min(self._slots(hours), self.n_slots)
        k = np.arange(int(round(now_s / self.step_s)) - m + 1, int(round(now_s / self.step_s)) + 1)
        i = k % self.n_slots
        return np.where(self._slot[i] == k, self._mm[i], np.nan)

    def totals_mm(self, now_s: float) -> dict[float, float]:
        """Accumulation per window (h -> mm) up to ``now_s``, rounded to 0.001 mm."""
        recent = np.nan_to_num(self.recent_mm(now_s, self.horizon_h))
        return {w: round(float(recent[-self._slots(w) :].sum()), 3) for w in self.windows_h}

    def coverage(self, now_s: float) -> dict[float, float]:
        """Fraction of each window's intervals reported (h -> 0..1, 3 decimals)."""
        seen = ~np.isnan(self.recent_mm(now_s, self.horizon_h))
        return {w: round(float(seen[-self._slots(w) :].mean()), 3) for w in self.windows_h}

    def state(self) -> dict:
        """Plain JSON-able data; ``from_state`` restores it."""
        recent = self.recent_mm(self.newest_slot * self.step_s, self.horizon_h) if self.newest_slot is not None else []
        return {
            "step_s": self.step_s,
            "horizon_h": self.horizon_h,
            "windows_h": list(self.windows_h),
            "newest_slot": self.newest_slot,
            "mm": [None if np.isnan(v) else float(v) for v in recent],
        }

    @classmethod
    def from_state(cls, state: Mapping) -> GaugeAccumulator:
        """The accumulator ``state()`` described.

        >>> a = GaugeAccumulator()
        >>> _ = [a.add(t, 0.1 * i) for i, t in enumerate(range(300, 7200, 300))]
        >>> b = GaugeAccumulator.from_state(a.state())
        >>> b.totals_mm(7200) == a.totals_mm(7200), b.coverage(7200) == a.coverage(7200)
        (True, True)
        """
        acc = cls(state["step_s"], state["horizon_h"], state["windows_h"])
        if state["newest_slot"] is not None:
            newest = int(state["newest_slot"])
            for k, v in zip(range(newest - len(state["mm"]) + 1, newest + 1), state["mm"]):
                if v is not None:
                    acc._slot[k % acc.n_slots], acc._mm[k % acc.n_slots] = k, v
            acc.newest_slot = newest
        return acc


def rolling_sum_mm(mm: np.ndarray, window_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch form: sums and covered fractions of ``window_slots`` intervals ending at each row.

    ``mm`` is (T, ...) on the slot grid with NaN for missing intervals; row ``t`` is what
    ``GaugeAccumulator.totals_mm`` / ``coverage`` give at that slot's end.

    >>> sums, cover = rolling_sum_mm(np.array([1.0, np.nan, 2.0, 3.0]), 2)
    >>> sums.tolist(), cover.tolist()
    ([1.0, 1.0, 2.0, 5.0], [0.5, 0.5, 0.5, 1.0])
    """
    seen = ~np.isnan(mm)
    c = np.cumsum(np.where(seen, mm, 0.0), axis=0)
    n = np.cumsum(seen, axis=0)
    c[window_slots:] = c[window_slots:] - c[:-window_slots].copy()
    n[window_slots:] = n[window_slots:] - n[:-window_slots].copy()
    return c, n / window_slots
