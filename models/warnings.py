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


def route(
    category: str, tier: str, routing: Mapping[str, Mapping]
) -> tuple[list[str], list[str]]:
    """Governance levels and departments that receive a warning of this category and tier.

    >>> routing = {"levels": {"red": ["township", "district", "city"]},
    ...            "categories": {"water": {"red": ["water_bureau"]}}}
    >>> route("water", "red", routing)
    (['township', 'district', 'city'], ['water_bureau'])
    """
    levels: Sequence[str] = routing["levels"][tier]
    departments: Sequence[str] = routing["categories"][category][tier]
    return list(levels), list(departments)


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


def overdue(stages: Mapping[str, float], last_sent_s: float, resends: int, now_s: float, resend_after_s: float,
            escalate_after: int) -> str | None:
    """What an unacknowledged warning needs now: ``"resend"``, ``"escalate"`` (resend one level up) or None.

    >>> overdue({"warned": 0.0}, 0.0, 0, 599.0, 600, 2), overdue({"warned": 0.0}, 0.0, 0, 600.0, 600, 2)
    (None, 'resend')
    >>> overdue({"warned": 0.0}, 1200.0, 2, 1800.0, 600, 2), overdue({"warned": 0.0, "acknowledged": 5.0}, 0.0, 0, 9e9, 600, 2)
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
def recipients(departments: Sequence[str], levels: Sequence[str], district: str, township: str, names: Mapping[str, str],
               roster: Mapping) -> list[str]:
    """Who receives a warning, department by department: the named persons of the roster for its area
    (township first, then district), then the department's duty post there, and the city's post when
    the warning reaches the city level. ``names`` maps area ids to names; ``roster`` is config/roster.toml.

    >>> roster = {"posts": {"water_bureau": "{district}水利局 值班室"}, "city_posts": {"water_bureau": "市水利局 总值班室"},
    ...           "persons": [{"name": "李明", "role": "值班长", "department": "water_bureau", "district": "liangping", "phone": "1"}]}
    >>> recipients(["water_bureau"], ["township", "district", "city"], "liangping", "fulu", {"liangping": "梁平区"}, roster)
    ['李明 (值班长, 1)', '梁平区水利局 值班室', '市水利局 总值班室']
    """
    out: list[str] = []
    for department in departments:
        for p in roster.get("persons", []):
            if p["department"] == department and p["district"] == district and p.get("township", township) in (township, ""):
                out.append(f"{p['name']} ({p['role']}, {p['phone']})")
        if post := roster.get("posts", {}).get(department):
            out.append(post.format(district=names.get(district, district), township=names.get(township, township) if township else names.get(district, district)))
        if "city" in levels and (post := roster.get("city_posts", {}).get(department)):
            out.append(post)
    return list(dict.fromkeys(out))
