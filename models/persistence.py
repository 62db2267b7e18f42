"""Persistence rule: raise after N consecutive exceedances, clear after N consecutive normal readings.

One spike is not a warning. The state is a small immutable value so that agents can keep it in a
Faust table (it survives restarts through the table's changelog).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Change(Enum):
    raised = "raised"
    cleared = "cleared"


@dataclass(frozen=True)
class PersistenceState:
    bad_run: int = 0
    good_run: int = 0
    active: bool = False


def step(state: PersistenceState, exceeded: bool, persistence: int) -> tuple[PersistenceState, Change | None]:
    """Advance the rule by one reading; returns the new state and a change, if any.

    >>> s, changes = PersistenceState(), []
    >>> for bad in [True, False, True, True, True, True, False, False, False]:
    ...     s, c = step(s, bad, persistence=3)
    ...     changes.append(c.value if c else "-")
    >>> changes
    ['-', '-', '-', '-', 'raised', '-', '-', '-', 'cleared']
    """
    if exceeded:
        bad_run, good_run = state.bad_run + 1, 0
    else:
        bad_run, good_run = 0, state.good_run + 1
    if not state.active and bad_run >= persistence:
        return PersistenceState(bad_run, good_run, True), Change.raised
    if state.active and good_run >= persistence:
        return PersistenceState(bad_run, good_run, False), Change.cleared
    return PersistenceState(bad_run, good_run, state.active), None
