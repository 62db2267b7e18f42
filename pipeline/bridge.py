"""MQTT -> Kafka bridge.

Subscribes (QoS 1, persistent session) to ``<root>/#`` as a member of an MQTT shared subscription
(``bridge.share_group``: N bridges split the feed; each is an ``instance`` with its own session),
validates each message into readings (pipeline/validation.py) and forwards them to ``readings.<kind>``;
anything invalid goes to ``deadletter`` with the raw payload, topic and reason. Each pass forwards
what has arrived: the readings of one topic and partition (``reading_partition`` of the sensor id)
go as one batch record (``encode_batch``), in arrival order. A message is acknowledged to the MQTT
broker only after Kafka has acknowledged every record of its pass, so a bridge killed at any point
loses nothing: the broker redelivers what was not acknowledged when the bridge reconnects
(at-least-once).

The process around it: ``run_bridge`` here (restarts after Kafka failures), its health endpoint in
pipeline/bridge_health.py, and N bridge processes under pipeline/bridge_supervisor.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer

from pipeline.bridge_health import serve_health
from pipeline.city import City, default_city
from pipeline.mqtt import make_client
from pipeline.processes import streaming_gc
from pipeline.rules import rules, rules_or_exit
from pipeline.schemas import DeadLetter, encode_batch, utc_now
from pipeline.settings import Settings
from pipeline.topics import (
    DEADLETTER,
    READINGS,
    bridge_status_topic,
    is_bridge_status,
    mqtt_subscription,
    reading_partition,
)
from pipeline.validation import ReadingValidator, parameter_specs

log = logging.getLogger("yuflow.bridge")
DRAIN = 2000  # messages handled per wake-up of the forwarding loop
LOGGED_DEAD_LETTERS = 20  # dead-letter log lines per 10 s


@dataclass
class BridgeStats:
    received: int = 0  # MQTT messages
    forwarded: int = 0  # readings
    dead_lettered: int = 0  # dead letters


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int


class Bridge:
    def __init__(self, settings: Settings, city: City | None = None):
        self.settings = settings
        self.validator = ReadingValidator(
            city or default_city(),
            parameter_specs(rules().parameters),
            settings.mqtt.topic_root,
            max_payload_bytes=settings.bridge.max_payload_bytes,
            max_future_s=settings.bridge.max_future_s,
            dedup_window=settings.bridge.dedup_window,
        )
        self.stats = BridgeStats()
        self.mqtt_connected = False
        self.kafka_started = False
        self.unacknowledged = 0  # MQTT messages taken in and not yet acknowledged (Kafka does not have them yet)
        self._stop = asyncio.Event()
        self._failed: BaseException | None = None
        self._partition_counts: dict[str, int] = {}
        self._log_window_s, self._logged, self._unlogged = 0.0, 0, 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Inbound] = asyncio.Queue()
        max_record = self.settings.bridge.max_record_bytes
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            acks="all",
            linger_ms=5,
            max_batch_size=max_record + 1024,
            max_request_size=4 * max_record,
        )
        try:
            await producer.start()
        except Exception:
            await producer.stop()
            raise
        self.kafka_started = True
        client = self._mqtt_client(loop, inbox)
        mqtt_settings = self.settings.mqtt
        client.connect_async(mqtt_settings.host, mqtt_settings.port, keepalive=mqtt_settings.keepalive_s)
        client.loop_start()
        last_report = time.monotonic()
        try:
            while not self._stop.is_set() and self._failed is None:
                items = await self._pass(inbox)
                if items:
                    await self._forward(producer, client, items)
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    self._report()
        finally:
            self._report()
            await producer.flush()
            client.publish(
                bridge_status_topic(mqtt_settings.topic_root, self.settings.bridge.instance),
                b"offline",
                qos=1,
                retain=True,
            ).wait_for_publish(2)
            client.disconnect()
            client.loop_stop()
            await producer.stop()
        if self._failed is not None:
            raise RuntimeError("Kafka did not accept a record; stopping so MQTT redelivers it") from self._failed

    def _log_dead_letter(self, topic: str, reason: str) -> None:
        """At most LOGGED_DEAD_LETTERS lines per 10 s (a flood of bad input must not flood the log); every
        dead letter is on the deadletter topic and in InfluxDB regardless."""
        now = time.monotonic()
        if now - self._log_window_s > 10:
            if self._unlogged:
                log.warning("%d more dead letters in the last 10 s (not logged one by one)", self._unlogged)
            self._log_window_s, self._logged, self._unlogged = now, 0, 0
        if self._logged < LOGGED_DEAD_LETTERS:
            self._logged += 1
            log.warning("dead letter from %s: %s", topic, reason[:300])
        else:
            self._unlogged += 1

    def health(self) -> tuple[bool, str]:
        """(ready, why): ready while connected to MQTT and Kafka with nothing failed."""
        if self._failed is not None:
            return False, f"Kafka did not accept a record: {self._failed}"
        if not self.kafka_started:
            return False, "connecting to Kafka"
        if not self.mqtt_connected:
            return False, "not connected to MQTT"
        return True, "ok"

    def _report(self) -> None:
        log.info(
            "bridge %s received=%d forwarded=%d dead_lettered=%d",
            self.settings.bridge.instance,
            *vars(self.stats).values(),
        )

    async def _pass(self, inbox: asyncio.Queue[Inbound]) -> list[Inbound]:
        """What arrives within ``bridge.linger_ms`` of the first message (up to DRAIN), or until
        ``bridge.linger_gap_ms`` pass without one: a pass's readings of a partition make one
        record, and a record's fixed cost in Kafka and in the agents is paid once for them all,
        while a lone reading waits only the gap."""
        try:
            items = [await asyncio.wait_for(inbox.get(), timeout=0.5)]
        except TimeoutError:
            return []
        until = time.monotonic() + self.settings.bridge.linger_ms / 1000
        gap_s = self.settings.bridge.linger_gap_ms / 1000
        while len(items) < DRAIN:
            if not inbox.empty():
                items.append(inbox.get_nowait())
                continue
            left_s = min(until - time.monotonic(), gap_s)
            if left_s <= 0:
                break
            try:
                items.append(await asyncio.wait_for(inbox.get(), timeout=left_s))
            except TimeoutError:
                break
        return items

    async def _forward(self, producer: AIOKafkaProducer, client: mqtt.Client, items: list[Inbound]) -> None:
        """Validate a pass of messages, send its readings as batch records and its dead letters;
        acknowledge the messages to MQTT once Kafka has every record."""
        now = utc_now()
        batches: dict[tuple[str, int], list[bytes]] = {}
        sends = []
        for item in items:
            self.stats.received += 1
            for result in self.validator.validate_message(item.topic, item.payload, now):
                if isinstance(result, DeadLetter):
                    self.stats.dead_lettered += 1
                    self._log_dead_letter(item.topic, result.reason)
                    sends.append(
                        await producer.send(DEADLETTER, result.to_json(), key=(result.sensor_id or item.topic).encode())
                    )
                    continue
                self.stats.forwarded += 1
                topic = READINGS[result.kind]
                partition = reading_partition(result.sensor_id, await self._partitions(producer, topic))
                batches.setdefault((topic, partition), []).append(result.to_json())
        for (topic, partition), readings in batches.items():
            for chunk in _chunks(readings, self.settings.bridge.max_record_bytes):
                sends.append(await producer.send(topic, encode_batch(chunk), partition=partition))
        self.unacknowledged += len(items)
        delivered = asyncio.gather(*sends)
        delivered.add_done_callback(lambda fut: self._on_delivered(fut, client, items))

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> int:
        if topic not in self._partition_counts:
            self._partition_counts[topic] = len(await producer.partitions_for(topic))
        return self._partition_counts[topic]

    def _on_delivered(self, fut: asyncio.Future, client: mqtt.Client, items: list[Inbound]) -> None:
        self.unacknowledged -= len(items)
        if fut.cancelled() or fut.exception() is not None:
            self._failed = fut.exception() or asyncio.CancelledError()
            log.error("Kafka send failed for a pass of %d messages: %s", len(items), self._failed)
            return
        for item in items:
            client.ack(item.mid, item.qos)

    def _mqtt_client(self, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Inbound]) -> mqtt.Client:
        mqtt_settings = self.settings.mqtt
        bridge = self.settings.bridge
        client = make_client(mqtt_settings, bridge_client_id(self.settings), persistent=True, manual_ack=True)
        status_topic = bridge_status_topic(mqtt_settings.topic_root, bridge.instance)
        client.will_set(status_topic, b"offline", qos=1, retain=True)

        def on_connect(client, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                log.error("MQTT connect refused: %s", reason_code)
                return
            self.mqtt_connected = True
            client.subscribe(mqtt_subscription(mqtt_settings.topic_root, bridge.share_group), qos=mqtt_settings.qos)
            log.info("connected to MQTT %s:%d", mqtt_settings.host, mqtt_settings.port)

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            client.publish(status_topic, online_status(os.getpid()), qos=1, retain=True)

        def on_message(client, userdata, msg: mqtt.MQTTMessage):
            if is_bridge_status(msg.topic, mqtt_settings.topic_root):  # the bridges' own status, not a reading
                client.ack(msg.mid, msg.qos)
                return
            loop.call_soon_threadsafe(inbox.put_nowait, Inbound(msg.topic, msg.payload, msg.mid, msg.qos))

        def on_disconnect(client, userdata, flags, reason_code, properties):
            self.mqtt_connected = False

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        return client


def _chunks(readings: list[bytes], max_bytes: int) -> list[list[bytes]]:
    """Consecutive runs of ``readings`` whose batch record stays within ``max_bytes`` (one at least).

    >>> [len(c) for c in _chunks([b"x" * 10] * 7, 35)]  # a record of n readings: 2 + 11 n bytes
    [3, 3, 1]
    >>> _chunks([b"y" * 50], 10)  # alone, even when larger
    [[b'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy']]
    """
    chunks, current, size = [], [], 2
    for r in readings:
        if current and size + len(r) + 1 > max_bytes:
            chunks.append(current)
            current, size = [], 2
        current.append(r)
        size += len(r) + 1
    return chunks + [current] if current else chunks


def bridge_client_id(settings: Settings) -> str:
    """``<prefix>-bridge-<instance>-<secret>``: stable across the instance's restarts (its session keeps
    what the broker queued for it) but not guessable, so another client cannot take its session over
    by connecting with its id. The secret is made once per instance, in the data directory (0600)."""
    path = settings.data_path / "bridge" / f"{settings.bridge.instance}.session"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(8))
        except FileExistsError:
            pass  # another process of the same instance made it first
    return f"{settings.mqtt.client_id_prefix}-bridge-{settings.bridge.instance}-{path.read_text().strip()}"


def online_status(pid: int) -> bytes:
    """The retained status a subscribed bridge publishes; the pid tells a fresh bridge from a stale one."""
    return f"online pid={pid}".encode()


def run_bridge(settings: Settings, max_backoff_s: float = 30.0) -> None:
    """Run until SIGINT/SIGTERM. When Kafka fails (a record not accepted, or no broker to start with),
    the bridge stops without acknowledging what Kafka does not have, says "offline", and starts again
    after a backoff (1 s, doubling to ``max_backoff_s``): the MQTT broker redelivers the rest."""
    rules_or_exit("yuflow bridge")  # a wrong rule file stops it here, not in the retry loop

    async def main() -> None:
        streaming_gc()
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        delay_s = 1.0
        state = {"bridge": None, "trouble": "starting"}  # what the health endpoint reports
        if settings.bridge.health_port:
            await serve_health(settings, state)
        while not stopping.is_set():
            bridge = Bridge(settings)
            state.update(bridge=bridge, trouble="")
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda b=bridge: (stopping.set(), b.stop()))
            started = time.monotonic()
            try:
                await bridge.run()
                return
            except Exception as error:  # Kafka away: wait and start again, never exit on it
                if stopping.is_set():
                    return
                delay_s = 1.0 if time.monotonic() - started > 60 else min(delay_s * 2, max_backoff_s)
                log.error(
                    "bridge %s: %s (%s); starting again in %.0f s",
                    settings.bridge.instance,
                    error,
                    error.__cause__ or type(error).__name__,
                    delay_s,
                )
                state["trouble"] = (
                    f"{error} ({error.__cause__ or type(error).__name__}); starting again in {delay_s:.0f} s"
                )
                try:
                    await asyncio.wait_for(stopping.wait(), delay_s)
                except TimeoutError:
                    pass

    asyncio.run(main())
