"""The operators' web page (``yuflow web``): live warnings by server-sent events, filters, incident
detail, and acknowledge / close buttons.

A small Starlette app. ``/events`` streams the warnings topic (from its start, then live) and the
lifecycle topic to each browser as server-sent events; ``/api/actions`` puts an operator's action
on the actions topic and answers with the warning agent's verdict (200 accepted, 409 rejected with
the reason, 504 when no worker answers). With ``web.operator_token`` set,
actions need it (header ``Authorization: Bearer ...``); the page asks for it once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from pipeline.operators import submit_action
from pipeline.schemas import LifecycleEvent, Warning
from pipeline.settings import Settings
from pipeline.topics import LIFECYCLE, WARNINGS

PAGE = Path(__file__).with_name("web_page.html")


async def _events(settings: Settings, disconnected) -> AsyncIterator[bytes]:
    """Server-sent events: ``warning`` and ``lifecycle`` records, oldest first, then as they come."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(WARNINGS, LIFECYCLE, bootstrap_servers=settings.kafka.bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        yield b": connected\n\n"
        idle = 0
        while not await disconnected():
            batches = await consumer.getmany(timeout_ms=250)
            for tp, records in batches.items():
                kind = "warning" if tp.topic == WARNINGS else "lifecycle"
                for record in records:
                    try:  # only well-formed records reach a browser
                        data = (Warning if kind == "warning" else LifecycleEvent).model_validate_json(record.value).model_dump_json()
                    except ValueError:
                        continue
                    yield f"event: {kind}\ndata: {data}\n\n".encode()
            idle = 0 if batches else idle + 1
            if idle and idle % 60 == 0:
                yield b": keep-alive\n\n"
    finally:
        await consumer.stop()


def create_app(settings: Settings) -> Starlette:
    token = settings.web.operator_token.get_secret_value()

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8").replace("__TOKEN_REQUIRED__", "true" if token else "false"))

    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(_events(settings, request.is_disconnected), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def action(request: Request) -> JSONResponse:
        if token and request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "operator token required"}, status_code=401)
        try:
            body = await request.json()
            event = LifecycleEvent.by_operator(str(body["id"]), str(body["stage"]), str(body.get("by") or "web operator")[:128],
                                               str(body.get("note") or "")[:2000])
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        result = await submit_action(settings, event)
        if result is None:
            return JSONResponse({"error": "no answer from the warning agent (is the worker running?); the request stays queued"},
                                status_code=504)
        if not result.accepted:
            return JSONResponse({"error": result.reason}, status_code=409)
        return JSONResponse({"accepted": json.loads(event.model_dump_json())}, status_code=200)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/", page), Route("/events", events), Route("/api/actions", action, methods=["POST"]),
                             Route("/health", health)])


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
