"""What a delivery leaves behind: its ``Delivery`` record, and the incident's "delivered" event."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.delivery.channels import Outcome
from pipeline.delivery.route import delivery_id
from pipeline.operators import humane_duration
from pipeline.schemas import Delivery, LifecycleEvent, Stage, Warning, utc_now


def record_of(warning: Warning, department: str, channel: str, outcome: Outcome) -> Delivery:
    """The record of one delivery (or its failure, with why), stamped now."""
    now = utc_now()
    return Delivery(
        delivery_id=delivery_id(warning, department, channel),
        warning_id=warning.warning_id,
        incident_id=warning.incident_id,
        category=warning.category,
        tier=warning.tier,
        department=department,
        channel=channel,
        ok=outcome.ok,
        detail=outcome.detail[:1000],
        delivered_at=now,
        since_reading_s=(now - warning.ts).total_seconds(),
    )


def made_ids(done: Iterable[str], records: Iterable[Delivery]) -> list[str]:
    """The delivery ids made so far: ``done`` and the successful ``records``, sorted (the table's value).

    >>> made_ids(["b"], [Delivery.model_construct(delivery_id="a", ok=True),
    ...                  Delivery.model_construct(delivery_id="c", ok=False)])
    ['a', 'b']
    """
    return sorted(set(done) | {r.delivery_id for r in records if r.ok})


def delivered_event(warning: Warning, records: Iterable[Delivery]) -> LifecycleEvent | None:
    """The incident's "delivered" stage, at the first successful delivery of ``records`` (None: none was)."""
    made = [r for r in records if r.ok]
    if not made:
        return None
    first = min(made, key=lambda r: r.delivered_at)
    after = humane_duration(first.since_reading_s) if first.since_reading_s >= 60 else f"{first.since_reading_s:.2f} s"
    return LifecycleEvent(
        incident_id=warning.incident_id,
        stage=Stage.delivered,
        ts=first.delivered_at,
        actor=first.department,
        note=f"{warning.tier.value.upper()} warning: {len(made)} deliveries, the first {after} after the reading",
        warning_id=warning.warning_id,
    )
