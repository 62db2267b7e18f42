"""``yuflow demo``: the whole data path on embedded services, in well under two minutes.

Starts the services, a Faust worker and the bridge; publishes a short simulated feed over MQTT with one
dissolved-oxygen sag and one malformed payload; shows the warning as it arrives; queries InfluxDB;
stops what it started (unless --keep).
"""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.panel import Panel

from pipeline import services
from pipeline.bridge import online_status
from pipeline.city import default_city
from pipeline.influx import influxql
from pipeline.mqtt import make_client
from pipeline.operators import follow_warnings, warnings_table
from pipeline.processes import Background, wait_until
from pipeline.schemas import Warning, utc_now
from pipeline.settings import Settings
from pipeline.topics import bridge_status_topic
from sensors_sim.demo_feed import SAG_SENSOR, demo_feed, malformed_message
from sensors_sim.publisher import publish, reading_messages


def bridge_online(settings: Settings, pid: int, timeout_s: float = 30) -> None:
    """Wait for bridge ``pid`` to say it is online (then it is subscribed: nothing published is lost)."""
    seen: list[bytes] = []
    client = make_client(settings.mqtt, f"{settings.mqtt.client_id_prefix}-demo-status")
    client.on_message = lambda c, u, msg: seen.append(msg.payload)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(bridge_status_topic(settings.mqtt.topic_root), qos=1)
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    try:
        wait_until(lambda: online_status(pid) in seen, timeout_s, what="the bridge to come online")
    finally:
        client.disconnect()
        client.loop_stop()


async def first_sag_warning(settings: Settings, since, timeout_s: float, worker: Background) -> Warning | None:
    """The demo's DO warning, or None on timeout or when the worker dies first."""

    async def find() -> Warning | None:
        async for warning in follow_warnings(settings, from_beginning=True, timeout_s=timeout_s):
            if warning.ts >= since and warning.alert_ids[0].startswith(f"{SAG_SENSOR}:do:"):
                return warning
        return None

    async def worker_exits() -> None:
        while worker.alive():
            await asyncio.sleep(0.5)

    tasks = [asyncio.create_task(find()), asyncio.create_task(worker_exits())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return tasks[0].result() if tasks[0] in done else None


def _count(settings: Settings, query: str) -> int:
    return sum(row[1] for s in influxql(settings.influx, query) for row in s["values"])


def malformed_reason(settings: Settings) -> str:
    """The latest dead-letter reason in InfluxDB (the demo's malformed payload)."""
    series = influxql(settings.influx, "SELECT last(reason) FROM deadletter")
    return series[0]["values"][0][1] if series else "?"


def run_demo(settings: Settings, console: Console, keep: bool = False, timeout_s: float = 90) -> int:
    started = time.monotonic()
    background: list[Background] = []
    city = default_city()

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

        feed = demo_feed(city, end=utc_now())
        since = feed.readings[0].ts.isoformat().replace("+00:00", "Z")
        readings_before = _count(settings, f"SELECT count(\"do\") FROM readings WHERE time >= '{since}'")
        deadletters_before = _count(settings, f"SELECT count(\"count\") FROM deadletter WHERE time >= '{since}'")
        messages = list(reading_messages(feed.readings, settings.mqtt.topic_root))
        messages.insert(len(messages) // 3, malformed_message(city, settings.mqtt.topic_root))
        acknowledged = publish(messages, settings.mqtt)
        step(
            f"published {acknowledged} MQTT messages: {len(feed.readings)} readings from "
            f"{len({r.sensor_id for r in feed.readings})} water stations, a DO sag at {SAG_SENSOR} "
            f"{feed.sag_start:%H:%M}-{feed.sag_end:%H:%M} UTC, and 1 malformed payload"
        )

        with console.status("waiting for the warning..."):
            warning = asyncio.run(first_sag_warning(settings, feed.readings[0].ts, timeout_s, background[0]))
        if warning is None:
            state = "worker exited" if not background[0].alive() else f"no warning within {timeout_s:g} s"
            console.print(f"[red]{state}[/]; worker log:\n{background[0].log_tail(40)}")
            return 1
        step("warning received on the 'warnings' topic:")
        console.print(warnings_table([warning], title="Operators' warning stream"))
        console.print(
            Panel(
                "\n".join([f"incident {warning.incident_id}", f"levels: {', '.join(warning.levels)}", "checklist:"]
                          + [f"  - {item}" for item in warning.checklist]),
                title=warning.title,
            )
        )

        since = feed.readings[0].ts.isoformat().replace("+00:00", "Z")
        query = f"SELECT count(\"do\") AS readings FROM readings WHERE time >= '{since}' GROUP BY station"
        deadletters = f"SELECT count(\"count\") AS deadletters FROM deadletter WHERE time >= '{since}' GROUP BY code"

        def total(series: list[dict]) -> int:
            return sum(row[1] for s in series for row in s["values"])

        # earlier demo runs may have written into the same window: count what this run adds
        with console.status("waiting for InfluxDB to hold every reading..."):
            series = wait_until(
                lambda: (found := influxql(settings.influx, query)) and total(found) - readings_before >= len(feed.readings) and found,
                30, interval_s=0.5, what="the readings in InfluxDB",
            )
            dead = wait_until(
                lambda: (found := influxql(settings.influx, deadletters)) and total(found) > deadletters_before and found,
                15, interval_s=0.5, what="the dead letter in InfluxDB",
            )
        from pipeline.cli import series_table

        step(f"InfluxQL> {query}")
        for s in series:
            console.print(series_table(s))
        step(f"this run: {total(series) - readings_before} readings in InfluxDB (published {len(feed.readings)})")
        step(f"InfluxQL> {deadletters}")
        for s in dead:
            console.print(series_table(s))
        step(f"this run: {total(dead) - deadletters_before} dead letter(s), reason: {malformed_reason(settings)}")
        step("[green]demo complete[/]")
        return 0
    finally:
        if keep:
            console.print("--keep: services, worker and bridge left running (stop: yuflow services down; kill the pids above)")
        else:
            for process in reversed(background):
                process.stop()
            services.down(settings)
            step("stopped what the demo started")
