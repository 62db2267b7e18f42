"""What operators see and do: the live warning stream, filtered, rendered as a rich table; their
acknowledgements and closures, put on the actions topic and answered by the warning agent."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from rich.markup import escape
from rich.table import Table

from pipeline.schemas import ActionResult, LifecycleEvent, Silence, Stage, Tier, Warning
from pipeline.settings import Settings
from pipeline.topics import ACTION_RESULTS, ACTIONS, LIFECYCLE, SILENCES, WARNINGS

TIER_STYLE = {
    Tier.blue: "bold white on blue",
    Tier.yellow: "bold black on yellow",
    Tier.orange: "bold black on dark_orange",
    Tier.red: "bold white on red",
}


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
    for column in ("tier", "time (UTC)", "district", "station", "what", "departments", "warning id (for ack)"):
        table.add_column(column, overflow="fold")
    for w in warnings:
        table.add_row(
            f"[{TIER_STYLE[w.tier]}] {w.tier.value.upper()} [/]",
            w.ts.strftime("%Y-%m-%d %H:%M"),
            w.district,
            w.station,
            escape(w.title),
            ", ".join(w.departments),
            w.warning_id,
        )
    return table


def warning_line(w: Warning) -> str:
    """One plain line per warning, for a pipe or a log file (the live table needs a terminal)."""
    return (
        f"{w.tier.value.upper():6} {w.ts:%Y-%m-%d %H:%M}Z {w.district}/{w.station}  {w.title}  "
        f"→ {', '.join(w.departments)}  id {w.warning_id}"
    )


class ActionClient:
    """A producer of operators' requests and one consumer of the answers: each request waits for its
    own answer (by request id). The page keeps one for all its actions; the CLI makes one per command."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._waiting: dict[str, asyncio.Future] = {}
        self._producer = None
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Lock()

    async def _start(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        async with self._ready:
            if self._producer is not None:
                return
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap, group_id=None, enable_auto_commit=False
            )
            producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap, acks="all")
            try:
                await consumer.start()
                await consumer.topics()
                partitions = [
                    TopicPartition(ACTION_RESULTS, p) for p in consumer.partitions_for_topic(ACTION_RESULTS) or ()
                ]
                consumer.assign(partitions)
                await consumer.seek_to_end(*partitions)
                for tp in partitions:  # positioned before any request is sent: no answer is missed
                    await consumer.position(tp)
                await producer.start()
            except Exception:
                await consumer.stop()
                await producer.stop()
                raise
            self._task = asyncio.get_running_loop().create_task(self._answers(consumer))
            self._producer = producer

    async def _answers(self, consumer) -> None:
        try:
            async for record in consumer:
                try:
                    result = ActionResult.model_validate_json(record.value)
                except ValueError:
                    continue
                waiting = self._waiting.pop(result.request_id, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(result)
        finally:
            await consumer.stop()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()  # its consumer stops as the task ends
            await asyncio.gather(self._task, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()

    async def submit(self, event: LifecycleEvent, timeout_s: float = 15.0) -> ActionResult | None:
        await self._start()
        answer = asyncio.get_running_loop().create_future()
        self._waiting[event.request_id] = answer
        try:
            await self._producer.send_and_wait(ACTIONS, event.to_json(), key=event.incident_key.encode())
            return await asyncio.wait_for(answer, timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(event.request_id, None)


async def submit_action(
    settings: Settings, event: LifecycleEvent, timeout_s: float = 15.0, client: ActionClient | None = None
) -> ActionResult | None:
    """Put an operator's request (acknowledge, dispose, close, review) on the ``actions`` topic, keyed
    like the incident, and wait for the warning agent's answer: accepted (recorded on ``lifecycle``)
    or rejected with the reason. None when no answer came within ``timeout_s`` (no worker running):
    the request stays queued and is answered when a worker takes it. With ``client``, its producer
    and consumer (a long-running caller, the page); else a client for this one request (the CLI)."""
    if client is not None:
        return await client.submit(event, timeout_s)
    client = ActionClient(settings)
    try:
        return await client.submit(event, timeout_s)
    finally:
        await client.close()


@dataclass
class IncidentRow:
    """An incident as the warnings and lifecycle topics tell it: its latest warning and its stages."""

    incident_id: str
    tier: Tier
    district: str
    station: str
    title: str
    opened: datetime
    latest_warning_id: str
    acknowledged_by: str = ""
    closed: bool = False


async def read_incidents(settings: Settings) -> list[IncidentRow]:
    """Every incident on the ``warnings`` and ``lifecycle`` topics as they stand now (read from their
    start to their current end), oldest first."""
    warnings = await read_topic(settings, WARNINGS, Warning)
    events = await read_topic(settings, LIFECYCLE, LifecycleEvent)
    rows: dict[str, IncidentRow] = {}
    for w in sorted(warnings, key=lambda w: w.issued_at):
        row = rows.setdefault(
            w.incident_id, IncidentRow(w.incident_id, w.tier, w.district, w.station, w.title, w.ts, w.warning_id)
        )
        row.tier, row.title, row.latest_warning_id = w.tier, w.title, w.warning_id
    for e in sorted(events, key=lambda e: e.ts):
        row = rows.get(e.incident_id)
        if row is None:
            continue
        if e.stage == Stage.acknowledged and not row.acknowledged_by:
            row.acknowledged_by = e.actor
        elif e.stage == Stage.closed:
            row.closed = True
        elif e.stage == Stage.sensed:
            row.opened = min(row.opened, e.ts)
    return sorted(rows.values(), key=lambda r: r.opened)


def humane_duration(seconds: float) -> str:
    """A duration as people on duty say it.

    >>> humane_duration(42), humane_duration(3 * 60 + 5), humane_duration(7500), humane_duration(100000)
    ('42 s', '3 min', '2 h 05 min', '1 d 3 h')
    """
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def incidents_table(rows: list[IncidentRow], now: datetime) -> Table:
    table = Table(title="Yuflow incidents", expand=True)
    for column in ("incident id", "tier", "area", "age", "acknowledged by", "state", "latest warning"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r.incident_id,
            f"[{TIER_STYLE[r.tier]}] {r.tier.value.upper()} [/]",
            f"{r.district} / {r.station}",
            humane_duration((now - r.opened).total_seconds()),
            escape(r.acknowledged_by) or "—",
            "closed" if r.closed else "open",
            escape(r.title),
        )
    return table


def parse_until(text: str, now: datetime) -> datetime:
    """``--until``: a duration from now (``90m``, ``2h``, ``1d``) or an ISO 8601 time with its zone.

    >>> from datetime import UTC
    >>> now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    >>> parse_until("2h", now).isoformat(), parse_until("2026-12-07T18:00:00+08:00", now).isoformat()
    ('2026-12-07T10:00:00+00:00', '2026-12-07T10:00:00+00:00')
    """
    from datetime import UTC, timedelta

    unit = {"m": 60, "h": 3600, "d": 86400}.get(text[-1:])
    if unit is not None and text[:-1].replace(".", "", 1).isdigit():
        return now + timedelta(seconds=float(text[:-1]) * unit)
    until = datetime.fromisoformat(text)
    if until.tzinfo is None:
        raise ValueError(f"--until {text!r} needs a time zone (e.g. +08:00) or a duration such as 2h")
    if until <= now:
        raise ValueError(f"--until {text!r} is already past")
    return until.astimezone(UTC)


async def send_silence(settings: Settings, silence: Silence) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(SILENCES, silence.to_json(), key=silence.silence_id.encode())
    finally:
        await producer.stop()


async def read_silences(settings: Settings) -> list[Silence]:
    """The latest state of every silence on the ``silences`` topic, newest first."""
    found = {s.silence_id: s for s in await read_topic(settings, SILENCES, Silence)}
    return sorted(found.values(), key=lambda s: s.created_at, reverse=True)


async def read_topic(settings: Settings, topic: str, model) -> list:
    """Every record of ``topic`` from its start to its current end, parsed with ``model`` (others skipped)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in partitions])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    try:
                        out.append(model.model_validate_json(record.value))
                    except ValueError:
                        continue  # not ours to judge here; the topic's producers validate
    finally:
        await consumer.stop()
    return out
