"""End-to-end benchmark: MQTT -> bridge -> Kafka -> agents -> InfluxDB on freshly started services.

Measures, in one run on this machine:
- raw baselines: mosquitto publish/subscribe alone, Kafka produce/consume alone (aiokafka), InfluxDB
  line-protocol writes alone (bench/baselines.py);
- the pipeline driven with recorded simulator data (``quiet_week`` at ``--scale``) flat out or at
  ``--rate`` readings/s: readings/s published, forwarded by the bridge, consumed by the agents and
  written to InfluxDB, the consumer lag over time, CPU and memory per process (bench/drive.py);
- reading -> warning latency (p50/p95/p99): while the load runs, probe stations send low-DO readings
  stamped when sent; each probe's third reading completes a finding, and the warning's
  ``time_to_warn_s`` (issue time - reading time) is its latency (bench/latency.py).

A reading is one parameter value; a water message carries about ten.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.baselines import influx_baseline, kafka_baseline, mqtt_baseline
from bench.drive import drive
from bench.latency import latency_probes, probe_stations
from bench.load import recorded_messages, samples_per_message
from bench.processes import ProcessMeter, free_port


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
    from pipeline import services

    settings = _isolated_settings(scale)
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
        one_each, messages, per_sample, per_msg = _load(scale, hours, feeds, repeats, probes, samples)
    result["readings_per_message"] = round(per_msg, 2)
    console.print(
        f"load: {len(messages):,} messages of {samples} sample(s), {per_msg:.1f} readings each "
        f"(quiet_week {hours:g} h x {repeats}, scale {scale})"
    )
    try:
        with console.status("starting services..."):
            services.up(settings)
        result |= _baselines(settings, console, one_each, messages, per_sample, per_msg, samples)
        with console.status("starting the worker and the bridge..."):
            _start_worker_and_bridge(settings, background)
        result |= _loaded_run(settings, console, background, messages, per_sample, per_msg, rate, duration_s, probes)
        run = result["pipeline"]
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


def _isolated_settings(scale: int):
    """Settings for services of the bench's own, on free ports with a fresh data directory."""
    from pipeline.settings import load_settings

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
    return load_settings()


def _load(
    scale: int, hours: float, feeds: list[str], repeats: int, probes: int, samples: int
) -> tuple[list[tuple[int, str, bytes]], list[tuple[int, str, bytes]], float, float]:
    """The recorded messages one sample each, the same ``samples`` to a message, and the readings per
    sample and per message; the probes' stations left out (the probes send theirs)."""
    from pipeline.city import load_city

    one_each, per_sample = recorded_messages(scale, hours, time.time() - 60, feeds, repeats)
    probed = {f"wq-{st.id}" for st in probe_stations(load_city(scale=scale), probes)}
    one_each = [m for m in one_each if m[1].rsplit("/", 1)[1] not in probed]
    messages = samples_per_message(one_each, samples)
    per_msg = per_sample * len(one_each) / len(messages)
    return one_each, messages, per_sample, per_msg


def _baselines(settings, console, one_each, messages, per_sample: float, per_msg: float, samples: int) -> dict:
    """mosquitto, Kafka and InfluxDB each alone, with their rates in readings/s."""
    from pipeline.influx import reading_line
    from pipeline.schemas import parse_reading

    out: dict = {}
    n = min(len(messages), max(100_000 // samples, 1000))
    with console.status("baseline: mosquitto alone..."):
        out["baseline_mqtt"] = mqtt_baseline(settings, [(t, p) for _, t, p in messages[:n]])
        out["baseline_mqtt"]["readings_per_s"] = round(out["baseline_mqtt"]["messages_per_s"] * per_msg)
    with console.status("baseline: Kafka alone..."):
        out["baseline_kafka"] = asyncio.run(
            kafka_baseline(settings.kafka.bootstrap, [p for _, _, p in messages[:n]], settings.kafka.partitions)
        )
        for k in ("produce_per_s", "consume_per_s"):
            out["baseline_kafka"][k.replace("_per_s", "_readings_per_s")] = round(out["baseline_kafka"][k] * per_msg)
    with console.status("baseline: InfluxDB alone..."):
        lines = [reading_line(parse_reading(p)) for _, _, p in one_each[:100_000]]
        out["baseline_influx"] = influx_baseline(settings, lines, settings.influx.batch_size)
        out["baseline_influx"]["readings_per_s"] = round(out["baseline_influx"]["points_per_s"] * per_sample)
    return out


def _start_worker_and_bridge(settings, background: list) -> None:
    """Start them into ``background`` (stopped by the caller whatever happens) and wait until both run."""
    from pipeline.processes import Background
    from pipeline.status import bridge_online

    background += [
        Background("worker", ["worker", "--log-level", "warn"], settings),
        Background("bridge", ["bridge"], settings),
    ]
    bridge_online(settings, background[1].pid, timeout_s=90)
    time.sleep(15)  # the worker joins its group and starts its agents (it logs nothing at warning level)
    if not background[0].alive():
        raise RuntimeError(f"the worker exited: {background[0].log_tail(30)}")


def _loaded_run(settings, console, background, messages, per_sample, per_msg, rate, duration_s, probes: int) -> dict:
    """The load driven through the pipeline, CPU and memory per process, and the probes' latencies."""
    from rich.live import Live

    from pipeline import services

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
    out = {"pipeline": run, "processes": meter.result()}
    if probes:
        prober.join()
        out["latency_s"] = _percentiles(latencies)
    return out


def _percentiles(lat: list[float]) -> dict:
    if not lat:
        return {"n": 0}
    return {
        "n": len(lat),
        "p50": round(float(np.percentile(lat, 50)), 3),
        "p95": round(float(np.percentile(lat, 95)), 3),
        "p99": round(float(np.percentile(lat, 99)), 3),
        "max": round(max(lat), 3),
    }
