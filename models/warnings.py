"""Warning rules: tier from severity, routing to governance levels and departments, escalation one
level up, and the recipients of the roster. Incidents are models/incidents.py's."""

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


def rank(tier: str) -> int:
    return TIERS.index(tier)


# --- escalation and recipients -----------------------------------------------------------------------
def levels_up(levels: Sequence[str], order: Sequence[str] = ("township", "district", "city")) -> list[str]:
    """The governance levels with the next one above the highest present added.

    >>> levels_up(["township"]), levels_up(["township", "district", "city"])
    (['township', 'district'], ['township', 'district', 'city'])
    """
    top = max((order.index(lvl) for lvl in levels if lvl in order), default=-1)
    return list(levels) + ([order[top + 1]] if top + 1 < len(order) else [])


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
