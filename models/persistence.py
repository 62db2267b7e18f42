"""Persistence rule: raise after N consecutive exceedances, clear after N consecutive normal readings,
and report when an active exceedance worsens by a step of severity.

One spike is not a warning. The state is a small immutable value so that agents can keep it in a
Faust table (it survives restarts through the table's changelog).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class Change(Enum):
    raised = "raised"
    worsened = "worsened"
    cleared = "cleared"


@dataclass(frozen=True)
class PersistenceState:
    bad_run: int = 0
    good_run: int = 0
    active: bool = False
    reported_severity: float = 0.0  # the severity last reported while active


def step(
    state: PersistenceState, severity: float | None, persistence: int, worsen_step: float = 0.05
) -> tuple[PersistenceState, Change | None]:
    """Advance the rule by one reading (``severity`` None = within the limit); returns state and change.

    >>> s, changes = PersistenceState(), []
    >>> for sev in [0.1, None, 0.1, 0.1, 0.1, 0.12, 0.3, None, None, None]:
    ...     s, c = step(s, sev, persistence=3)
    ...     changes.append(c.value if c else "-")
    >>> changes
    ['-', '-', '-', '-', 'raised', '-', 'worsened', '-', '-', 'cleared']
    """
    exceeded = severity is not None
    bad_run, good_run = (state.bad_run + 1, 0) if exceeded else (0, state.good_run + 1)
    if not state.active and bad_run >= persistence:
        return PersistenceState(bad_run, good_run, True, severity or 0.0), Change.raised
    if state.active and good_run >= persistence:
        return PersistenceState(bad_run, good_run, False, 0.0), Change.cleared
    if state.active and exceeded and severity >= state.reported_severity + worsen_step:
        return PersistenceState(bad_run, good_run, True, severity), Change.worsened
    return PersistenceState(bad_run, good_run, state.active, state.reported_severity), None


RAISED, WORSENED, CLEARED = 1, 2, 3  # change codes of the array form (0: no change)
CODES = {RAISED: Change.raised, WORSENED: Change.worsened, CLEARED: Change.cleared}


class PersistenceArrays:
    """``step`` for many (sensor, parameter) cells at once: rows are sensors, columns parameters.
    A row's cells move to and from ``PersistenceState`` (``states`` / ``load``), so an agent keeps
    them in a table; the results are ``step``'s (the tests compare them).

    >>> rule = PersistenceArrays(columns=1, persistence=3, capacity=1)
    >>> changes = [int(rule.step(np.array([0]), np.array([[s]]), np.ones((1, 1), bool))[0, 0])
    ...            for s in [0.1, np.nan, 0.1, 0.1, 0.1, 0.12, 0.3, np.nan, np.nan, np.nan]]
    >>> changes
    [0, 0, 0, 0, 1, 0, 2, 0, 0, 3]
    """

    def __init__(self, columns: int, persistence: int, worsen_step: float = 0.05, capacity: int = 64):
        self.columns, self.persistence, self.worsen_step = columns, persistence, worsen_step
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        shape = (capacity, self.columns)
        self.bad, self.good = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        self.active, self.reported, self.seen = np.zeros(shape, bool), np.zeros(shape), np.zeros(shape, bool)

    def ensure(self, rows: int) -> None:
        """Room for ``rows`` rows (new rows start as ``PersistenceState()``)."""
        if rows > len(self.bad):
            old = {name: getattr(self, name) for name in ("bad", "good", "active", "reported", "seen")}
            self._allocate(max(rows, 2 * len(self.bad)))
            for name, array in old.items():
                getattr(self, name)[: len(array)] = array

    def clear(self, row: int) -> None:
        for name in ("bad", "good", "active", "reported", "seen"):
            getattr(self, name)[row] = 0

    def load(self, row: int, states: dict[int, PersistenceState]) -> None:
        self.ensure(row + 1)
        self.clear(row)
        for j, s in states.items():
            self.bad[row, j], self.good[row, j], self.active[row, j] = s.bad_run, s.good_run, s.active
            self.reported[row, j], self.seen[row, j] = s.reported_severity, True

    def states(self, row: int) -> dict[int, PersistenceState]:
        return {
            int(j): PersistenceState(
                int(self.bad[row, j]), int(self.good[row, j]), bool(self.active[row, j]), float(self.reported[row, j])
            )
            for j in np.flatnonzero(self.seen[row])
        }

    def step(self, rows: np.ndarray, severity: np.ndarray, checked: np.ndarray) -> np.ndarray:
        """One reading per row (rows unique): ``severity`` (n, columns) NaN within the limit,
        ``checked`` where a value with a limit was read. Returns the change codes (n, columns)."""
        i = rows
        exceeded = checked & ~np.isnan(severity)
        bad = np.where(exceeded, self.bad[i] + 1, 0)
        good = np.where(exceeded, 0, self.good[i] + 1)
        active, reported = self.active[i], self.reported[i]
        raised = checked & ~active & (bad >= self.persistence)
        cleared = checked & active & (good >= self.persistence)
        worsened = checked & active & exceeded & ~cleared & (severity >= reported + self.worsen_step)
        self.bad[i] = np.where(checked, bad, self.bad[i])
        self.good[i] = np.where(checked, good, self.good[i])
        self.active[i] = (active | raised) & ~cleared
        self.reported[i] = np.where(raised | worsened, severity, np.where(cleared, 0.0, reported))
        self.seen[i] |= checked
        return (raised * RAISED + worsened * WORSENED + cleared * CLEARED).astype(np.int8)
