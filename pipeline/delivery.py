"""Delivery channels: every warning to each of its departments, by each configured channel, recorded.

Three channels behind one interface (``Channel.send(warning, department) -> detail``, raising on
failure): the department's Kafka topic ``to.<department>``, a webhook (a JSON POST, with a bearer
token from the settings, retried with backoff), and the log. ``deliver`` makes each (warning,
department, channel) delivery at most once, given the ids already made, and returns a ``Delivery``
record for each attempt, failed ones included with why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from pipeline.schemas import Delivery, Warning, utc_now
from pipeline.settings import DeliverySettings
from pipeline.topics import department_topic

log = logging.getLogger("yuflow.delivery")


class Channel(Protocol):
    name: str

    async def send(self, warning: Warning, department: str) -> str: ...


class TopicChannel:
    """The department's own Kafka topic; ``produce(topic, key, value)`` is the caller's producer."""

    name = "topic"

    def __init__(self, produce: Callable[[str, bytes, bytes], Awaitable[object]]):
        self.produce = produce

    async def send(self, warning: Warning, department: str) -> str:
        topic = department_topic(department)
        await self.produce(topic, warning.incident_id.encode(), warning.to_json())
        return topic


class WebhookChannel:
    """A JSON POST of the warning to the department's URL, when it has one (else: not this channel's)."""

    name = "webhook"

    def __init__(self, settings: DeliverySettings):
        self.settings = settings
        self._session = None

    def serves(self, department: str) -> bool:
        return department in self.settings.webhooks

    async def send(self, warning: Warning, department: str) -> str:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s))
        url = self.settings.webhooks[department]
        headers = {"Content-Type": "application/json"}
        if token := self.settings.webhook_token.get_secret_value():
            headers["Authorization"] = f"Bearer {token}"
        error: Exception | None = None
        for attempt in range(self.settings.webhook_attempts):
            try:
                async with self._session.post(url, data=warning.to_json(), headers=headers) as response:
                    if response.status < 300:
                        return f"{url} {response.status}"
                    error = RuntimeError(f"{url} answered {response.status}")
                    if response.status < 500:
                        break  # the receiver refuses it: retrying will not help
            except (TimeoutError, aiohttp.ClientError) as e:
                error = e
            await asyncio.sleep(0.2 * 2**attempt)
        raise RuntimeError(f"after {attempt + 1} attempt(s): {error}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class LogChannel:
    name = "log"

    async def send(self, warning: Warning, department: str) -> str:
        log.info(
            "warning %s (%s %s) to %s: %s",
            warning.warning_id,
            warning.tier.value,
            warning.category.value,
            department,
            warning.title,
        )
        return "logged"


def channels_for(
    settings: DeliverySettings, produce: Callable[[str, bytes, bytes], Awaitable[object]]
) -> list[Channel]:
    made = {"topic": lambda: TopicChannel(produce), "webhook": lambda: WebhookChannel(settings), "log": LogChannel}
    return [made[name]() for name in settings.channels]


async def deliver(warning: Warning, channels: Iterable[Channel], done: set[str]) -> list[Delivery]:
    """Hand ``warning`` to each of its departments by each channel, skipping the delivery ids in ``done``."""
    records = []
    for department in warning.departments:
        for channel in channels:
            delivery_id = f"{warning.warning_id}|{department}|{channel.name}"
            if delivery_id in done or (isinstance(channel, WebhookChannel) and not channel.serves(department)):
                continue
            try:
                detail, ok = await channel.send(warning, department), True
            except Exception as error:  # a failed channel is recorded, and the others still deliver
                detail, ok = f"{type(error).__name__}: {error}", False
            now = utc_now()
            records.append(
                Delivery(
                    delivery_id=delivery_id,
                    warning_id=warning.warning_id,
                    incident_id=warning.incident_id,
                    category=warning.category,
                    tier=warning.tier,
                    department=department,
                    channel=channel.name,
                    ok=ok,
                    detail=detail[:1000],
                    delivered_at=now,
                    since_reading_s=(now - warning.ts).total_seconds(),
                )
            )
    return records
