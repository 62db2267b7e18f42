"""What an alert or a tracing result does to an incident: grouping, tiering, hysteresis, and what
to issue. The warnings themselves are composed by pipeline/incidents.py from these decisions.

An incident groups the alerts of one category and area (all the stations and parameters of a river,
a district, a zone) as members. Its tier is its highest active member's: a higher tier issues a
warning at once (same incident id); a lower one is issued only after it has held for
``deescalate_after_s`` (hysteresis); when every member has cleared or lapsed the incident closes by
itself. Nothing is issued for an alert that changes no tier.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from models.incident_lifecycle import close
from models.incidents import (
    PLUME,
    SOURCE,
    TRACE_HOLD,
    Incident,
    IncidentRules,
    Title,
    Traced,
    add_member,
    higher,
    lapsed,
    pending_change,
)
from models.warnings import rank


@dataclass(frozen=True)
class Finding:
    """An alert in plain values: what grouping needs to know of it."""

    incident_key: str
    station: str
    parameter: str
    tier: str
    at_s: float
    resolved: bool = False
    early: bool = False  # an early (statistical) finding nobody clears: it lapses unless renewed
    plume_until_s: float | None = None  # water at a river station: when what was seen has passed the last station
    traced: bool = False  # a parameter tracing looks for: the tier holds until tracing has had its looks

    @property
    def member(self) -> str:
        return f"{self.station}:{self.parameter}"


def join(incident: Incident | None, finding: Finding, rules: IncidentRules) -> Incident | None:
    """The incident with the finding among its members (a new incident when none is open, or the open
    one has lapsed); None when the finding changes nothing (it clears, and nothing is open)."""
    now_s = finding.at_s
    if incident is None or not incident.open or lapsed(incident, now_s):
        if finding.resolved:
            return None  # nothing open to clear
        incident = Incident(incident_id=f"{finding.incident_key}:{int(now_s)}", open=True, members={})
    members = incident.members or {}
    if finding.resolved:
        members = {k: v for k, v in members.items() if k != finding.member}
    else:
        until_s = now_s + rules.early_alert_s if finding.early else None
        members = add_member(members, finding.member, finding.tier, until_s, keeps_higher=finding.early)
        if finding.plume_until_s is not None:  # what was seen here flows on downstream
            plume = f"{PLUME}{finding.station}"
            members = add_member(members, plume, "blue", finding.plume_until_s, keeps_higher=True)
            if finding.traced:  # no false comfort: the tier holds until tracing has had its looks
                until_s = now_s + rules.trace_hold_s
                members = add_member(members, f"{TRACE_HOLD}{finding.member}", finding.tier, until_s, keeps_higher=True)
    return replace(incident, members=members)


def settle(incident: Incident, now_s: float, rules: IncidentRules, raising: bool) -> tuple[Incident, str, str | None]:
    """Match the incident's warning to its members: (the incident, what to issue, the active tier).

    What to issue: ``"open"`` or ``"raise"`` (an alert's warning at the active tier: only an alert
    ``raising`` raises a tier), ``"lower"`` (the lowered warning, after the hold), or ``""`` (nothing:
    held, or closed when nothing is active)."""
    action, active, lower_since_s = pending_change(incident, now_s, rules)
    incident = replace(incident, lower_since_s=lower_since_s)
    if action == "hold" or (not raising and action in ("open", "raise")):
        return incident, "", active
    if action == "close":
        return close(incident, now_s), "", active
    return incident, action, active


def lowered_title(incident: Incident, tier: str) -> Title:
    """The lowered warning's title: the last warning's, at the new tier, marked as lowered."""
    return Title(tier=tier, body=incident.title.body, prefix="[降级 lowered] ")


def alert_title(
    tier: str, category: str, parameter: str, station_name: str, forecast: bool, other_stations: int
) -> Title:
    """An alert's warning title, counting the incident's other stations.

    >>> alert_title("red", "water", "do", "寨溪大桥", False, 2).text
    'RED water warning: do at 寨溪大桥 and 2 more stations'
    """
    others = f" and {other_stations} more station" + "s" * (other_stations > 1) if other_stations else ""
    return Title(tier, f"{category} warning{' (forecast)' if forecast else ''}: {parameter} at {station_name}{others}")


def source_title(tier: str, station_name: str, source_name: str, probability: float, update: str) -> Title:
    """A source warning's title, marked when it updates an earlier one (``trace_news``).

    >>> source_title("red", "明达", "食品厂", 0.93, "").text
    'RED water warning at 明达: suspected source 食品厂 (93%)'
    """
    return Title(tier, f"water warning at {station_name}: suspected source {source_name} ({probability:.0%})", update)


# --- a tracing result --------------------------------------------------------------------------------
ARRIVAL_REVISED = "[更新 arrival revised] "
DAM_REVISED = "[更新 dam revised] "
SOURCE_REVISED = "[更新 source revised] "


@dataclass(frozen=True)
class Look:
    """A tracing result's top suspect and the intake it threatens first, in plain values."""

    station: str
    at_s: float  # the result's time
    looked_s: float  # the end of the readings traced
    source_id: str
    probability: float
    intake_hours_left: float | None = None  # None: no intake ahead of the plume
    arrival_s: float | None = None
    intake_passed_s: float | None = None  # when the plume will have passed the intake
    seen: bool = False  # cameras saw an oil sheen


def about_this_incident(incident: Incident, look: Look) -> bool:
    """Whether a trace belongs to this incident: a closed one still gets its source warning (the plume
    has moved on), but not a newer incident (one opened by a later alert that came first, in a
    backlog, holds what the traced station saw: it is this one's)."""
    return look.at_s >= incident.opened_s or f"{PLUME}{look.station}" in (incident.members or {})


def traced_tier(incident: Incident, look: Look, rules: IncidentRules) -> str:
    """The incident's tier, raised to red when the plume is due at an intake within
    ``intake_hours_red`` hours, and to at least orange when cameras saw the oil sheen."""
    if incident.tier is None:
        raise ValueError(f"incident {incident.incident_id} has no tier to trace at")
    tier = incident.tier
    if look.intake_hours_left is not None and look.intake_hours_left <= rules.intake_hours_red:
        tier = "red"
    if look.seen and rank(tier) < rank("orange"):
        tier = "orange"
    return tier


def trace_news(incident: Incident, look: Look, tier: str, dam: str | None, rules: IncidentRules) -> str | None:
    """What a trace says that has not been warned on: the title's prefix (``""`` for the first source
    warning), or None for nothing new. A later look with more of the plume that moves the intake
    arrival materially, or whose plume has passed the dam named before, is an update, not a repeat."""
    before = incident.traced
    same = before is not None and before.source_id == look.source_id and rank(before.tier) >= rank(tier)
    moved = look.arrival_s is not None and (
        before is None
        or before.arrival_s is None  # now names the intake at risk
        or abs(look.arrival_s - before.arrival_s) > rules.arrival_update_s
    )
    revised = same and (moved or (look.arrival_s is not None and dam != before.dam))
    if same and not revised:
        return None
    if before is not None and before.source_id != look.source_id and look.probability < before.probability:
        return None  # a later trace (often from a station further down) less sure than the one warned on
    if revised:
        return ARRIVAL_REVISED if moved else DAM_REVISED
    return SOURCE_REVISED if before is not None and before.source_id != look.source_id else ""


def traced_members(incident: Incident, look: Look, tier: str, plume_until_s: float) -> Incident:
    """The trace has spoken: what it says holds the tier now (its source member until the plume is
    past the intake), not the holds while it looked; its plume keeps the incident open down the river."""
    members = {m: v for m, v in (incident.members or {}).items() if not m.startswith(TRACE_HOLD)}
    if look.intake_passed_s is not None:  # the threat stands, at this tier, until the plume has passed the intake
        members = add_member(members, f"{SOURCE}{look.source_id}", tier, look.intake_passed_s, keeps_higher=True)
    members = add_member(members, f"{PLUME}{look.source_id}", "blue", plume_until_s, keeps_higher=True)
    return replace(incident, members=members, lower_since_s=None)


def traced_warning_id(incident: Incident, look: Look, tier: str, update: str) -> str:
    """Once per incident, source and tier; an update (a revised arrival or dam) gets its own."""
    first = f"{incident.incident_id}:{SOURCE}{look.source_id}:{tier}"
    return first + (f":updated{int(look.looked_s)}" if update in (ARRIVAL_REVISED, DAM_REVISED) else "")


def warned_on_trace(before: Incident, warned: Incident, look: Look, tier: str, dam: str | None) -> Incident:
    """The incident after its source warning (``warned``: ``sent``'s result): the tier is at least the
    trace's, and what the trace named is kept to tell a repeat from an update."""
    return replace(
        warned,
        tier=higher(tier, before.tier),
        traced=Traced(look.source_id, tier, look.arrival_s, look.probability, dam),
    )
