"""Routing: the configured channels, and the (department, channel) pairs a warning takes."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.delivery.channels import Channel, LogChannel, Produce, TopicChannel, WebhookChannel
from pipeline.delivery.retry import RetryingChannel
from pipeline.schemas import Warning
from pipeline.settings import DeliverySettings

WEBHOOK_BACKOFF_S = 0.2  # then 0.4, 0.8 ...: a receiver that hiccups gets a moment


def channels_for(settings: DeliverySettings, produce: Produce) -> list[Channel]:
    """The channels of ``[delivery] channels``, in order, each behind its retry stage.

    Only the webhook is tried again (``webhook_attempts``): a receiver over HTTP may hiccup (a 5xx,
    a timeout); the topic and the log are tried once.
    """
    made = {
        "topic": lambda: RetryingChannel(TopicChannel(produce), attempts=1),
        "webhook": lambda: RetryingChannel(WebhookChannel(settings), settings.webhook_attempts, WEBHOOK_BACKOFF_S),
        "log": lambda: RetryingChannel(LogChannel(), attempts=1),
    }
    return [made[name]() for name in settings.channels]


def delivery_id(warning: Warning, department: str, channel: str) -> str:
    """The id that makes a delivery at most once.

    >>> delivery_id(Warning.model_construct(warning_id="water:ruxi:1:red"), "water_bureau", "topic")
    'water:ruxi:1:red|water_bureau|topic'
    """
    return f"{warning.warning_id}|{department}|{channel}"


def routes(warning: Warning, channels: Iterable[Channel], done: set[str]) -> list[tuple[str, Channel]]:
    """Each of the warning's departments by each channel that serves it, less the delivery ids in ``done``."""
    channels = list(channels)
    return [
        (department, channel)
        for department in warning.departments
        for channel in channels
        if channel.serves(department) and delivery_id(warning, department, channel.name) not in done
    ]
