"""Publish readings (or raw payloads) to MQTT at QoS 1 and wait until the broker has them all."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from pipeline.mqtt import make_client
from pipeline.schemas import Reading
from pipeline.settings import MqttSettings
from pipeline.topics import mqtt_topic


def reading_messages(readings: Iterable[Reading], root: str) -> Iterable[tuple[str, bytes]]:
    for r in readings:
        yield mqtt_topic(root, r.district, r.kind, r.sensor_id), r.to_json()


def publish(messages: Iterable[tuple[str, bytes]], settings: MqttSettings, qos: int | None = None, timeout_s: float = 30) -> int:
    """Publish (topic, payload) pairs; returns how many the broker acknowledged."""
    client = make_client(settings, f"{settings.client_id_prefix}-sim-{uuid.uuid4().hex[:8]}")
    client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=settings.qos if qos is None else qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout_s)
        return sum(info.is_published() for info in infos)
    finally:
        client.disconnect()
        client.loop_stop()
