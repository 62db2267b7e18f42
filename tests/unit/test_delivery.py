"""Delivery: the channels (a webhook on a real local HTTP server), the retry stage, routing and records."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import SecretStr

from pipeline.delivery.channels import Channel, LogChannel, Outcome, TopicChannel, WebhookChannel
from pipeline.delivery.records import delivered_event, made_ids, record_of
from pipeline.delivery.retry import RetryingChannel
from pipeline.delivery.route import channels_for, routes
from pipeline.schemas import Category, Stage, Tier, Warning
from pipeline.settings import DeliverySettings


def warning() -> Warning:
    now = datetime.now(UTC)
    return Warning(
        warning_id="water:ruxi-mingda:oil:1:red",
        incident_id="water:ruxi-mingda:oil:1",
        category=Category.water,
        tier=Tier.red,
        district="liangping",
        station="ruxi-mingda",
        levels=["township", "district", "city"],
        departments=["water_bureau", "ecology_environment", "emergency_management"],
        title="RED",
        message="oil",
        alert_ids=["a"],
        ts=now - timedelta(milliseconds=300),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def deliver(warning: Warning, channels: list[Channel], done: set[str]):
    """The delivery agent's loop, without Kafka: route, send through the retry stage, record."""
    records = []
    for department, channel in routes(warning, channels, done):
        records.append(record_of(warning, department, channel.name, await channel.send(warning, department)))
    return records


class FakeChannel:
    """A channel that answers with the given outcomes in turn (an exception is raised)."""

    name = "fake"

    def __init__(self, *answers: Outcome | Exception, departments: set[str] | None = None):
        self.answers = list(answers)
        self.departments = departments
        self.sent: list[str] = []
        self.closed = False

    def serves(self, department: str) -> bool:
        return self.departments is None or department in self.departments

    async def send(self, warning: Warning, department: str) -> Outcome:
        self.sent.append(department)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True


def retried(channel: FakeChannel, attempts: int) -> tuple[Outcome, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    outcome = asyncio.run(RetryingChannel(channel, attempts, 0.2, sleep=sleep).send(warning(), "water_bureau"))
    return outcome, waits


def test_each_department_gets_each_channel_once_and_failures_are_recorded_with_why():
    async def scenario():
        received, calls = [], {"n": 0}

        async def hook(request: web.Request) -> web.Response:
            calls["n"] += 1
            if calls["n"] == 1:
                return web.Response(status=503)  # the receiver hiccups once: retried
            received.append((request.headers.get("Authorization"), json.loads(await request.read())))
            return web.Response(status=204)

        async def refuse(request: web.Request) -> web.Response:
            return web.Response(status=404)

        app = web.Application()
        app.router.add_post("/water", hook)
        app.router.add_post("/ee", refuse)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        produced = []

        async def produce(topic, key, value):
            produced.append((topic, key, value))

        settings = DeliverySettings(
            webhooks={
                "water_bureau": f"http://127.0.0.1:{port}/water",
                "ecology_environment": f"http://127.0.0.1:{port}/ee",
            },
            webhook_token=SecretStr("s3cret"),
            webhook_attempts=3,
        )
        channels = channels_for(settings, produce)
        try:
            first = await deliver(warning(), channels, set())
            again = await deliver(warning(), channels, set(made_ids([], first)))
        finally:
            for channel in channels:
                await channel.close()
            await runner.cleanup()
        return first, again, received, produced

    first, again, received, produced = asyncio.run(scenario())
    by = {(r.department, r.channel): r for r in first}
    assert len(first) == 3 * 2 + 2  # topic and log for 3 departments, webhooks for the 2 that have one
    assert [t for t, _, _ in produced] == ["to.water_bureau", "to.ecology_environment", "to.emergency_management"]
    assert by[("water_bureau", "webhook")].ok and received[0][0] == "Bearer s3cret" and received[0][1]["tier"] == "red"
    assert by[("water_bureau", "topic")].detail == "to.water_bureau" and by[("water_bureau", "log")].detail == "logged"
    refused = by[("ecology_environment", "webhook")]
    assert not refused.ok and "404" in refused.detail and "1 attempt" in refused.detail  # a 4xx is not retried
    assert refused.detail.startswith("RuntimeError: after 1 attempt(s): http://127.0.0.1:")
    assert all(0.3 <= r.since_reading_s < 5 for r in first)
    # delivered again (a worker restarted): only the failed one is tried again
    assert [(r.department, r.channel) for r in again] == [("ecology_environment", "webhook")]


def test_the_webhook_is_tried_again_only_while_it_is_worth_it_and_never_waits_after_the_last_attempt():
    busy = Outcome(False, "http://x answered 503", retry=True)
    outcome, waits = retried(FakeChannel(busy, busy, busy), attempts=3)
    assert outcome == Outcome(False, "RuntimeError: after 3 attempt(s): http://x answered 503")
    assert waits == [0.2, 0.4]  # between the attempts, none after the last

    outcome, waits = retried(FakeChannel(busy, Outcome(True, "http://x 204")), attempts=3)
    assert outcome == Outcome(True, "http://x 204") and waits == [0.2]

    refused = FakeChannel(Outcome(False, "http://x answered 404"), busy)
    outcome, waits = retried(refused, attempts=3)
    assert outcome.detail == "RuntimeError: after 1 attempt(s): http://x answered 404" and waits == []
    assert refused.sent == ["water_bureau"]


def test_an_exception_from_a_channel_is_a_final_failure_recorded_as_its_type_and_message():
    broken = FakeChannel(ValueError("no broker"), Outcome(True, "late"))
    outcome, waits = retried(broken, attempts=3)
    assert outcome == Outcome(False, "ValueError: no broker") and waits == [] and len(broken.sent) == 1


def test_routes_skip_departments_a_channel_does_not_serve_and_deliveries_already_made():
    w = warning()
    webhook, log = FakeChannel(departments={"water_bureau"}), LogChannel()
    pairs = routes(w, [webhook, log], done={f"{w.warning_id}|ecology_environment|log"})
    assert [(d, c.name) for d, c in pairs] == [
        ("water_bureau", "fake"),
        ("water_bureau", "log"),
        ("emergency_management", "log"),
    ]


def test_the_configured_channels_keep_their_order_and_only_the_webhook_retries():
    async def produce(topic, key, value):
        pass

    settings = DeliverySettings(channels=["log", "webhook", "topic"], webhook_attempts=4)
    channels = channels_for(settings, produce)
    assert [c.name for c in channels] == ["log", "webhook", "topic"]
    assert [c.attempts for c in channels] == [1, 4, 1]
    assert [type(c.channel) for c in channels] == [LogChannel, WebhookChannel, TopicChannel]
    assert not channels[1].serves("water_bureau")  # no URL for it


def test_the_first_successful_delivery_is_the_incidents_delivered_stage():
    w = warning()
    records = [
        record_of(w, "water_bureau", "webhook", Outcome(False, "RuntimeError: after 3 attempt(s): x")),
        record_of(w, "water_bureau", "topic", Outcome(True, "to.water_bureau")),
        record_of(w, "ecology_environment", "topic", Outcome(True, "to.ecology_environment")),
    ]
    event = delivered_event(w, records)
    assert event.stage == Stage.delivered and event.actor == "water_bureau" and event.ts == records[1].delivered_at
    assert event.note.startswith("RED warning: 2 deliveries, the first 0.") and event.note.endswith(
        " s after the reading"
    )
    assert delivered_event(w, records[:1]) is None
    assert made_ids([], records) == [f"{w.warning_id}|ecology_environment|topic", f"{w.warning_id}|water_bureau|topic"]
