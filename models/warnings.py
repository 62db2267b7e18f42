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
