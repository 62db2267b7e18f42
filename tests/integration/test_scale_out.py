"""Several bridges on one feed (`yuflow bridge --instances 2`, an MQTT shared subscription), on
services of their own: both take a share, and when one is killed (SIGKILL) in the middle of a
stream the supervisor starts it again and the broker hands it what it had queued for it, so every
reading reaches Kafka."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.city import default_city
from pipeline.processes import wait_until
from pipeline.schemas import Kind, Quantity, Reading, parse_batch
from pipeline.status import bridge_statuses
from pipeline.topics import READINGS
from sensors_sim.publisher import publish, reading_messages
from tests.integration.conftest import own_services
from tests.integration.test_end_to_end import consume_all

pytestmark = pytest.mark.integration
READINGS_SENT = 6000


def readings() -> list[Reading]:
    city = default_city()
    stations = [s for s in city.stations.values() if not s.treated][:30]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    return [
        Reading(
            sensor_id=f"wq-{s.id}",
            kind=Kind.water,
            station=s.id,
            district=s.district,
            ts=start + timedelta(seconds=60 * i),
            values={"do": Quantity(value=8.0, unit="mg/L")},
        )
        for i in range(READINGS_SENT // len(stations))
        for s in stations
    ]


def test_two_bridges_split_the_feed_and_a_killed_one_comes_back_with_its_share(tmp_path):
    with own_services(tmp_path, bridges=2) as settings:
        before = bridge_statuses(settings)
        pids = {name: int(status.split("pid=")[1]) for name, status in before.items() if status.startswith("online")}
        assert len(pids) == 2, before
        sent = readings()
        acked: list[int] = []
        sender = threading.Thread(
            target=lambda: acked.append(
                publish(reading_messages(sent, settings.mqtt.topic_root), settings.mqtt, timeout_s=120)
            )
        )
        sender.start()
        time.sleep(0.3)
        victim = sorted(pids)[0]
        os.kill(
            pids[victim], signal.SIGKILL
        )  # mid-stream: what it had not acknowledged, the broker keeps for its session
        sender.join(150)
        assert acked == [len(sent)]

        want = {(r.sensor_id, r.ts) for r in sent}

        def forwarded(records) -> set:
            return {(r.sensor_id, r.ts) for value in records for r in parse_batch(value)} & want

        got = asyncio.run(consume_all(settings, READINGS[Kind.water], 120, lambda records: forwarded(records) >= want))
        missing = want - forwarded(got)
        assert not missing, f"{len(missing)} of {len(want)} readings never reached Kafka"
        after = wait_until(
            lambda: (s := bridge_statuses(settings)) and s.get(victim, "").startswith("online") and s,
            30,
            what="the killed bridge started again",
        )
        assert int(after[victim].split("pid=")[1]) != pids[victim]

        def shares() -> dict[str, int] | None:  # each bridge logs what it received every 10 s
            log = (settings.data_path / "logs" / "bridge.log").read_text(errors="replace")
            found = {
                name: max(map(int, re.findall(rf"bridge {re.escape(name)} received=(\d+)", log)), default=0)
                for name in pids
            }
            return found if all(found.values()) else None

        shares = wait_until(shares, 40, what="both bridges' counts in the log")
        print(f"\n[scale out] killed {victim} (pid {pids[victim]}); readings received per bridge: {shares}")
