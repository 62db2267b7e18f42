"""End-to-end benchmark: MQTT -> bridge -> Kafka -> agents -> InfluxDB on freshly started services.

Measures, in one run on this machine:
- raw baselines: mosquitto publish/subscribe alone, Kafka produce/consume alone (aiokafka), InfluxDB
  line-protocol writes alone;
- the pipeline driven with recorded simulator data (``quiet_week`` at ``--scale``) flat out or at
  ``--rate`` readings/s: readings/s published, forwarded by the bridge, consumed by the agents and
  written to InfluxDB, the consumer lag over time, CPU and memory per process;
- reading -> warning latency (p50/p95/p99): while the load runs, probe stations send low-DO readings
  stamped when sent; each probe's third reading completes a finding, and the warning's
  ``time_to_warn_s`` (issue time - reading time) is its latency.

A reading is one parameter value; a water message carries about ten.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- process accounting ---------------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0


@dataclass
class ProcessMeter:
    pids: dict[str, int]
    started: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, float] = field(default_factory=dict)
    t0: float = 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.started = {name: cpu_s(pid) for name, pid in self.pids.items()}

    def sample(self) -> None:
        for name, pid in self.pids.items():
            self.peak_rss[name] = max(self.peak_rss.get(name, 0.0), rss_mb(pid))

    def result(self) -> dict[str, dict]:
        wall = time.monotonic() - self.t0
        return {
            name: {
                "cpu_percent": round(100 * (cpu_s(pid) - self.started[name]) / wall, 1),
                "peak_rss_mb": round(self.peak_rss.get(name, rss_mb(pid)), 1),
            }
            for name, pid in self.pids.items()
        }


# --- load -----------------------------------------------------------------------------------------
def recorded_messages(
    scale: int, hours: float, end_s: float, feeds: list[str], repeats: int = 1
) -> tuple[list[tuple[int, str, bytes]], float]:
    """quiet_week's messages of ``feeds`` at ``scale``, stamped to end at ``end_s``, ``repeats`` times
    one after another (each repeat moved ``hours`` later, so none repeats a timestamp); and the
    readings (parameter values) per message. Repeats keep the simulator's memory to one span."""
    from pipeline.city import load_city
    from sensors_sim.recording import messages
    from sensors_sim.scenario import load_scenario, simulate

    city = load_city(scale=scale)
    recording = simulate(load_scenario("quiet_week", city=city, scale=scale, duration_h=hours), city)
    frame = recording.frame[~recording.frame["malformed"] & recording.frame["kind"].isin(feeds)]
    del recording
    last_ms = int(end_s * 1000) - int(frame["send_ms"].max())
    out = []
    for r in reversed(range(repeats)):
        out += messages(frame, "yuflow", last_ms - int(r * hours * 3600 * 1000))
    return out, len(frame) / max(len(out) // repeats, 1)


# --- baselines ------------------------------------------------------------------------------------
def mqtt_baseline(settings, payloads: list[tuple[str, bytes]]) -> dict:
    """mosquitto alone: one QoS 1 publisher, one QoS 1 subscriber; messages/s through both."""
    from pipeline.mqtt import make_client

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
    sub.subscribe("bench/#", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    pub = make_client(settings.mqtt, f"bench-pub-{uuid.uuid4().hex[:6]}")
    pub.connect(settings.mqtt.host, settings.mqtt.port)
    pub.loop_start()
    started = time.perf_counter()
    for topic, payload in payloads:
        while len(pub._out_messages) > 5000:  # paho queues without bound; keep the window like a real client
            time.sleep(0.001)
        pub.publish("bench/" + topic, payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - started
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return {"messages": received, "seconds": round(elapsed, 2), "messages_per_s": round(received / elapsed)}


async def _kafka_baseline(bootstrap: str, payloads: list[bytes], partitions: int) -> dict:
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


# --- the pipeline ---------------------------------------------------------------------------------
async def _offsets(bootstrap: str, topics: list[str], group: str) -> tuple[int, int]:
    """(records on the topics, records the group has committed) over all partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in (consumer.partitions_for_topic(t) or await _parts(consumer, t))
        ]
        ends = await consumer.end_offsets(parts)
        committed = 0
        for tp in parts:
            committed += (await consumer.committed(tp)) or 0
        return sum(ends.values()), committed
    finally:
        await consumer.stop()


async def _parts(consumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


def samples_per_message(messages: list[tuple[int, str, bytes]], k: int) -> list[tuple[int, str, bytes]]:
    """Each sensor's consecutive samples ``k`` to a message (a JSON array), as a data logger uploads
    what it buffered; ``k`` = 1 leaves one sample per message."""
    if k <= 1:
        return messages
    pending: dict[str, list[bytes]] = {}
    out = []
    for send_ms, topic, payload in messages:
        samples = pending.setdefault(topic, [])
        samples.append(payload)
        if len(samples) == k:
            out.append((send_ms, topic, b"[" + b",".join(pending.pop(topic)) + b"]"))
    return out + [(0, topic, b"[" + b",".join(samples) + b"]") for topic, samples in pending.items()]


def bridge_counts(log_file: Path) -> tuple[int, int]:
    """Samples (readings of one sensor at one time) the bridge has forwarded and dead-lettered, from
    its last 10-s report in its log."""
    text = log_file.read_text(errors="replace")[-20000:] if log_file.exists() else ""
    found = re.findall(r"forwarded=(\d+) dead_lettered=(\d+)", text)
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def points_written(settings) -> int:
    """Points InfluxDB has accepted over HTTP since it started (every measurement and database): a
    cheap counter for progress while the load runs, where a count over the readings would cost
    InfluxDB more with every sample."""
    from pipeline.influx import influxql

    series = influxql(settings.influx, "SHOW STATS FOR 'httpd'")
    return int(dict(zip(series[0]["columns"], series[0]["values"][0])).get("pointsWrittenOK", 0)) if series else 0


def readings_in_influx(settings) -> int:
    """Readings (parameter values) in InfluxDB: the count of every field of ``readings``."""
    from pipeline.influx import influxql

    series = influxql(settings.influx, "SELECT count(*) FROM readings")
    return int(sum(v for v in series[0]["values"][0][1:] if v)) if series else 0


def log_progress(sample: dict) -> None:
    print(" ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in sample.items()), flush=True)


def drive(
    settings,
    messages: list[tuple[int, str, bytes]],
    readings_per_msg: float,
    readings_per_sample: float,
    rate: float | None,
    duration_s: float,
    meter: ProcessMeter,
    bridge_log: Path,
    progress,
) -> dict:
    """Publish over MQTT (flat out, or at ``rate`` readings/s) for ``duration_s``; sample every 10 s:
    readings published, forwarded by the bridge, in InfluxDB; records the agents have committed."""
    from pipeline.mqtt import make_client
    from pipeline.topics import READINGS

    topics = list(READINGS.values())
    group = settings.worker.app_id
    client = make_client(settings.mqtt, f"bench-load-{uuid.uuid4().hex[:6]}")
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    sent = 0
    samples = []
    msg_rate = None if rate is None else rate / readings_per_msg
    readings_before = np.concatenate(
        [[0], np.cumsum([payload.count(b'"value"') for _, _, payload in messages])]
    )  # exact counts
    started = time.monotonic()

    points_before = points_written(settings)

    def sample(exact: bool = False) -> None:
        """``exact``: count the readings in InfluxDB; else estimate them from the points written."""
        records, committed = asyncio.run(_offsets(settings.kafka.bootstrap, topics, group))
        meter.sample()
        published = int(readings_before[sent])
        stored = (
            readings_in_influx(settings)
            if exact
            else round((points_written(settings) - points_before) * readings_per_sample)
        )
        forwarded, dead = (round(n * readings_per_sample) for n in bridge_counts(bridge_log))
        samples.append(
            {
                "t_s": round(time.monotonic() - started, 1),
                "published": published,
                "forwarded": forwarded,
                "dead_lettered": dead,
                "records": records,
                "records_committed": committed,
                "record_lag": records - committed,
                "in_influx": stored,
                "exact": exact,
                "backlog": published - stored - dead,
            }
        )
        progress(samples[-1])
        log_progress(samples[-1])

    next_sample = started + 10
    stop = started + duration_s
    while time.monotonic() < stop and sent < len(messages):
        if msg_rate is not None:
            ahead = sent / msg_rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(min(ahead, 0.05))
                continue
        elif len(client._out_messages) > 5000:
            time.sleep(0.001)
            continue
        _, topic, payload = messages[sent]
        client.publish(topic, payload, qos=1)
        sent += 1
        if time.monotonic() >= next_sample:
            sample()
            next_sample += 10
    publish_s = time.monotonic() - started
    acked_by = time.monotonic() + 120
    while client._out_messages and time.monotonic() < acked_by:  # paho drops what it still queues when it disconnects
        time.sleep(0.05)
    unacked = len(client._out_messages)
    client.disconnect()
    client.loop_stop()
    sent -= unacked
    published = int(readings_before[sent])
    sample(exact=True)
    # drain: until every published reading is in InfluxDB or dead-lettered, or nothing has moved for 20 s (or 180 s)
    drain_deadline = time.monotonic() + 180
    while time.monotonic() < drain_deadline and samples[-1]["backlog"] > 0:
        time.sleep(2)
        sample(exact=True)
        if len(samples) > 10 and samples[-1]["in_influx"] == samples[-11]["in_influx"]:
            break
    drained_s = next(s["t_s"] for s in samples if s["exact"] and s["in_influx"] == samples[-1]["in_influx"])
    loaded = [s for s in samples if s["t_s"] <= publish_s]
    steady = loaded[len(loaded) // 3 :]  # the first third is the pipeline filling up
    sustained = (
        (steady[-1]["in_influx"] - steady[0]["in_influx"]) / (steady[-1]["t_s"] - steady[0]["t_s"])
        if len(steady) >= 2
        else None
    )
    return {
        "messages_published": sent,
        "publish_s": round(publish_s, 1),
        "to_drained_s": drained_s,
        "published_readings_per_s": round(published / publish_s),
        "sustained_readings_per_s": None if sustained is None else round(sustained),
        "end_to_end_readings_per_s": round(samples[-1]["in_influx"] / drained_s),
        "readings_in_influx": samples[-1]["in_influx"],
        "readings_dead_lettered": samples[-1]["dead_lettered"],
        "readings_published": published,
        "samples": samples,
        "backlog_first_last": [steady[0]["backlog"], steady[-1]["backlog"]] if steady else None,
        "record_lag_first_last": [steady[0]["record_lag"], steady[-1]["record_lag"]] if steady else None,
    }


def probe_stations(city, count: int) -> list:
    """One station on each of ``count`` rivers (an incident is a river's: one warning per probe)."""
    first_of_river = {}
    for st in (s for s in city.stations.values() if not s.treated):
        first_of_river.setdefault(st.river, st)
    return list(first_of_river.values())[:count]


def latency_probes(settings, count: int, spacing_s: float) -> list[float]:
    """Reading -> warning seconds for ``count`` probes (low DO at stations of different rivers)."""
    from pipeline.city import load_city
    from pipeline.influx import influxql
    from pipeline.schemas import Kind, Quantity, Reading
    from sensors_sim.publisher import publish, reading_messages

    stations = probe_stations(load_city(scale=settings.city.scale), count)
    since = datetime.now(UTC)
    for st in stations:
        for _ in range(3):
            reading = Reading(
                sensor_id=f"wq-{st.id}",
                kind=Kind.water,
                station=st.id,
                district=st.district,
                ts=datetime.now(UTC),
                values={"do": Quantity(value=1.0, unit="mg/L")},
            )
            publish(reading_messages([reading], settings.mqtt.topic_root), settings.mqtt)
            time.sleep(spacing_s)
    deadline = time.monotonic() + 60
    values: list[float] = []
    while time.monotonic() < deadline:
        series = influxql(
            settings.influx,
            f"SELECT \"time_to_warn_s\" FROM warnings WHERE time >= '{since.isoformat().replace('+00:00', 'Z')}' "
            f"AND station =~ /^({'|'.join(st.id for st in stations)})$/",
        )
        values = [row[1] for s in series for row in s["values"]]
        if len(values) >= len(stations):
            break
        time.sleep(1)
    return values


def pipeline_bench(
    scale: int,
    rate: float | None,
    duration_s: float,
    probes: int,
    feeds: list[str],
    console,
    samples: int = 1,
    hours: float = 24.0 * 7,
    repeats: int = 1,
) -> dict:
    from rich.live import Live

    from pipeline import services
    from pipeline.influx import reading_line
    from pipeline.processes import Background
    from pipeline.schemas import parse_reading
    from pipeline.settings import load_settings
    from pipeline.status import bridge_online

    data_dir = Path(tempfile.mkdtemp(prefix="yuflow-bench-"))
    env = {
        "YUFLOW_DATA_DIR": str(data_dir),
        "YUFLOW_MQTT__PORT": str(free_port()),
        "YUFLOW_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "YUFLOW_INFLUX__URL": f"http://127.0.0.1:{free_port()}",
        "YUFLOW_WORKER__WEB_PORT": str(free_port()),
        "YUFLOW_CITY__SCALE": str(scale),
        "YUFLOW_BRIDGE__MAX_FUTURE_S": "600",
    }
    os.environ.update(env)
    settings = load_settings()
    result: dict = {
        "scale": scale,
        "rate": rate,
        "duration_s": duration_s,
        "feeds": feeds,
        "cpus": os.cpu_count(),
        "samples_per_message": samples,
        "hours": hours,
        "repeats": repeats,
    }
    background: list = []
    with console.status("simulating the load..."):
        one_each, per_sample = recorded_messages(scale, hours, time.time() - 60, feeds, repeats)
        from pipeline.city import load_city

        probed = {f"wq-{st.id}" for st in probe_stations(load_city(scale=scale), probes)}  # the load leaves them alone
        one_each = [m for m in one_each if m[1].rsplit("/", 1)[1] not in probed]
        messages = samples_per_message(one_each, samples)
        per_msg = per_sample * len(one_each) / len(messages)
    result["readings_per_message"] = round(per_msg, 2)
    console.print(
        f"load: {len(messages):,} messages of {samples} sample(s), {per_msg:.1f} readings each "
        f"(quiet_week {hours:g} h x {repeats}, scale {scale})"
    )
    try:
        with console.status("starting services..."):
            services.up(settings)
        n = min(len(messages), max(100_000 // samples, 1000))
        with console.status("baseline: mosquitto alone..."):
            result["baseline_mqtt"] = mqtt_baseline(settings, [(t, p) for _, t, p in messages[:n]])
            result["baseline_mqtt"]["readings_per_s"] = round(result["baseline_mqtt"]["messages_per_s"] * per_msg)
        with console.status("baseline: Kafka alone..."):
            result["baseline_kafka"] = asyncio.run(
                _kafka_baseline(settings.kafka.bootstrap, [p for _, _, p in messages[:n]], settings.kafka.partitions)
            )
            for k in ("produce_per_s", "consume_per_s"):
                result["baseline_kafka"][k.replace("_per_s", "_readings_per_s")] = round(
                    result["baseline_kafka"][k] * per_msg
                )
        with console.status("baseline: InfluxDB alone..."):
            lines = [reading_line(parse_reading(p)) for _, _, p in one_each[:100_000]]
            result["baseline_influx"] = influx_baseline(settings, lines, settings.influx.batch_size)
            result["baseline_influx"]["readings_per_s"] = round(result["baseline_influx"]["points_per_s"] * per_sample)
        with console.status("starting the worker and the bridge..."):
            background = [
                Background("worker", ["worker", "--log-level", "warn"], settings),
                Background("bridge", ["bridge"], settings),
            ]
            bridge_online(settings, background[1].pid, timeout_s=90)
            time.sleep(15)  # the worker joins its group and starts its agents (it logs nothing at warning level)
            if not background[0].alive():
                raise RuntimeError(f"the worker exited: {background[0].log_tail(30)}")
        pids = {"worker": background[0].pid, "bridge": background[1].pid, "load generator (this process)": os.getpid()}
        for service in services.all_services(settings):
            if (pid := service.our_pid()) is not None:
                pids[service.name] = pid
        meter = ProcessMeter(pids)
        meter.start()
        latencies: list[float] = []
        if probes:  # while the load runs: 10 s in, when it is steady
            prober = threading.Timer(10.0, lambda: latencies.extend(latency_probes(settings, probes, 0.2)))
            prober.start()
        with Live(console=console, refresh_per_second=2) as live:
            run = drive(
                settings,
                messages,
                per_msg,
                per_sample,
                rate,
                duration_s,
                meter,
                background[1].log_file,
                lambda s: live.update(
                    f"t={s['t_s']:>6.1f}s readings published {s['published']:,} forwarded {s['forwarded']:,} "
                    f"in InfluxDB {s['in_influx']:,} (backlog {s['backlog']:,}); records committed "
                    f"{s['records_committed']:,} (lag {s['record_lag']:,})"
                ),
            )
        result["pipeline"] = run
        result["processes"] = meter.result()
        if probes:
            prober.join()
            lat = latencies
            result["latency_s"] = (
                {
                    "n": len(lat),
                    "p50": round(float(np.percentile(lat, 50)), 3),
                    "p95": round(float(np.percentile(lat, 95)), 3),
                    "p99": round(float(np.percentile(lat, 99)), 3),
                    "max": round(max(lat), 3),
                }
                if lat
                else {"n": 0}
            )
        result["ratio_to_kafka_consume"] = round(
            run["end_to_end_readings_per_s"] / result["baseline_kafka"]["consume_readings_per_s"], 3
        )
        result["ratio_to_kafka_produce"] = round(
            run["end_to_end_readings_per_s"] / result["baseline_kafka"]["produce_readings_per_s"], 3
        )
    finally:
        for process in reversed(background):
            process.stop()
        services.down(settings)
    return result
