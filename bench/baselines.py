"""Raw baselines to compare the pipeline with: mosquitto, Kafka and InfluxDB each alone."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid


def mqtt_baseline(settings, payloads: list[tuple[str, bytes]]) -> dict:
    """mosquitto alone: one QoS 1 publisher, one QoS 1 subscriber; messages/s through both (under the
    topic root, which the broker's ACL lets the services' login use; before the bridge subscribes)."""
    from pipeline.mqtt import make_client

    prefix = f"{settings.mqtt.topic_root}/bench/"

    received = 0
    done = threading.Event()
    sub = make_client(settings.mqtt, f"bench-sub-{uuid.uuid4().hex[:6]}")

    def on_message(client, userdata, msg):
        nonlocal received
        received += 1
        if received >= len(payloads):
            done.set()

    sub.on_message = on_message
    sub.connect(settings.mqtt.host, settings.mqtt.port)
    sub.subscribe(prefix + "#", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    pub = make_client(settings.mqtt, f"bench-pub-{uuid.uuid4().hex[:6]}")
    pub.connect(settings.mqtt.host, settings.mqtt.port)
    pub.loop_start()
    started = time.perf_counter()
    for topic, payload in payloads:
        while len(pub._out_messages) > 5000:  # paho queues without bound; keep the window like a real client
            time.sleep(0.001)
        pub.publish(prefix + topic, payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - started
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return {"messages": received, "seconds": round(elapsed, 2), "messages_per_s": round(received / elapsed)}


async def kafka_baseline(bootstrap: str, payloads: list[bytes], partitions: int) -> dict:
    """Kafka alone (aiokafka): ``payloads`` produced to a new topic with ``acks=all``, then consumed
    from the start; records/s each way."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench.raw.{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, partitions, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic, p, key=str(i % 997).encode()) for i, p in enumerate(payloads)]
    await producer.flush()
    await asyncio.gather(*futures)
    produced_s = time.perf_counter() - started
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=1 << 22,
    )
    await consumer.start()
    got = 0
    started = time.perf_counter()
    deadline = started + 120
    while got < len(payloads) and time.perf_counter() < deadline:
        for records in (await consumer.getmany(timeout_ms=500, max_records=20000)).values():
            got += len(records)
    consumed_s = time.perf_counter() - started
    await consumer.stop()
    return {
        "records": len(payloads),
        "produce_per_s": round(len(payloads) / produced_s),
        "consume_per_s": round(got / consumed_s),
    }


def influx_baseline(settings, lines: list[str], batch: int) -> dict:
    """InfluxDB alone: line protocol posted in batches of ``batch`` points, one after another."""
    import urllib.request

    url = f"{settings.influx.url}/write?db=bench&precision=ns"
    from pipeline.influx import influxql

    influxql(settings.influx, "CREATE DATABASE bench")
    started = time.perf_counter()
    for i in range(0, len(lines), batch):
        request = urllib.request.Request(url, data="\n".join(lines[i : i + batch]).encode(), method="POST")
        urllib.request.urlopen(request, timeout=60).read()
    elapsed = time.perf_counter() - started
    return {"points": len(lines), "points_per_s": round(len(lines) / elapsed)}
