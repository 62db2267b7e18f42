"""Persistence rule: raise after N consecutive exceedances, clear after N consecutive normal readings,
and report when an active exceedance worsens by a step of severity.

One spike is not a warning. The state is a small immutable value so that agents can keep it in a
Faust table (it survives restarts through the table's changelog).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
