"""The bridge process's health endpoint (pipeline/bridge_health.py): 503 with the reason until the
bridge forwards, then 200 with its counts."""

from __future__ import annotations

from pipeline.bridge import Bridge
from pipeline.bridge_health import serve_health
from pipeline.settings import load_settings


def test_the_bridge_health_endpoint_says_not_ready_with_the_reason_until_it_forwards(tmp_path):
    import asyncio
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings(data_dir=tmp_path, bridge={"health_port": port, "instance": "h1"})

    async def get(path: str = "/health") -> tuple[int, dict]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, _, body = (await reader.read()).partition(b"\r\n\r\n")
        writer.close()
        return int(head.split()[1]), json.loads(body)

    async def scenario() -> list:
        state = {"bridge": None, "trouble": "Kafka did not accept a record (KafkaTimeoutError); starting again in 4 s"}
        server = await serve_health(settings, state)
        answers = [await get()]
        bridge = Bridge(settings)
        state.update(bridge=bridge, trouble="")
        answers.append(await get())  # Kafka up, MQTT not yet
        bridge.kafka_started = bridge.mqtt_connected = True
        bridge.stats.received, bridge.unacknowledged = 12, 3
        answers += [await get(), await get("/other")]
        server.close()
        return answers

    (down, status), (mqtt_down, _), (ok, body), (missing, _) = asyncio.run(scenario())
    assert (
        down == 503 and not status["ready"] and "KafkaTimeoutError" in status["reason"] and status["instance"] == "h1"
    )
    assert mqtt_down == 503
    assert ok == 200 and body["ready"] and body["received"] == 12 and body["unacknowledged"] == 3
    assert missing == 404
