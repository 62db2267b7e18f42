"""The retry stage: a channel tried again, with backoff, while its failures are worth another try.

``RetryingChannel`` is itself a ``Channel``: whoever sends through it does not know it retries.
It waits ``backoff_s``, then twice that, and so on, between attempts, and never after the last one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pipeline.delivery.channels import Channel, Outcome
from pipeline.schemas import Warning


def backoffs(attempts: int, backoff_s: float) -> list[float]:
    """The waits between ``attempts`` attempts, doubling.

    >>> backoffs(3, 0.2), backoffs(1, 0.2)
    ([0.2, 0.4], [])
    """
    return [backoff_s * 2**attempt for attempt in range(attempts - 1)]


class RetryingChannel:
    """``channel``, tried up to ``attempts`` times while its outcome asks for a retry.

    A final failure after one or more attempts reads ``RuntimeError: after <n> attempt(s): <why>``;
    an exception from the channel is a final failure at once (``<type>: <message>``).
    """

    def __init__(
        self,
        channel: Channel,
        attempts: int,
        backoff_s: float = 0.2,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        self.channel = channel
        self.name = channel.name
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep

    def serves(self, department: str) -> bool:
        return self.channel.serves(department)

    async def send(self, warning: Warning, department: str) -> Outcome:
        waits = backoffs(self.attempts, self.backoff_s)
        for attempt in range(1, self.attempts + 1):
            try:
                outcome = await self.channel.send(warning, department)
            except Exception as error:  # a failed channel is recorded, and the others still deliver
                return Outcome.failure(error)
            if outcome.ok or not outcome.retry or attempt == self.attempts:
                break
            await self.sleep(waits[attempt - 1])
        if outcome.ok:
            return outcome
        return Outcome.failure(RuntimeError(f"after {attempt} attempt(s): {outcome.detail}"))

    async def close(self) -> None:
        await self.channel.close()
