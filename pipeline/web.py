"""The operators' web page (``yuflow web``): live warnings by server-sent events, filters, incident
detail, and acknowledge / close buttons.

A small Starlette app. ``/events`` streams the warnings topic (from its start, then live) and the
lifecycle topic to each browser as server-sent events; ``/api/actions`` puts an operator's action
on the actions topic and answers with the warning agent's verdict (200 accepted, 409 rejected with
the reason, 504 when no worker answers). With ``web.operator_token`` set,
actions need it (header ``Authorization: Bearer ...``); the page asks for it once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from pipeline.city import City, default_city
from pipeline.operators import ActionClient, submit_action
from pipeline.rule_files import RoutingFile
from pipeline.rules import rules
from pipeline.schemas import LifecycleEvent, Silence, Warning
from pipeline.settings import Settings
from pipeline.topics import LIFECYCLE, SILENCES, WARNINGS

PAGE = Path(__file__).with_name("web_page.html")
EVENT_KINDS = {WARNINGS: ("warning", Warning), LIFECYCLE: ("lifecycle", LifecycleEvent), SILENCES: ("silence", Silence)}


class EventFeed:
    """One Kafka consumer for every browser: the warnings, lifecycle and silences topics from their
    start, kept as server-sent events (the last ``keep`` of them, for a browser that opens the page
    later) and fanned out to each connected browser's queue."""

    def __init__(self, settings: Settings, keep: int = 50_000):
        self.settings = settings
        self.history: deque[bytes] = deque(maxlen=keep)
        self.listeners: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task | None = None

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            *EVENT_KINDS,
            bootstrap_servers=self.settings.kafka.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            while True:
                for tp, records in (await consumer.getmany(timeout_ms=250)).items():
                    kind, model = EVENT_KINDS[tp.topic]
                    for record in records:
                        try:  # only well-formed records reach a browser
                            data = model.model_validate_json(record.value).model_dump_json()
                        except ValueError:
                            continue
                        event = f"event: {kind}\ndata: {data}\n\n".encode()
                        self.history.append(event)
                        for queue in self.listeners:
                            if queue.qsize() < 10_000:  # a browser that stopped reading is not buffered forever
                                queue.put_nowait(event)
        finally:
            await consumer.stop()

    async def events(self, disconnected) -> AsyncIterator[bytes]:
        self._start()
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        backlog = list(self.history)  # taken with the registration, in one step of the loop: nothing missed or repeated
        self.listeners.add(queue)
        try:
            yield b": connected\n\n"
            for event in backlog:
                yield event
            while not await disconnected():
                try:
                    yield await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            self.listeners.discard(queue)


LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_BODY_BYTES = 16_384  # an action or a login is a few hundred bytes


def allowed_hosts(settings: Settings) -> set[str]:
    """Host names the page answers state-changing requests for: loopback, the address it listens on,
    and ``web.allowed_hosts`` (the name operators use behind a proxy)."""
    return LOOPBACK | {settings.web.host} | set(settings.web.allowed_hosts)


SESSION_COOKIE = "yuflow_operator"


def session_value(token: str) -> str:
    """The login cookie's value: derived from the token, so the token itself never sits in a browser."""
    return hmac.new(token.encode(), b"yuflow operator session", hashlib.sha256).hexdigest()


def city_view(city: City, routing: RoutingFile) -> dict:
    """What the page needs of the city model: names for ids, and each river's sites by km for its map."""
    rivers = {}
    for rid, spec in city.rivers.items():
        points = [
            {"id": x.id, "name": x.name, "kind": kind, "km": x.river_km}
            for kind, table in (
                ("station", city.stations),
                ("source", city.sources),
                ("intake", city.intakes),
                ("dam", city.dams),
            )
            for x in table.values()
            if x.river == rid and not getattr(x, "treated", False)
        ]
        rivers[rid] = {
            "name": city.river_names.get(rid, rid),
            "length_km": sum(spec.lengths_km),
            "points": sorted(points, key=lambda p: p["km"]),
        }
    sites = {
        sid: city.site_name(sid)
        for table in (
            city.stations,
            city.gauges,
            city.zones,
            city.sources,
            city.intakes,
            city.dams,
            city.districts,
            city.townships,
            city.risk_points,
        )
        for sid in table
    }
    return {
        "departments": routing.departments,
        "sites": sites,
        "rivers": rivers,
        "station_river": {sid: st.river for sid, st in city.stations.items()},
    }


def create_app(settings: Settings) -> Starlette:
    token = settings.web.operator_token.get_secret_value()
    view = json.dumps(city_view(default_city(), rules().routing), ensure_ascii=False).replace("</", "<\\/")
    feed = EventFeed(settings)  # one consumer for every browser
    actions = ActionClient(settings)  # one producer (and one consumer of the answers) for every action
    hosts = allowed_hosts(settings)

    def signed_in(request: Request) -> bool:
        if not token:
            return True
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        return hmac.compare_digest(bearer, token) or hmac.compare_digest(
            request.cookies.get(SESSION_COOKIE, ""), session_value(token)
        )

    def forged(request: Request) -> str | None:
        """Why a state-changing request cannot be the page's own (another site's form or script, or a
        name that rebinds to this host), or is too large to read."""
        if request.headers.get("host", "").rsplit(":", 1)[0].strip("[]") not in hosts:
            return f"requests for host {request.headers.get('host', '')!r} are not served here (web.allowed_hosts)"
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return f"request body over {MAX_BODY_BYTES} bytes"
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return "Content-Type must be application/json"
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            return f"cross-site request from {origin} refused"
        return None

    async def page(request: Request) -> HTMLResponse:
        html = (
            PAGE.read_text(encoding="utf-8")
            .replace("__TOKEN_REQUIRED__", "true" if token else "false")
            .replace("__CITY__", view)
        )
        return HTMLResponse(html)

    async def login(request: Request) -> JSONResponse:
        if (why := forged(request)) is not None:
            return JSONResponse({"error": why}, status_code=403)
        try:
            given = str((await request.json())["token"])
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            return JSONResponse({"error": 'send {"token": ...}'}, status_code=400)
        if not token or not hmac.compare_digest(given, token):
            return JSONResponse({"error": "wrong operator token"}, status_code=401)
        response = JSONResponse({"ok": True})
        response.set_cookie(SESSION_COOKIE, session_value(token), httponly=True, samesite="strict", max_age=12 * 3600)
        return response

    async def events(request: Request) -> StreamingResponse | JSONResponse:
        if not signed_in(request):
            return JSONResponse({"error": "operator login required"}, status_code=401)
        return StreamingResponse(
            feed.events(request.is_disconnected),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def action(request: Request) -> JSONResponse:
        if not signed_in(request):
            return JSONResponse({"error": "operator token required"}, status_code=401)
        if (why := forged(request)) is not None:
            return JSONResponse({"error": why}, status_code=403)
        try:
            body = await request.json()
            event = LifecycleEvent.by_operator(
                str(body["id"]),
                str(body["stage"]),
                str(body.get("by") or "web operator")[:128],
                str(body.get("note") or "")[:2000],
            )
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        try:
            result = await submit_action(settings, event, client=actions)
        except Exception as error:  # Kafka unreachable: say so, do not fail with a traceback
            return JSONResponse(
                {"error": f"the action could not be sent ({type(error).__name__}); is Kafka up?"}, status_code=503
            )
        if result is None:
            return JSONResponse(
                {"error": "no answer from the warning agent (is the worker running?); the request stays queued"},
                status_code=504,
            )
        if not result.accepted:
            return JSONResponse({"error": result.reason}, status_code=409)
        return JSONResponse({"accepted": json.loads(event.model_dump_json())}, status_code=200)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/events", events),
            Route("/api/actions", action, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/health", health),
        ]
    )


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    if host not in LOOPBACK and not settings.web.operator_token.get_secret_value():
        raise SystemExit(
            f"yuflow web: listening on {host} lets others act on incidents; set YUFLOW_WEB__OPERATOR_TOKEN "
            f"(operators then log in with it), or listen on 127.0.0.1"
        )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
