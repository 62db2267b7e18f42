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
from pipeline.schemas import ActionResult, LifecycleEvent, Silence, Warning
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


class OperatorEndpoints:
    """The page's endpoints, sharing one event feed (one Kafka consumer for every browser) and one
    action client (one producer, and one consumer of the answers, for every action)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.token = settings.web.operator_token.get_secret_value()
        self.view = json.dumps(city_view(default_city(), rules().routing), ensure_ascii=False).replace("</", "<\\/")
        self.feed = EventFeed(settings)
        self.actions = ActionClient(settings)
        self.hosts = allowed_hosts(settings)

    def signed_in(self, request: Request) -> bool:
        if not self.token:
            return True
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        return hmac.compare_digest(bearer, self.token) or hmac.compare_digest(
            request.cookies.get(SESSION_COOKIE, ""), session_value(self.token)
        )

    def forged(self, request: Request) -> str | None:
        """Why a state-changing request cannot be the page's own (another site's form or script, or a
        name that rebinds to this host), or is too large to read."""
        if request.headers.get("host", "").rsplit(":", 1)[0].strip("[]") not in self.hosts:
            return f"requests for host {request.headers.get('host', '')!r} are not served here (web.allowed_hosts)"
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return f"request body over {MAX_BODY_BYTES} bytes"
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return "Content-Type must be application/json"
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            return f"cross-site request from {origin} refused"
        return None

    async def page(self, request: Request) -> HTMLResponse:
        html = (
            PAGE.read_text(encoding="utf-8")
            .replace("__TOKEN_REQUIRED__", "true" if self.token else "false")
            .replace("__CITY__", self.view)
        )
        return HTMLResponse(html)

    async def login(self, request: Request) -> JSONResponse:
        if (why := self.forged(request)) is not None:
            return JSONResponse({"error": why}, status_code=403)
        try:
            given = str((await request.json())["token"])
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            return JSONResponse({"error": 'send {"token": ...}'}, status_code=400)
        if not self.token or not hmac.compare_digest(given, self.token):
            return JSONResponse({"error": "wrong operator token"}, status_code=401)
        response = JSONResponse({"ok": True})
        response.set_cookie(
            SESSION_COOKIE, session_value(self.token), httponly=True, samesite="strict", max_age=12 * 3600
        )
        return response

    async def events(self, request: Request) -> StreamingResponse | JSONResponse:
        if not self.signed_in(request):
            return JSONResponse({"error": "operator login required"}, status_code=401)
        return StreamingResponse(
            self.feed.events(request.is_disconnected),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def action(self, request: Request) -> JSONResponse:
        """An operator's action: refused (401, 403, 400) before it is sent, then the warning agent's verdict."""
        if not self.signed_in(request):
            return JSONResponse({"error": "operator token required"}, status_code=401)
        if (why := self.forged(request)) is not None:
            return JSONResponse({"error": why}, status_code=403)
        try:
            event = _lifecycle_event(await request.json())
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        try:
            result = await submit_action(self.settings, event, client=self.actions)
        except Exception as error:  # Kafka unreachable: say so, do not fail with a traceback
            return JSONResponse(
                {"error": f"the action could not be sent ({type(error).__name__}); is Kafka up?"}, status_code=503
            )
        return _verdict(event, result)

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})


def _lifecycle_event(body) -> LifecycleEvent:
    """The operator's action a request body asks for (ValueError, KeyError or TypeError when it is none)."""
    return LifecycleEvent.by_operator(
        str(body["id"]),
        str(body["stage"]),
        str(body.get("by") or "web operator")[:128],
        str(body.get("note") or "")[:2000],
    )


def _verdict(event: LifecycleEvent, result: ActionResult | None) -> JSONResponse:
    """The warning agent's answer as HTTP: 200 accepted, 409 rejected with the reason, 504 no answer."""
    if result is None:
        return JSONResponse(
            {"error": "no answer from the warning agent (is the worker running?); the request stays queued"},
            status_code=504,
        )
    if not result.accepted:
        return JSONResponse({"error": result.reason}, status_code=409)
    return JSONResponse({"accepted": json.loads(event.model_dump_json())}, status_code=200)


def create_app(settings: Settings) -> Starlette:
    endpoints = OperatorEndpoints(settings)
    return Starlette(
        routes=[
            Route("/", endpoints.page),
            Route("/events", endpoints.events),
            Route("/api/actions", endpoints.action, methods=["POST"]),
            Route("/login", endpoints.login, methods=["POST"]),
            Route("/health", endpoints.health),
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
