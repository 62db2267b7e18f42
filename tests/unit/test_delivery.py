"""Delivery channels: topic, webhook (a real local HTTP server) and log; each delivery once, failures recorded."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import SecretStr

from pipeline.delivery import LogChannel, TopicChannel, WebhookChannel, deliver
from pipeline.schemas import Category, Tier, Warning
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
        webhook = WebhookChannel(settings)
        channels = [TopicChannel(produce), webhook, LogChannel()]
        try:
            first = await deliver(warning(), channels, set())
            again = await deliver(warning(), channels, {r.delivery_id for r in first if r.ok})
        finally:
            await webhook.close()
            await runner.cleanup()
        return first, again, received, produced

    first, again, received, produced = asyncio.run(scenario())
    by = {(r.department, r.channel): r for r in first}
    assert len(first) == 3 * 2 + 2  # topic and log for 3 departments, webhooks for the 2 that have one
    assert [t for t, _, _ in produced] == ["to.water_bureau", "to.ecology_environment", "to.emergency_management"]
    assert by[("water_bureau", "webhook")].ok and received[0][0] == "Bearer s3cret" and received[0][1]["tier"] == "red"
    refused = by[("ecology_environment", "webhook")]
    assert not refused.ok and "404" in refused.detail and "1 attempt" in refused.detail  # a 4xx is not retried
    assert all(0.3 <= r.since_reading_s < 5 for r in first)
    # delivered again (a worker restarted): only the failed one is tried again
    assert [(r.department, r.channel) for r in again] == [("ecology_environment", "webhook")]
