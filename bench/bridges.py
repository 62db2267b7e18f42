"""Bridges alone, as the bottleneck: how fast 1, 2, ... bridges drain a backlog the broker holds for them.

``python -m bench bridges --scale 500 --messages 200000 --counts 1 2``

For each count N: N bridges subscribe (a shared subscription of their own) and stop; the load
generator publishes ``messages`` city messages (one sample each, as stations send) while they are
away, so the broker queues them to the bridges' sessions; then the N bridges start again and drain
it. Nothing else runs meanwhile (no load generator, no worker), so the bridges are the bottleneck
and the rate is theirs: messages from the first one taken in to the last one Kafka acknowledged,
read from each bridge's ``/health`` counts every 0.2 s. CPU per process over the drain.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson

from bench.city import CityLoad
from bench.processes import ProcessMeter, free_port


def _health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return orjson.loads(answer.read())
    except OSError as error:  # a 503 while it connects, or not listening yet
        body = getattr(error, "read", None)
        return orjson.loads(body()) if body else {}


def _publish_backlog(settings, load: CityLoad, messages: int) -> None:
    """``messages`` of the city's load, as fast as the broker takes them; returns once all are acknowledged."""
    from pipeline.mqtt import make_client

    client = make_client(settings.mqtt, f"bench-bridges-{uuid.uuid4().hex[:6]}")
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    try:
        sent, clock_s, pending = 0, load.start_s, []
        while sent < messages:
            clock_s += 1.0
            for topic, payload, _ in load.due(clock_s)[: messages - sent]:
                pending.append(client.publish(topic, payload, qos=1))
                sent += 1
            if len(pending) >= 5000:
                pending[-1].wait_for_publish(120)
                pending = [p for p in pending if not p.is_published()]
        for info in pending:
            info.wait_for_publish(120)
    finally:
        client.loop_stop()
        client.disconnect()


def _forget_sessions(settings, instances: list[str]) -> None:
    """End the bridges' persistent sessions, or the broker would go on queueing every later message
    for their group (each shared-subscription group gets its own copy)."""
    from pipeline.bridge import bridge_client_id
    from pipeline.mqtt import make_client

    for instance in instances:
        client = make_client(
            settings.mqtt,
            bridge_client_id(
                settings.model_copy(update={"bridge": settings.bridge.model_copy(update={"instance": instance})})
            ),
        )  # a clean session replaces the old one
        client.connect(settings.mqtt.host, settings.mqtt.port)
        client.disconnect()


def drain(settings, load: CityLoad, count: int, messages: int, service_pids: dict[str, int], console) -> dict:
    from pipeline.processes import Background
    from pipeline.status import bridge_online

    group = f"drain-{count}-{uuid.uuid4().hex[:4]}"
    ports = [free_port() for _ in range(count)]

    def start() -> list[Background]:
        return [
            Background(
                f"bridge-{count}-{k}",
                ["bridge"],
                settings,
                env={
                    "YUFLOW_BRIDGE__INSTANCE": f"{group}-{k}",
                    "YUFLOW_BRIDGE__SHARE_GROUP": group,
                    "YUFLOW_BRIDGE__HEALTH_PORT": str(port),
                },
            )
            for k, port in enumerate(ports, 1)
        ]

    bridges = start()  # subscribe once, so the broker keeps their sessions (and queues to them) while away
    bridge_online(settings, None, timeout_s=60, instances=count)
    for bridge in bridges:
        bridge.stop()
    with console.status(f"publishing {messages:,} messages while the {count} bridge(s) are away..."):
        _publish_backlog(settings, load, messages)
    bridges = start()
    meter = ProcessMeter({b.name: b.pid for b in bridges} | service_pids)  # started with the drain, not the imports
    first_s = done_s = None
    counts: list[dict] = []
    deadline = time.monotonic() + 600
    with console.status(f"{count} bridge(s) draining..."):
        while time.monotonic() < deadline:
            counts = [_health(port) for port in ports]
            received = sum(c.get("received", 0) for c in counts)
            if first_s is None and received:
                first_s = time.monotonic()
                meter.start()
            if received >= messages and all(c.get("unacknowledged", 1) == 0 for c in counts):
                done_s = time.monotonic()
                break
            meter.sample()
            time.sleep(0.05 if first_s is None else 0.2)
    processes = meter.result()
    for bridge in bridges:
        bridge.stop()
    _forget_sessions(settings, [f"{group}-{k}" for k in range(1, count + 1)])
    seconds = (done_s - first_s) if done_s and first_s else None
    result = {
        "bridges": count,
        "messages": messages,
        "drain_s": round(seconds, 2) if seconds else None,
        "messages_per_s": round(messages / seconds, 1) if seconds else None,
        "received_per_bridge": [c.get("received", 0) for c in counts],
        "processes": processes,
    }
    console.print(result)
    return result


def bridges_bench(scale: int, feeds: list[str], messages: int, counts: list[int], console) -> dict:
    from pipeline import services
    from pipeline.city import load_city
    from pipeline.settings import load_settings

    data_dir = Path(tempfile.mkdtemp(prefix="yuflow-bridges-bench-"))
    os.environ.update(
        {
            "YUFLOW_DATA_DIR": str(data_dir),
            "YUFLOW_MQTT__PORT": str(free_port()),
            "YUFLOW_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "YUFLOW_INFLUX__URL": f"http://127.0.0.1:{free_port()}",
            "YUFLOW_CITY__SCALE": str(scale),
        }
    )
    settings = load_settings()
    with console.status("building the load (one simulated day of the default city)..."):
        load = CityLoad(load_city(scale=scale), load_city(), feeds, 1.0, 0.0, set())
    result = {"scale": scale, "feeds": feeds, "cpus": os.cpu_count(), "runs": []}
    try:
        with console.status("starting services..."):
            services.up(settings)
        service_pids = {s.name: s.our_pid() for s in services.all_services(settings) if s.our_pid() is not None}
        for count in counts:
            result["runs"].append(drain(settings, load, count, messages, service_pids, console))
    finally:
        services.down(settings)
    base = result["runs"][0]["messages_per_s"]
    for run in result["runs"]:
        run["vs_first"] = round(run["messages_per_s"] / base, 2) if base and run["messages_per_s"] else None
    return result
