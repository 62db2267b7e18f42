"""The bad-input corpus (tests/unit/test_bad_input.py) over MQTT to the running bridge: every message is
forwarded or dead-lettered with its reason, exactly once, and the bridge keeps running.

The corpus's readings are all stamped on one day in March 2024 (one minute each) that no other test
uses, so what the bridge forwarded for it is told apart from everything else on the readings topics;
its dead letters are matched to the messages sent by topic and payload.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.schemas import PAYLOAD_KEEP_CHARS, DeadLetter, Kind, Reading, parse_batch
from pipeline.settings import BridgeSettings
from pipeline.topics import DEADLETTER, READINGS
from sensors_sim.publisher import publish
from tests.unit.test_bad_input import ACCEPTED, CODES, SENSOR, T0, Case, corpus, enc, reaches_bridge, reading, topic

pytestmark = pytest.mark.integration

TOPICS = (DEADLETTER, *READINGS.values())
# corpus cases whose topic the bridge never sees: outside its subscription <root>/#, or not a
# topic a client may publish to (wildcards, NUL); the unit tests cover them
UNPUBLISHABLE = {
    "leading slash",
    "another root",
    "empty topic",
    "wildcards in the topic",
    "wildcard as the kind",
    "NUL in the topic",
}


async def consume(settings, topics: tuple[str, ...], timeout_s: float, stop) -> list[tuple[str, bytes]]:
    """(topic, value) of every record on ``topics`` from the beginning, until ``stop(records)`` or the timeout."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.kafka.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not stop(records):
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                records += [(tp.topic, r.value) for r in batch]
    finally:
        await consumer.stop()
    return records


def dead_letter_key(source_topic: str, payload: bytes) -> tuple[str, str, int]:
    """What a dead letter keeps of its message: the topic, the payload as text (cut at 4 KiB) and its
    size; of a batch of one sample (a JSON array), the sample's."""
    try:
        sample = orjson.loads(payload)
        if isinstance(sample, list) and len(sample) == 1 and len(payload) <= BridgeSettings().max_payload_bytes:
            payload = orjson.dumps(sample[0])
    except orjson.JSONDecodeError:
        pass
    return source_topic, payload.decode("utf-8", errors="backslashreplace")[:PAYLOAD_KEEP_CHARS], len(payload)


def key_of(d: DeadLetter) -> tuple[str, str, int]:
    return d.source_topic, d.payload, d.payload_bytes


class Ledger:
    """What was sent and what each message must become; ``update`` tallies consumed records against it."""

    def __init__(self, cases: list[Case]):
        self.cases = cases
        self.messages = [(t, p, expect, case) for case in cases for t, p, expect in case.messages()]
        accepted = [
            r
            for _, p, expect, _ in self.messages
            if expect == ACCEPTED
            for r in (parse_batch(p) if p.startswith(b"[") else [Reading.model_validate_json(p)])
        ]
        self.to_forward = Counter((r.sensor_id, r.ts) for r in accepted)
        self.to_dead_letter = {
            dead_letter_key(t, p): (case, p) for t, p, expect, case in self.messages if expect != ACCEPTED
        }
        self.ours = {
            dead_letter_key(t, p) for t, p, _, _ in self.messages
        }  # accepted ones too: none may be dead-lettered
        self.forwarded: list[Reading] = []  # every reading on the corpus's day
        self.dead: list[DeadLetter] = []  # every dead letter of a message sent here
        self.others: list[Reading] = []  # readings of the day after (the reading sent after the corpus)
        self._seen = 0

    def update(self, records: list[tuple[str, bytes]]) -> Ledger:
        for kafka_topic, value in records[self._seen :]:
            if kafka_topic == DEADLETTER:
                d = DeadLetter.model_validate_json(value)
                if d.stage == "bridge" and key_of(d) in self.ours:
                    self.dead.append(d)
            elif b"2024-03-1" in value:
                for r in parse_batch(value):
                    if T0 <= r.ts < T0 + timedelta(days=1):
                        self.forwarded.append(r)
                    elif T0 <= r.ts < T0 + timedelta(days=2):
                        self.others.append(r)
        self._seen = len(records)
        return self

    def complete(self) -> bool:
        return set(self.to_forward) <= {(r.sensor_id, r.ts) for r in self.forwarded} and set(self.to_dead_letter) <= {
            key_of(d) for d in self.dead
        }

    def check(self) -> None:
        """Each accepted message forwarded once, each other one dead-lettered once with its code and reason."""
        assert Counter((r.sensor_id, r.ts) for r in self.forwarded) == self.to_forward
        for r in self.forwarded:
            assert r.kind is Kind.water and r.values["do"].value == pytest.approx(8.0) and r.values["do"].unit == "mg/L"
        assert Counter(key_of(d) for d in self.dead) == Counter(list(self.to_dead_letter))  # each once
        for d in self.dead:
            case, payload = self.to_dead_letter[key_of(d)]
            assert d.code == case.expect, (case.name, d.reason)
            assert d.reason.strip() and case.words in d.reason, (case.name, d.reason)
            assert d.truncated == (len(payload.decode("utf-8", errors="backslashreplace")) > PAYLOAD_KEEP_CHARS), (
                case.name
            )


@pytest.fixture(scope="module")
def ledger(stack) -> Ledger:
    settings = stack.settings
    root = settings.mqtt.topic_root
    everything = corpus(root, settings.bridge.max_payload_bytes)
    cases = [c for c in everything if reaches_bridge(c.topic, root)]
    ledger_ = Ledger(cases)
    assert {expect for _, _, expect, _ in ledger_.messages} - {ACCEPTED} == CODES  # every code travels
    assert {c.name for c in everything} - {c.name for c in cases} == UNPUBLISHABLE
    sent = publish([(t, p) for t, p, _, _ in ledger_.messages], settings.mqtt)
    assert sent == len(ledger_.messages)
    return ledger_


def test_every_bad_message_is_forwarded_or_dead_lettered_exactly_once_with_its_reason(stack, ledger):
    asyncio.run(consume(stack.settings, TOPICS, 90, lambda records: ledger.update(records).complete()))
    assert ledger.complete(), stack.bridge.log_tail(40)
    ledger.check()


def test_the_bridge_keeps_running_and_forwards_a_valid_reading_afterwards(stack, ledger):
    assert stack.bridge.alive(), stack.bridge.log_tail(40)
    after = Reading.model_validate_json(enc(reading(24 * 60 + 1)))  # the next day: not the corpus's
    assert publish([(topic(root=stack.settings.mqtt.topic_root), after.to_json())], stack.settings.mqtt) == 1

    fresh = Ledger(ledger.cases)  # a second pass over the topics, from the beginning
    asyncio.run(
        consume(stack.settings, TOPICS, 60, lambda records: fresh.update(records).complete() and after in fresh.others)
    )
    assert after in fresh.others, stack.bridge.log_tail(40)
    assert fresh.others.count(after) == 1 and after.sensor_id == SENSOR
    fresh.check()  # still exactly once each: nothing of the corpus came late
    assert stack.bridge.alive()
