"""``yuflow status``: is each part of the pipeline up, and is the worker keeping up?

The services (MQTT, Kafka, InfluxDB) as ``yuflow services status`` sees them; the worker by its
web port; the bridge by the retained status it publishes on MQTT (its last will says offline); the
operators' page by ``/health``; and the worker's consumer lag per topic (records on the topic
that its consumer group has not committed yet). ``bridge_online`` waits for a bridge's status:
whatever starts a bridge (the demo, tests, benchmarks, evaluations) waits with it.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from dataclasses import dataclass

from pipeline.bridge import online_status
from pipeline.settings import Settings
from pipeline.topics import ACTIONS, ALERTS, LIFECYCLE, READINGS, TRACING, WATER_TRACE, bridge_status_topic

LAGGED_TOPICS = (*READINGS.values(), WATER_TRACE, ALERTS, TRACING, ACTIONS, LIFECYCLE)


@dataclass(frozen=True)
class PartStatus:
    name: str
    ok: bool
    state: str
    detail: str = ""
    required: bool = True  # `yuflow status` exits non-zero when a required part is not ok


def _http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own loopback URLs
            return response.status < 500
    except OSError:
        return False


def bridge_statuses(settings: Settings, timeout_s: float = 2.0, until=None) -> dict[str, str]:
    """Each bridge instance's retained status ("online pid=…" / "offline"), by instance: what came
    within ``timeout_s`` (retained statuses come at once), or as soon as ``until(statuses)`` holds.
    OSError when MQTT cannot be reached."""
    import threading

    from pipeline.mqtt import make_client

    got: dict[str, str] = {}
    client = make_client(
        settings.mqtt, f"{settings.mqtt.client_id_prefix}-status-{os.getpid()}-{threading.get_ident() % 100000}"
    )
    client.on_message = lambda c, u, msg: got.__setitem__(
        msg.topic.rsplit("/", 1)[-1], msg.payload.decode(errors="replace")
    )
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(bridge_status_topic(settings.mqtt.topic_root), qos=1)
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not (
            until is not None and until({k: v for k, v in list(got.items()) if v})
        ):
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return {k: v for k, v in got.items() if v}


def bridge_online(settings: Settings, pid: int | None, timeout_s: float = 30, instances: int = 1) -> None:
    """Wait for bridge ``pid`` to say it is online (then it is subscribed: nothing published is lost);
    with ``pid`` None, for ``instances`` bridges (a supervisor's children)."""

    def online(statuses: dict[str, str]) -> bool:
        up = [v for v in statuses.values() if v.startswith("online")]
        return online_status(pid).decode() in up if pid is not None else len(up) >= instances

    if not online(bridge_statuses(settings, timeout_s, until=online)):
        raise TimeoutError(f"timed out after {timeout_s:g} s waiting for the bridge to come online")


async def consumer_lag(settings: Settings) -> dict[str, int] | None:
    """Per topic, records the worker's consumer group has not committed yet; None when Kafka is down."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=settings.worker.app_id,
        enable_auto_commit=False,
        request_timeout_ms=5000,
    )
    try:
        await asyncio.wait_for(consumer.start(), 10)
    except Exception:  # noqa: BLE001 - any failure to reach Kafka is "down" here
        await consumer.stop()
        return None
    try:
        await consumer.topics()
        partitions = [TopicPartition(t, p) for t in LAGGED_TOPICS for p in consumer.partitions_for_topic(t) or ()]
        end = await consumer.end_offsets(partitions)
        lag: dict[str, int] = {}
        for tp in partitions:
            committed = await consumer.committed(tp)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(end[tp] - (committed or 0), 0)
        return lag
    finally:
        await consumer.stop()


def system_status(settings: Settings) -> list[PartStatus]:
    from pipeline import services

    parts = [
        PartStatus(s.name, s.state in ("started", "running", "external"), s.state, f"{s.address} {s.detail}".strip())
        for s in services.status(settings)
    ]
    worker_up = _http_ok(f"http://127.0.0.1:{settings.worker.web_port}/")
    parts.append(
        PartStatus("worker", worker_up, "running" if worker_up else "down", f"web port {settings.worker.web_port}")
    )
    try:
        bridges = bridge_statuses(settings)
    except OSError:
        bridges = {}
    online = {name: status for name, status in bridges.items() if status.startswith("online")}
    parts.append(
        PartStatus(
            "bridge",
            bool(online),
            f"{len(online)} online" if bridges else "unknown",
            "; ".join(f"{name}: {status}" for name, status in sorted(bridges.items()))
            or "no status on MQTT (never started, or MQTT is down)",
        )
    )
    web_up = _http_ok(f"http://{settings.web.host}:{settings.web.port}/health")
    parts.append(
        PartStatus(
            "web page",
            web_up,
            "running" if web_up else "not running",
            f"http://{settings.web.host}:{settings.web.port}/ (`yuflow web`)",
            required=False,
        )
    )
    kafka_up = any(p.name == "kafka" and p.ok for p in parts)
    lag = asyncio.run(consumer_lag(settings)) if kafka_up else None
    if lag is None:
        parts.append(PartStatus("consumer lag", False, "unknown", "Kafka is not reachable"))
    else:
        behind = {t: n for t, n in lag.items() if n}
        parts.append(
            PartStatus(
                "consumer lag",
                True,
                f"{sum(lag.values())} records",
                ", ".join(f"{t} {n}" for t, n in behind.items()) or "caught up",
            )
        )
    return parts
