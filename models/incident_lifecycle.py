"""An incident's life: closed-loop stages (感知 sensed → 预警 warned → 送达 delivered → 签收 acknowledged
→ 处置 disposed → 办结 closed → 复盘 reviewed), the warnings sent and re-sent, operators' actions,
and what the timer finds due."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from models.incidents import Incident, IncidentRules, Title, pending_change

STAGES = ("sensed", "warned", "delivered", "acknowledged", "disposed", "closed", "reviewed")
OPERATOR_STAGES = ("acknowledged", "disposed", "closed", "reviewed")
_NEEDS = {"acknowledged": "warned", "disposed": "warned", "closed": "warned", "reviewed": "closed"}


def advance(stages: Mapping[str, float], stage: str, at_s: float) -> dict[str, float]:
    """An incident's lifecycle times (stage -> Unix s) after ``stage`` happened at ``at_s``.

    Closed-loop order: acknowledging, disposing or closing needs a warning; a review needs the
    closure. A stage already recorded keeps its first time (operators click twice).

    >>> s = advance({"sensed": 0.0, "warned": 1.0}, "acknowledged", 60.0)
    >>> advance(advance(s, "acknowledged", 90.0), "closed", 600.0)
    {'sensed': 0.0, 'warned': 1.0, 'acknowledged': 60.0, 'closed': 600.0}
    >>> advance(s, "reviewed", 700.0)
    Traceback (most recent call last):
    ...
    ValueError: cannot record reviewed before closed
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    if stage in stages:
        return dict(stages)
    needed = _NEEDS.get(stage)
    if needed and needed not in stages:
        raise ValueError(f"cannot record {stage} before {needed}")
    return {**stages, stage: float(at_s)}


def overdue(
    stages: Mapping[str, float],
    last_sent_s: float,
    resends: int,
    now_s: float,
    resend_after_s: float,
    escalate_after: int,
) -> str | None:
    """What an unacknowledged warning needs now: ``"resend"``, ``"escalate"`` (resend one level up) or None.

    >>> overdue({"warned": 0.0}, 0.0, 0, 599.0, 600, 2), overdue({"warned": 0.0}, 0.0, 0, 600.0, 600, 2)
    (None, 'resend')
    >>> acknowledged = {"warned": 0.0, "acknowledged": 5.0}
    >>> overdue({"warned": 0.0}, 1200.0, 2, 1800.0, 600, 2), overdue(acknowledged, 0.0, 0, 9e9, 600, 2)
    ('escalate', None)
    """
    if "warned" not in stages or "acknowledged" in stages or "closed" in stages:
        return None
    if now_s - last_sent_s < resend_after_s:
        return None
    return "escalate" if resends + 1 >= escalate_after else "resend"


def due(incident: Incident | None, now_s: float, rules: IncidentRules) -> str | None:
    """What an open incident needs now, or None: ``"settle"`` when its tier is due to be lowered or
    it is due to close (its members cleared or lapsed), else what its unacknowledged warning needs
    (``overdue``: resend or escalate)."""
    if incident is None or not incident.open:
        return None
    if incident.members is not None and pending_change(incident, now_s, rules)[0] in ("lower", "close"):
        return "settle"
    return overdue(
        incident.stages or {}, incident.last_sent_s, incident.resends, now_s, rules.resend_after_s, rules.escalate_after
    )


def sent(
    incident: Incident, warning: Mapping[str, Any], title: Title, issued_s: float, sensed_s: float | None = None
) -> Incident:
    """The incident after issuing ``warning`` (its JSON; ``title`` its title in parts, at the warning's
    tier) at ``issued_s``: lifecycle times, the warning kept for re-sending, the tier among those issued."""
    stages = dict(incident.stages or {})
    if sensed_s is not None:
        stages["sensed"] = min(stages.get("sensed", sensed_s), sensed_s)
    stages.setdefault("warned", issued_s)
    return replace(
        incident,
        stages=stages,
        last_sent_s=issued_s,
        resends=0,
        warning=warning,
        title=title,
        tiers_issued=tuple(dict.fromkeys([*incident.tiers_issued, title.tier])),
    )


def resend_title(incident: Incident) -> Title:
    """The title of the next re-send of the incident's warning: its own, marked as the n-th re-send."""
    return replace(incident.title, prefix=f"[未签收 re-sent {incident.resends + 1}] ")


def resent(incident: Incident, warning: Mapping[str, Any], title: Title, now_s: float) -> Incident:
    """The incident after sending its warning again (``warning``, its JSON) at ``now_s``."""
    return replace(incident, warning=warning, title=title, last_sent_s=now_s, resends=incident.resends + 1)


def close(incident: Incident, now_s: float) -> Incident:
    """The incident closed by itself (every member cleared or lapsed); closed in its life once warned."""
    stages = dict(incident.stages or {})
    return replace(incident, open=False, stages=advance(stages, "closed", now_s) if "warned" in stages else stages)


def operator_action(incident: Incident, stage: str, at_s: float) -> Incident:
    """The incident after an operator's action (ValueError when out of order: ``advance``)."""
    stages = advance(incident.stages or {}, stage, at_s)
    return replace(incident, stages=stages, open=incident.open and stage != "closed")


def new_stages(before: Incident | None, after: Incident) -> list[tuple[str, float]]:
    """The stages (stage, Unix s) ``after`` has reached that ``before`` (the same incident, or not) had not."""
    old = (before.stages or {}) if before is not None and before.incident_id == after.incident_id else {}
    return [(stage, at_s) for stage, at_s in (after.stages or {}).items() if stage not in old]


def was_warned(before: Incident | None, after: Incident) -> bool:
    """Whether ``before`` is the same incident and had been warned already."""
    return before is not None and before.incident_id == after.incident_id and "warned" in (before.stages or {})
