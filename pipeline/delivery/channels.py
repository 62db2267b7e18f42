"""The delivery channels behind one interface: the department's Kafka topic, a webhook, the log.

A channel makes one attempt per ``send`` and answers with an ``Outcome``; trying again is the retry
stage's work (pipeline/delivery/retry.py). Every channel implements the whole interface, so callers
never ask which kind of channel they hold.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from pipeline.schemas import Warning
from pipeline.settings import DeliverySettings
from pipeline.topics import department_topic

log = logging.getLogger("yuflow.delivery")

Produce = Callable[[str, bytes, bytes], Awaitable[object]]  # (topic, key, value): the caller's Kafka producer


@dataclass(frozen=True)
class Outcome:
    """One attempt's result: ``detail`` says where it went, or why it failed; ``retry``: worth another try.

    >>> Outcome.failure(RuntimeError("after 3 attempt(s): http://x answered 503"))
    Outcome(ok=False, detail='RuntimeError: after 3 attempt(s): http://x answered 503', retry=False)
    """

    ok: bool
    detail: str
    retry: bool = False

    @classmethod
    def failure(cls, error: Exception) -> Outcome:
        """A failure that is final, recorded as ``<type>: <message>``."""
        return cls(False, f"{type(error).__name__}: {error}")


class Channel(Protocol):
    name: str  # recorded on each delivery: topic, webhook, log

    def serves(self, department: str) -> bool:
        """Whether this channel delivers to ``department`` at all (a webhook needs its URL)."""
        ...

    async def send(self, warning: Warning, department: str) -> Outcome:
        """One attempt to hand ``warning`` to ``department``; an exception counts as a final failure."""
        ...

    async def close(self) -> None: ...


class TopicChannel:
    """The department's own Kafka topic."""

    name = "topic"

    def __init__(self, produce: Produce):
        self.produce = produce

    def serves(self, department: str) -> bool:
        return True

    async def send(self, warning: Warning, department: str) -> Outcome:
        topic = department_topic(department)
        await self.produce(topic, warning.incident_id.encode(), warning.to_json())
        return Outcome(True, topic)

    async def close(self) -> None:
        pass  # the producer is the caller's


class WebhookChannel:
    """A JSON POST of the warning to the department's URL, for the departments that have one."""

    name = "webhook"

    def __init__(self, settings: DeliverySettings):
        self.settings = settings
        self._session = None

    def serves(self, department: str) -> bool:
        return department in self.settings.webhooks

    async def send(self, warning: Warning, department: str) -> Outcome:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s))
        url = self.settings.webhooks[department]
        headers = {"Content-Type": "application/json"}
        if token := self.settings.webhook_token.get_secret_value():
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._session.post(url, data=warning.to_json(), headers=headers) as response:
                if response.status < 300:
                    return Outcome(True, f"{url} {response.status}")
                # a 4xx: the receiver refuses it, and retrying will not help; a 5xx may pass
                return Outcome(False, f"{url} answered {response.status}", retry=response.status >= 500)
        except (TimeoutError, aiohttp.ClientError) as error:
            return Outcome(False, str(error), retry=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class LogChannel:
    """A line in the worker's log."""

    name = "log"

    def serves(self, department: str) -> bool:
        return True

    async def send(self, warning: Warning, department: str) -> Outcome:
        log.info(
            "warning %s (%s %s) to %s: %s",
            warning.warning_id,
            warning.tier.value,
            warning.category.value,
            department,
            warning.title,
        )
        return Outcome(True, "logged")

    async def close(self) -> None:
        pass
