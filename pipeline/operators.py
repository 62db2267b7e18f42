"""What operators see and do: the live warning stream, filtered, rendered as a rich table; their
acknowledgements and closures, put on the lifecycle topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from rich.table import Table

from pipeline.schemas import LifecycleEvent, Tier, Warning
from pipeline.settings import Settings
from pipeline.topics import LIFECYCLE, WARNINGS

TIER_STYLE = {Tier.blue: "bold white on blue", Tier.yellow: "bold black on yellow", Tier.orange: "bold black on dark_orange", Tier.red: "bold white on red"}


@dataclass(frozen=True)
class WarningFilter:
    min_tier: Tier | None = None
    district: str | None = None
    department: str | None = None

    def matches(self, w: Warning) -> bool:
        return (
            (self.min_tier is None or w.tier.rank >= self.min_tier.rank)
            and (self.district is None or w.district == self.district)
            and (self.department is None or self.department in w.departments)
        )


async def follow_warnings(
    settings: Settings,
    from_beginning: bool = False,
    timeout_s: float | None = None,
    where: WarningFilter = WarningFilter(),
) -> AsyncIterator[Warning]:
    """Warnings from the ``warnings`` topic as they arrive (a group-less consumer: every partition)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        WARNINGS,
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=None,
        client_id=f"yuflow-tail-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while deadline is None or time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    try:
                        warning = Warning.model_validate_json(record.value)
                    except ValueError:
                        continue  # not ours to judge here; the topic's producers validate
                    if where.matches(warning):
                        yield warning
            await asyncio.sleep(0)
    finally:
        await consumer.stop()


def warnings_table(warnings: list[Warning], title: str = "Yuflow warnings") -> Table:
    table = Table(title=title, expand=True)
    for column in ("tier", "time (UTC)", "district", "station", "what", "departments"):
        table.add_column(column, overflow="fold")
    for w in warnings:
        table.add_row(
            f"[{TIER_STYLE[w.tier]}] {w.tier.value.upper()} [/]",
            w.ts.strftime("%Y-%m-%d %H:%M"),
            w.district,
            w.station,
            w.message,
            ", ".join(w.departments),
        )
    return table


async def record_action(settings: Settings, event: LifecycleEvent) -> None:
    """Put an operator's action (acknowledge, dispose, close, review) on the ``lifecycle`` topic,
    keyed like the incident, for the warning agent to apply (or dead-letter with the reason)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(LIFECYCLE, event.to_json(), key=event.incident_key.encode())
    finally:
        await producer.stop()
