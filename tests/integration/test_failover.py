"""Two workers (one consumer group) and two bridges (`yuflow bridge --instances 2`) under the oil
spill at 3,000x, on services of their own; one worker and one bridge are killed (SIGKILL) in the
middle of it. The surviving worker takes over the dead one's partitions (its tables restored from
their changelogs), the supervisor starts the bridge again (the broker hands it what it queued for its
session): every water reading reaches InfluxDB, and every warning is delivered once per
(warning, department, channel)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter

import pytest

from pipeline.city import default_city
from pipeline.influx import influxql
from pipeline.processes import Background, wait_until
from pipeline.status import bridge_statuses
from sensors_sim.scenario import load_scenario
from sensors_sim.simulation import simulate
from tests.integration.conftest import own_services, yuflow

pytestmark = pytest.mark.integration


def water_readings_expected() -> int:
    """Distinct (sensor, time) water readings with a DO value that the bridge accepts (not malformed)."""
    city = default_city()
    frame = simulate(load_scenario("ruxi_oil_spill", city=city), city).frame
    water = frame[(frame["kind"] == "water") & ~frame["malformed"] & (frame["parameter"] == "do")]
    return len(water.drop_duplicates(["sensor_id", "ts_ms"]))


def test_a_worker_and_a_bridge_killed_mid_stream_lose_no_reading_and_deliver_each_warning_once(tmp_path):
    expected = water_readings_expected()
    processes: list[Background] = []
    with own_services(tmp_path, bridges=2, workers=2, processes=processes) as settings:
        time.sleep(10)  # the two workers settle into one group
        sender = threading.Thread(target=lambda: yuflow("sim", "run", "ruxi_oil_spill", "--speed", "3000"))
        sender.start()
        time.sleep(6)
        worker = next(p for p in processes if p.name == "worker-2")
        worker.kill()  # SIGKILL of its process group
        bridges = {
            name: int(s.split("pid=")[1]) for name, s in bridge_statuses(settings).items() if s.startswith("online")
        }
        victim = sorted(bridges)[0]
        os.kill(bridges[victim], signal.SIGKILL)
        sender.join(120)

        count = 'SELECT count("do") FROM readings WHERE "kind" = \'water\' AND time > now() - 30d'

        def stored() -> int | None:
            rows = influxql(settings.influx, count)
            n = rows[0]["values"][0][1] if rows else 0
            return n if n >= expected else None

        wait_until(stored, 180, what=f"all {expected} water readings in InfluxDB")

        def traced() -> list[dict] | None:
            lines = [
                json.loads(x)
                for x in yuflow("warnings", "tail", "--from-beginning", "--json", "--timeout", "5").splitlines()
                if x.startswith("{")
            ]
            return (
                lines
                if any(w["suspects"] and w["suspects"][0]["source_id"] == "ruxi-food-factory" for w in lines)
                else None
            )

        lines = wait_until(traced, 120, what="the warning naming the food factory")
        warnings = {w["warning_id"]: w for w in lines}
        query = (
            'SELECT "warning_id", "department", "channel" FROM deliveries WHERE "channel" = \'topic\' '
            "AND time > now() - 30d"
        )

        missing: set = set()

        def delivered() -> Counter | None:
            nonlocal missing
            made = Counter((r[1], r[2], r[3]) for s in influxql(settings.influx, query) for r in s["values"])
            missing = {(w["warning_id"], d, "topic") for w in warnings.values() for d in w["departments"]} - set(made)
            return made if not missing else None

        try:
            made = wait_until(delivered, 90, what="every warning delivered to each of its departments")
        except TimeoutError:
            raise AssertionError(f"not delivered: {sorted(missing)}") from None
        print(
            f"\n[failover] killed worker-2 and bridge {victim}; {expected} water readings stored; "
            f"{len(warnings)} warnings ({len(lines)} records), {sum(made.values())} topic deliveries"
        )
        assert max(made.values()) == 1, [k for k, n in made.items() if n > 1]
        assert len(lines) == len(warnings), "a warning was issued twice"
