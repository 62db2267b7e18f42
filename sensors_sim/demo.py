"""``yuflow demo``: the whole data path on embedded services, in well under two minutes.

Starts the services, a Faust worker and the bridge; publishes a short simulated feed over MQTT with one
dissolved-oxygen sag and one malformed payload; shows the warning as it arrives; queries InfluxDB;
stops what it started (unless --keep).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from rich.console import Console
from rich.panel import Panel

from pipeline import services
from pipeline.city import default_city
from pipeline.influx import influx_time, influxql
from pipeline.operators import follow_warnings, warnings_table
from pipeline.processes import Background, wait_until
from pipeline.schemas import Warning, utc_now
from pipeline.settings import Settings
from pipeline.status import bridge_online
from sensors_sim.publisher import publish_timed
from sensors_sim.recording import Recording, messages
from sensors_sim.scenario import load_scenario
from sensors_sim.simulation import simulate

SAG_SENSOR = "wq-puhe-zhaixi-bridge"


def demo_recording() -> tuple[Recording, int]:
    """The simulator's 'demo' scenario, and the shift (ms) that makes its last reading 'now'."""
    city = default_city()
    recording = simulate(load_scenario("demo", city=city), city)
    return recording, int(utc_now().timestamp() * 1000) - int(recording.frame["ts_ms"].max())


async def sag_warnings(settings: Settings, since, timeout_s: float, worker: Background) -> list[Warning]:
    """The warnings of the Puhe incident up to the one that names the traced source (or what came
    within ``timeout_s``). Empty when the worker dies first."""
    found: list[Warning] = []

    async def collect() -> None:
        try:
            async with asyncio.timeout(timeout_s):
                async for warning in follow_warnings(settings, from_beginning=True):
                    if warning.ts < since or not warning.incident_id.startswith("water:puhe:"):
                        continue
                    found.append(warning)
                    if warning.suspects:  # traced to its source: the story is complete
                        return
        except TimeoutError:
            pass

    async def worker_exits() -> None:
        while worker.alive():
            await asyncio.sleep(0.5)

    tasks = [asyncio.create_task(collect()), asyncio.create_task(worker_exits())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return found if tasks[0] in done else []


def _count(settings: Settings, query: str) -> int:
    return sum(row[1] for s in influxql(settings.influx, query) for row in s["values"])


def malformed_reason(settings: Settings) -> str:
    """The latest dead-letter reason in InfluxDB (the demo's malformed payload)."""
    series = influxql(settings.influx, "SELECT last(reason) FROM deadletter")
    return series[0]["values"][0][1] if series else "?"


def run_demo(settings: Settings, console: Console, keep: bool = False, timeout_s: float = 90) -> int:
    started = time.monotonic()
    background: list[Background] = []

    def step(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:5.1f}s[/] {text}")

    try:
        with console.status("starting MQTT, Kafka and InfluxDB..."):
            statuses = services.up(settings)
        step("services: " + ", ".join(f"{s.name} {s.state} at {s.address}" for s in statuses))
        background.append(Background("worker", ["worker"], settings))
        background.append(Background("bridge", ["bridge"], settings))
        with console.status("waiting for the bridge..."):
            bridge_online(settings, background[1].pid)
        step(f"worker (pid {background[0].pid}) and bridge (pid {background[1].pid}) running")

        recording, shift = demo_recording()
        frame = recording.frame
        valid = frame[~frame["malformed"]]
        first_ts = datetime.fromtimestamp((int(frame["ts_ms"].min()) + shift) / 1000, UTC)
        since = influx_time(first_ts)
        readings_before = _count(settings, f"SELECT count(\"do\") FROM readings WHERE time >= '{since}'")
        deadletters_before = _count(settings, f"SELECT count(\"count\") FROM deadletter WHERE time >= '{since}'")
        acknowledged = publish_timed(messages(frame, settings.mqtt.topic_root, shift), settings.mqtt)
        sag = recording.truth.of_type("do_sag")[0]
        step(
            f"published {acknowledged} MQTT messages from the simulator's 'demo' scenario: "
            f"{valid['msg'].nunique()} readings "
            f"({len(valid)} values) from {valid['sensor_id'].nunique()} water stations, a DO sag from {sag.source_id} "
            f"reaching {', '.join(sag.affected_sensors)}, "
            f"and {int(frame.groupby('msg')['malformed'].first().sum())} malformed payload"
        )
        expected_readings = int(valid[valid["parameter"] == "do"]["msg"].nunique())

        with console.status("waiting for the warning..."):
            warnings = asyncio.run(sag_warnings(settings, first_ts, timeout_s, background[0]))
        if not any(w.suspects for w in warnings):
            state = (
                "the worker exited"
                if not background[0].alive()
                else f"no warning within {timeout_s:g} s"
                if not warnings
                else f"no warning named the traced source within {timeout_s:g} s"
            )
            console.print(f"[red]demo failed: {state}[/]; worker log:\n{background[0].log_tail(40)}")
            return 1
        step(
            f"warnings received on the 'warnings' topic (ground truth: first crossing "
            f"{sag.expected_detection:%H:%M} UTC + shift, worst tier {sag.expected_tier}):"
        )
        console.print(warnings_table(warnings, title="Operators' warning stream"))
        shown = next((w for w in warnings if w.suspects), max(warnings, key=lambda w: w.tier.rank))
        suspects = [
            f"  {i}. {s.name} ({s.type}, {s.probability:.0%}): {s.distance_km:.1f} km, {s.travel_time_h:.1f} h upstream"
            for i, s in enumerate(shown.suspects[:3], 1)
        ]
        console.print(
            Panel(
                "\n".join(
                    [
                        f"incident {shown.incident_id}",
                        f"levels: {', '.join(shown.levels)}",
                        f"departments: {', '.join(shown.departments)}",
                    ]
                    + (["suspected sources (traced upstream):", *suspects] if suspects else [])
                    + ["checklist:"]
                    + [f"  - {item}" for item in shown.checklist]
                ),
                title=shown.title,
            )
        )
        if shown.suspects:
            step(f"ground truth source: {sag.source_id} -> traced top-1: {shown.suspects[0].source_id}")

        query = f"SELECT count(\"do\") AS readings FROM readings WHERE time >= '{since}' GROUP BY district"
        deadletters = f"SELECT count(\"count\") AS deadletters FROM deadletter WHERE time >= '{since}' GROUP BY code"

        def total(series: list[dict]) -> int:
            return sum(row[1] for s in series for row in s["values"])

        # earlier demo runs may have written into the same window: count what this run adds
        with console.status("waiting for InfluxDB to hold every reading..."):
            series = wait_until(
                lambda: (
                    (found := influxql(settings.influx, query))
                    and total(found) - readings_before >= expected_readings
                    and found
                ),
                30,
                interval_s=0.5,
                what="the readings in InfluxDB",
            )
            dead = wait_until(
                lambda: (
                    (found := influxql(settings.influx, deadletters)) and total(found) > deadletters_before and found
                ),
                15,
                interval_s=0.5,
                what="the dead letter in InfluxDB",
            )
        from pipeline.cli.inspection import series_table

        step(f"InfluxQL> {query}")
        console.print(series_table(series))
        step(f"this run: {total(series) - readings_before} readings in InfluxDB (published {expected_readings})")
        step(f"InfluxQL> {deadletters}")
        console.print(series_table(dead))
        step(f"this run: {total(dead) - deadletters_before} dead letter(s), reason: {malformed_reason(settings)}")
        step("[green]demo complete[/]")
        return 0
    finally:
        if keep:
            console.print(
                "--keep: services, worker and bridge left running (stop: yuflow services down; kill the pids above)"
            )
        else:
            for process in reversed(background):
                process.stop()
            services.down(settings)
            step("stopped what the demo started")
