"""Send simulator messages: to MQTT at a speed factor (or as fast as possible), or straight to Kafka."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterable

from pipeline.mqtt import make_client
from pipeline.schemas import Reading
from pipeline.settings import MqttSettings, Settings
from pipeline.topics import mqtt_topic

Message = tuple[int, str, bytes]  # (send_ms, topic, payload)


def reading_messages(readings: Iterable[Reading], root: str) -> Iterable[tuple[str, bytes]]:
    for r in readings:
        yield mqtt_topic(root, r.district, r.kind, r.sensor_id), r.to_json()


def publish(
    messages: Iterable[tuple[str, bytes]], settings: MqttSettings, qos: int | None = None, timeout_s: float = 60
) -> int:
    """Publish (topic, payload) pairs as fast as possible; returns how many the broker acknowledged."""
    return publish_timed(((0, t, p) for t, p in messages), settings, speed=None, qos=qos, timeout_s=timeout_s)


def publish_timed(
    messages: Iterable[Message],
    settings: MqttSettings,
    speed: float | None = None,
    qos: int | None = None,
    timeout_s: float = 60,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Publish in send-time order; ``speed`` = simulated seconds per wall second (None: flat out).

    Returns how many messages the broker acknowledged (all of them, for QoS 0, once sent).
    """
    qos = settings.qos if qos is None else qos
    client = make_client(settings, f"{settings.client_id_prefix}-sim-{uuid.uuid4().hex[:8]}")
    acked = 0
    lock = threading.Lock()

    def on_publish(client, userdata, mid, reason_code, properties):
        nonlocal acked
        with lock:
            acked += 1

    client.on_publish = on_publish
    client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    client.loop_start()
    sent = 0
    try:
        first_ms, started = None, time.monotonic()
        for send_ms, topic, payload in messages:
            if speed is not None:
                first_ms = send_ms if first_ms is None else first_ms
                lag_s = (send_ms - first_ms) / 1000 / speed - (time.monotonic() - started)
                if lag_s > 0:
                    time.sleep(lag_s)
            client.publish(topic, payload, qos=qos)
            sent += 1
            if on_sent is not None and sent % 500 == 0:
                on_sent(500)
        if on_sent is not None:
            on_sent(sent % 500)
        deadline = time.monotonic() + timeout_s
        while acked < sent and time.monotonic() < deadline:
            time.sleep(0.02)
        return acked
    finally:
        client.disconnect()
        client.loop_stop()


async def _produce(
    messages: Iterable[Message], bootstrap: str, on_sent: Callable[[int], None] | None, per_record: int = 100
) -> int:
    from aiokafka import AIOKafkaProducer

    from pipeline.schemas import Kind, encode_batch
    from pipeline.topics import READINGS, reading_partition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, acks=1)
    await producer.start()
    count = 0
    pending: dict[
        tuple[str, int], list[bytes]
    ] = {}  # batch records as the bridge makes them, ``per_record`` readings each
    partitions: dict[str, int] = {}
    try:
        for _, topic, payload in messages:
            _, _, kind, sensor_id = topic.split("/")
            kafka_topic = READINGS[Kind(kind)]
            if kafka_topic not in partitions:
                partitions[kafka_topic] = len(await producer.partitions_for(kafka_topic))
            target = (kafka_topic, reading_partition(sensor_id, partitions[kafka_topic]))
            batch = pending.setdefault(target, [])
            batch.append(payload)
            if len(batch) >= per_record:
                await producer.send(target[0], encode_batch(pending.pop(target)), partition=target[1])
            count += 1
            if on_sent is not None and count % 5000 == 0:
                on_sent(5000)
        for (kafka_topic, partition), batch in pending.items():
            await producer.send(kafka_topic, encode_batch(batch), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    if on_sent is not None:
        on_sent(count % 5000)
    return count


def produce_to_kafka(
    messages: Iterable[Message], settings: Settings, on_sent: Callable[[int], None] | None = None
) -> int:
    """Readings straight into ``readings.<kind>`` as batch records (no MQTT, no bridge): for benchmarks
    and replays. Unvalidated: the agents expect what the bridge forwards."""
    return asyncio.run(_produce(messages, settings.kafka.bootstrap, on_sent))
