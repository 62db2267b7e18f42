"""The bridge process's health endpoint: ``GET /health`` on 127.0.0.1:``bridge.health_port``."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import orjson

from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.bridge import Bridge


async def serve_health(settings: Settings, state: dict) -> asyncio.Server:
    """``GET /health`` on 127.0.0.1:``bridge.health_port``: 200 and ``"ready": true`` while the bridge
    forwards (connected to MQTT and Kafka), 503 with the reason while it cannot; with its counts and
    the messages taken in that Kafka does not have yet (``unacknowledged``: the bridge's lag)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            bridge: Bridge | None = state["bridge"]
            ready, reason = (False, state["trouble"]) if state["trouble"] or bridge is None else bridge.health()
            body = {"ready": ready, "reason": reason, "instance": settings.bridge.instance, "pid": os.getpid()}
            if bridge is not None:
                body |= vars(bridge.stats) | {"unacknowledged": bridge.unacknowledged}
            status = (
                "404 Not Found"
                if not request.startswith(b"GET /health")
                else "200 OK"
                if ready
                else "503 Service Unavailable"
            )
            payload = orjson.dumps(body)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", settings.bridge.health_port)
