"""Warning rules: tier from severity, routing to governance levels and departments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

TIERS = ("blue", "yellow", "orange", "red")


def tier_from_severity(severity: float, thresholds: Mapping[str, float]) -> str:
    """The highest tier whose threshold the severity reaches.

    >>> th = {"blue": 0.0, "yellow": 0.25, "orange": 0.5, "red": 0.75}
    >>> [tier_from_severity(s, th) for s in (0.0, 0.3, 0.5, 0.99)]
    ['blue', 'yellow', 'orange', 'red']
    """
    reached = [t for t in TIERS if severity >= thresholds[t]]
    return reached[-1] if reached else TIERS[0]


def route(category: str, tier: str, routing: Mapping[str, Mapping]) -> tuple[list[str], list[str]]:
    """Governance levels and departments that receive a warning of this category and tier.

    >>> routing = {"levels": {"red": ["township", "district", "city"]},
    ...            "categories": {"water": {"red": ["water_bureau"]}}}
    >>> route("water", "red", routing)
    (['township', 'district', 'city'], ['water_bureau'])
    """
    levels: Sequence[str] = routing["levels"][tier]
    departments: Sequence[str] = routing["categories"][category][tier]
    return list(levels), list(departments)


# --- grouping ------------------------------------------------------------------------------------
def rank(tier: str) -> int:
    return TIERS.index(tier)


def add_member(
    members: Mapping[str, Mapping], member: str, tier: str, until_s: float | None, keeps_higher: bool
) -> dict:
    """An incident's members (``station:parameter`` -> {tier, until_s}) after an alert about ``member``.

    ``until_s`` is when the member lapses by itself (None: when an alert clears it). An alert that
    ``keeps_higher`` (an early statistical finding) never lowers a tier or shortens a member
    another rule set; otherwise the latest alert's tier stands.

    >>> m = add_member({}, "a:do", "red", None, False)
    >>> add_member(m, "a:do", "blue", 50.0, True)
    {'a:do': {'tier': 'red', 'until_s': None}}
    >>> add_member(m, "a:do", "yellow", None, False)
    {'a:do': {'tier': 'yellow', 'until_s': None}}
    """
    old = members.get(member)
    if old is not None and keeps_higher:
        tier = max(tier, old["tier"], key=rank)
        until_s = None if old["until_s"] is None or until_s is None else max(until_s, old["until_s"])
    return {**members, member: {"tier": tier, "until_s": until_s}}


def active_tier(members: Mapping[str, Mapping], now_s: float) -> str | None:
    """The highest tier among members still active at ``now_s`` (None: all cleared or lapsed).

    >>> active_tier({"a:do": {"tier": "yellow", "until_s": None}, "source:f": {"tier": "red", "until_s": 100.0}}, 99.0)
    'red'
    >>> active_tier({"a:do": {"tier": "yellow", "until_s": None}, "source:f": {"tier": "red", "until_s": 100.0}}, 100.0)
    'yellow'
    """
    tiers = [m["tier"] for m in members.values() if m["until_s"] is None or m["until_s"] > now_s]
    return max(tiers, key=rank) if tiers else None


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


# --- lifecycle ------------------------------------------------------------------------------------
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


def levels_up(levels: Sequence[str], order: Sequence[str] = ("township", "district", "city")) -> list[str]:
    """The governance levels with the next one above the highest present added.

    >>> levels_up(["township"]), levels_up(["township", "district", "city"])
    (['township', 'district'], ['township', 'district', 'city'])
    """
    top = max((order.index(lvl) for lvl in levels if lvl in order), default=-1)
    return list(levels) + ([order[top + 1]] if top + 1 < len(order) else [])


# --- recipients ------------------------------------------------------------------------------------
def recipients(
    departments: Sequence[str],
    levels: Sequence[str],
    district: str,
    township: str,
    names: Mapping[str, str],
    roster: Mapping,
) -> list[str]:
    """Who receives a warning, department by department: the named persons of the roster for its area
    (township first, then district), then the department's duty post there, and the city's post when
    the warning reaches the city level. ``names`` maps area ids to names; ``roster`` is config/roster.toml.

    >>> roster = {
    ...     "posts": {"water_bureau": "{district}水利局 值班室"},
    ...     "city_posts": {"water_bureau": "市水利局 总值班室"},
    ...     "persons": [
    ...         {"name": "李明", "role": "值班长", "department": "water_bureau", "district": "liangping", "phone": "1"}
    ...     ],
    ... }
    >>> names = {"liangping": "梁平区"}
    >>> recipients(["water_bureau"], ["township", "district", "city"], "liangping", "fulu", names, roster)
    ['李明 (值班长, 1)', '梁平区水利局 值班室', '市水利局 总值班室']
    """
    out: list[str] = []
    for department in departments:
        for p in roster.get("persons", []):
            if (
                p["department"] == department
                and p["district"] == district
                and p.get("township", township) in (township, "")
            ):
                out.append(f"{p['name']} ({p['role']}, {p['phone']})")
        if post := roster.get("posts", {}).get(department):
            out.append(
                post.format(
                    district=names.get(district, district),
                    township=names.get(township, township) if township else names.get(district, district),
                )
            )
        if "city" in levels and (post := roster.get("city_posts", {}).get(department)):
            out.append(post)
    return list(dict.fromkeys(out))
