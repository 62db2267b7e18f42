"""The incident: alerts of one category and area grouped as members, tiered by the highest active
member, with hysteresis on the way down.

An :class:`Incident` is the warning agent's table value; ``to_dict`` / ``from_dict`` keep the stored
JSON exactly as it has always been (the same keys, in the same order), so the change-log does not
change. Tiers are the names of models/warnings.py ``TIERS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.warnings import rank

TRACE_HOLD = "trace:"  # a member that holds a water incident's tier while tracing looks for its source
PLUME = "plume:"  # a member that keeps the incident open while what was seen flows on downstream
SOURCE = "source:"  # a traced source's threat, until its plume has passed the intake
_INTERNAL = ("plume", "source", TRACE_HOLD.rstrip(":"))


@dataclass(frozen=True)
class Member:
    """One member of an incident (``station:parameter``, or a plume, source or hold): its tier and
    when it lapses by itself (None: when an alert clears it)."""

    tier: str
    until_s: float | None = None

    def active(self, now_s: float) -> bool:
        return self.until_s is None or self.until_s > now_s


@dataclass(frozen=True)
class Title:
    """A warning's title in its parts: ``<prefix><TIER> <body>``; the prefix marks a re-send, a
    lowering or an update.

    >>> t = Title("red", "water warning: do at 寨溪大桥", "[降级 lowered] ")
    >>> t.text
    '[降级 lowered] RED water warning: do at 寨溪大桥'
    >>> Title.parse(t.text) == t
    True
    """

    tier: str
    body: str
    prefix: str = ""

    @property
    def text(self) -> str:
        return f"{self.prefix}{self.tier.upper()} {self.body}"

    @classmethod
    def parse(cls, text: str) -> Title:
        """The parts of a stored title: the table keeps only the warning as sent, title and all."""
        rest = text.split("] ", 1)[-1]
        word, _, body = rest.partition(" ")
        return cls(tier=word.lower(), body=body, prefix=text[: len(text) - len(rest)])


@dataclass(frozen=True)
class Traced:
    """What the incident's last source warning named: the source, the tier, the intake arrival, how
    sure the trace was, and the dam named in its checklist."""

    source_id: str
    tier: str
    arrival_s: float | None
    probability: float
    dam: str | None


@dataclass(frozen=True)
class Incident:
    """One incident's state. ``members`` None: an incident stored before grouping (no members at all).
    ``warning`` is the last warning issued, as sent (its JSON), kept for lowering and re-sending;
    ``title`` is that warning's title in parts."""

    incident_id: str
    open: bool = True
    members: Mapping[str, Member] | None = None
    lower_since_s: float | None = None  # since when the active tier has been below the issued one
    tier: str | None = None  # the tier issued (None: no warning yet)
    stages: Mapping[str, float] | None = None  # lifecycle stage -> Unix s
    last_sent_s: float = 0.0
    resends: int = 0
    warning: Mapping[str, Any] | None = None
    title: Title | None = None
    tiers_issued: tuple[str, ...] = ()
    traced: Traced | None = None

    @property
    def opened_s(self) -> float:
        """When the incident opened: the incident id is ``<incident key>:<opened, Unix s>``."""
        return float(self.incident_id.rsplit(":", 1)[1])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Incident:
        """The incident from its table value (``to_dict``'s output, or an older one with fewer keys)."""
        members = d.get("members")
        traced = d.get("traced")
        return cls(
            incident_id=d["incident_id"],
            open=d["open"],
            members=None if members is None else {m: Member(v["tier"], v["until_s"]) for m, v in members.items()},
            lower_since_s=d.get("lower_since_s"),
            tier=d.get("tier"),
            stages=d.get("stages"),
            last_sent_s=d.get("last_sent_s", 0.0),
            resends=d.get("resends", 0),
            warning=d.get("warning"),
            title=Title.parse(d["warning"]["title"]) if "warning" in d else None,
            tiers_issued=tuple(d.get("tiers_issued", ())),
            traced=None
            if traced is None
            else Traced(
                traced,
                d.get("traced_tier", "blue"),
                d.get("traced_arrival_s"),
                d.get("traced_probability", 0.0),
                d.get("traced_dam"),
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The table value: keys that were never set are left out, as they always were."""
        d: dict[str, Any] = {"incident_id": self.incident_id, "open": self.open}
        if self.members is not None:
            d["members"] = {m: {"tier": v.tier, "until_s": v.until_s} for m, v in self.members.items()}
        d["lower_since_s"] = self.lower_since_s
        if self.tier is not None:
            d["tier"] = self.tier
        if self.stages is not None:
            d["stages"] = dict(self.stages)
        if self.warning is not None:
            d |= {
                "last_sent_s": self.last_sent_s,
                "resends": self.resends,
                "warning": dict(self.warning),
                "tiers_issued": list(self.tiers_issued),
            }
        if self.traced is not None:
            d |= {
                "traced": self.traced.source_id,
                "traced_tier": self.traced.tier,
                "traced_arrival_s": self.traced.arrival_s,
                "traced_probability": self.traced.probability,
                "traced_dam": self.traced.dam,
            }
        return d


@dataclass(frozen=True)
class IncidentRules:
    """The incident engine's rules (config/warnings.toml's, in seconds)."""

    deescalate_after_s: float  # a lower tier is issued only after it has held this long
    early_alert_s: float  # an early (statistical) finding lapses after this unless renewed
    trace_hold_s: float  # a traced parameter's tier holds this long while tracing looks
    resend_after_s: float  # an unacknowledged warning is sent again after this
    escalate_after: int  # ... one governance level up from this many sends
    intake_hours_red: float  # a plume due at an intake within this many hours: red
    arrival_update_s: float  # a later look that moves the intake arrival more than this is an update
    min_source_probability: float  # a trace less sure than this names no one


# --- members ---------------------------------------------------------------------------------------
def add_member(
    members: Mapping[str, Member], member: str, tier: str, until_s: float | None, keeps_higher: bool
) -> dict[str, Member]:
    """An incident's members after an alert about ``member``.

    An alert that ``keeps_higher`` (an early statistical finding, a plume, a hold) never lowers a
    tier or shortens a member another rule set; otherwise the latest alert's tier stands.

    >>> m = add_member({}, "a:do", "red", None, False)
    >>> add_member(m, "a:do", "blue", 50.0, True)
    {'a:do': Member(tier='red', until_s=None)}
    >>> add_member(m, "a:do", "yellow", None, False)
    {'a:do': Member(tier='yellow', until_s=None)}
    """
    old = members.get(member)
    if old is not None and keeps_higher:
        tier = max(tier, old.tier, key=rank)
        until_s = None if old.until_s is None or until_s is None else max(until_s, old.until_s)
    return {**members, member: Member(tier, until_s)}


def active_tier(members: Mapping[str, Member], now_s: float) -> str | None:
    """The highest tier among members still active at ``now_s`` (None: all cleared or lapsed).

    >>> members = {"a:do": Member("yellow"), "source:f": Member("red", 100.0)}
    >>> active_tier(members, 99.0), active_tier(members, 100.0)
    ('red', 'yellow')
    """
    tiers = [m.tier for m in members.values() if m.active(now_s)]
    return max(tiers, key=rank) if tiers else None


def member_stations(members: Mapping[str, Any]) -> set[str]:
    """The stations among an incident's members (``station:parameter``), not its plumes, sources or holds.

    >>> sorted(member_stations({"a:do": 1, "a:cod": 1, "plume:a": 1, "source:f": 1, "trace:b:oil": 1, "c:oil": 1}))
    ['a', 'c']
    """
    return {m.split(":", 1)[0] for m in members if m.split(":", 1)[0] not in _INTERNAL}


def affected(members: Mapping[str, Member], now_s: float) -> list[str]:
    """The incident's active members, highest tier first (not the holds while tracing looks).

    >>> affected({"b:do": Member("blue"), "a:oil": Member("red"), "trace:a:oil": Member("red")}, 0.0)
    ['a:oil', 'b:do']
    """
    live = [(m, v.tier) for m, v in members.items() if v.active(now_s) and not m.startswith(TRACE_HOLD)]
    return [m for m, _ in sorted(live, key=lambda mt: (-rank(mt[1]), mt[0]))]


def lapsed(incident: Incident, now_s: float) -> bool:
    """Every member lapsed, and the timer has not closed the incident yet (a replay ahead of the clock)."""
    return bool(incident.members) and active_tier(incident.members, now_s) is None


def warning_id(incident: Incident, tier: str, now_s: float) -> str:
    """``<incident id>:<tier>``, made unique when the incident comes back to a tier it was warned at."""
    first = f"{incident.incident_id}:{tier}"
    return first if tier not in incident.tiers_issued else f"{first}:{int(now_s)}"


# --- tiering ---------------------------------------------------------------------------------------
def tier_change(
    issued: str | None, active: str | None, lower_since_s: float | None, now_s: float, hold_s: float
) -> tuple[str, float | None]:
    """What an incident's warnings do now, with hysteresis on the way down.

    Returns (action, lower_since_s): ``"open"`` (first warning), ``"raise"`` (escalate at once),
    ``"lower"`` (de-escalate: the active tier has been lower than the issued one for ``hold_s``),
    ``"close"`` (nothing active), or ``"hold"`` (no new warning; ``lower_since_s`` says since when
    the active tier has been lower, None when it is not).

    >>> tier_change(None, "blue", None, 0, 1800), tier_change("blue", "red", None, 0, 1800)
    (('open', None), ('raise', None))
    >>> tier_change("red", "yellow", None, 100, 1800), tier_change("red", "yellow", 100, 1900, 1800)
    (('hold', 100), ('lower', None))
    >>> tier_change("red", "red", 100, 1900, 1800), tier_change("red", None, 100, 150, 1800)
    (('hold', None), ('close', None))
    """
    if active is None:
        return "close", None
    if issued is None:
        return "open", None
    if rank(active) > rank(issued):
        return "raise", None
    if rank(active) == rank(issued):
        return "hold", None
    since = now_s if lower_since_s is None else lower_since_s
    return ("lower", None) if now_s - since >= hold_s else ("hold", since)


def pending_change(incident: Incident, now_s: float, rules: IncidentRules) -> tuple[str, str | None, float | None]:
    """(action, active tier, lower_since_s) of ``tier_change`` for the incident now."""
    active = active_tier(incident.members or {}, now_s)
    action, lower_since_s = tier_change(incident.tier, active, incident.lower_since_s, now_s, rules.deescalate_after_s)
    return action, active, lower_since_s


def higher(a: str, b: str) -> str:
    """The higher of two tiers (the first when equal).

    >>> higher("yellow", "red"), higher("red", "blue")
    ('red', 'red')
    """
    return max(a, b, key=rank)
