"""``python -m bench [pipeline|generation]``: benchmarks with numbers, never asserted in tests.

pipeline: services started for the run; raw baselines (mosquitto, Kafka, InfluxDB alone), then the
    whole pipeline driven over MQTT with recorded simulator data, flat out or at ``--rate``
    readings/s: throughput per stage, consumer lag, CPU and memory per process, reading -> warning
    latency (bench/pipeline.py).
generation: simulate scenarios and write them to Parquet; readings (parameter values) per second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()


def generation(scenarios: list[str], scale: int, repeats: int) -> list[dict]:
    from pipeline.city import load_city
    from sensors_sim.recording import save
    from sensors_sim.scenario import load_scenario
    from sensors_sim.simulation import simulate

    city = load_city(scale=scale)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in scenarios:
            best = None
            for _ in range(repeats):
                started = time.perf_counter()
                recording = simulate(load_scenario(name, city=city, scale=scale), city)
                simulated = time.perf_counter()
                save(recording, Path(tmp) / f"{name}.parquet")
                done = time.perf_counter()
                run = {
                    "scenario": name,
                    "scale": scale,
                    "readings": recording.readings,
                    "messages": recording.messages,
                    "simulate_s": round(simulated - started, 3),
                    "write_s": round(done - simulated, 3),
                    "readings_per_s": round(recording.readings / (done - started)),
                }
                best = run if best is None or run["readings_per_s"] > best["readings_per_s"] else best
            results.append(best)
    return results


def show(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("what", nargs="?", default="pipeline", choices=["pipeline", "city", "bridges", "generation"])
    parser.add_argument("--scale", type=int, default=None, help="city clones (pipeline: 20, generation: 1)")
    parser.add_argument("--rate", type=float, default=None, help="pipeline: readings/s to offer (default: flat out)")
    parser.add_argument("--duration", type=float, default=60.0, help="pipeline: seconds of load")
    parser.add_argument("--probes", type=int, default=40, help="pipeline: reading -> warning latency probes")
    parser.add_argument(
        "--feeds", nargs="*", default=None, help="pipeline: water rain crowd (default water); city: all"
    )
    parser.add_argument(
        "--speedup", type=float, default=1.0, help="city: every sensor this many times its real cadence"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="city: Faust workers in the group (0: none, to measure the bridges alone)",
    )
    parser.add_argument("--bridges", type=int, default=1, help="city: bridges splitting the MQTT feed")
    parser.add_argument("--no-restore", action="store_true", help="city: skip the worker kill and restore at the end")
    parser.add_argument(
        "--samples", type=int, default=1, help="pipeline: samples per MQTT message (a sensor's JSON array)"
    )
    parser.add_argument(
        "--hours", type=float, default=24.0 * 7, help="pipeline: hours of quiet_week to simulate for the load"
    )
    parser.add_argument(
        "--spans", type=int, default=1, help="pipeline: the simulated span sent this many times, each later"
    )
    parser.add_argument(
        "--messages", type=int, default=200_000, help="bridges: the backlog each count of bridges drains"
    )
    parser.add_argument("--counts", type=int, nargs="*", default=[1, 2], help="bridges: how many bridges, one run each")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--scenarios", nargs="*", default=["quiet_week", "puhe_do_sag", "jiefangbei_spring_festival", "random"]
    )
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args()
    if args.what == "city":
        from bench.city import city_bench

        r = city_bench(
            args.scale or 500,
            args.feeds or ["water", "rain", "crowd", "camera"],
            args.speedup,
            args.duration,
            args.workers,
            args.bridges,
            args.probes,
            console,
            restore=not args.no_restore,
        )
        lat, restore = r["latency_s"], r.get("restore", {})
        show(
            f"city at scale {r['scale']} on {r['cpus']} cores: {r['sensors']:,} sensors "
            f"({r['stations']:,} water stations, {r['gauges']:,} gauges), "
            f"{r['speedup']:g}x real cadence, {r['workers']} worker(s), {r['bridges']} bridge(s)",
            [
                (
                    "messages/s, readings/s published (one sample per message)",
                    f"{r['messages_per_s']:,} / {r['readings_per_s']:,}",
                ),
                (
                    "messages/s forwarded to Kafka by the bridge(s) (steady)",
                    f"{r['forwarded_messages_per_s_steady']:,}",
                ),
                ("InfluxDB points/s (steady; one per message)", f"{r['influx_points_per_s_steady']:,}"),
                (
                    "agents' consumer lag, records: steady first / last / max",
                    " / ".join(f"{v:,}" for v in r["lag_first_last_max_steady"]),
                ),
                (
                    "reading -> warning latency p50 / p95 / p99 (s)",
                    f"{lat.get('p50')} / {lat.get('p95')} / {lat.get('p99')} (n={lat.get('n', 0)})",
                ),
                (
                    "after kill -9 of a worker: caught up again in (s)",
                    "-"
                    if not restore
                    else f"{restore['caught_up_s']}"
                    if restore["caught_up_s"]
                    else f"not within 180 s (lag {restore['lag_before']:,} -> "
                    f"{restore['lag_history'][-1][1]:,} records)",
                ),
                *(
                    (f"{name}: CPU %, peak RSS MB", f"{v['cpu_percent']} %, {v['peak_rss_mb']}")
                    for name, v in r["processes"].items()
                ),
            ],
        )
        args.json.write_text(json.dumps({"city": r}, indent=2))
        console.print(f"results in {args.json}")
        return
    if args.what == "bridges":
        from bench.bridges import bridges_bench

        r = bridges_bench(
            args.scale or 500, args.feeds or ["water", "rain", "crowd", "camera"], args.messages, args.counts, console
        )
        for run in r["runs"]:
            show(
                f"{run['bridges']} bridge(s) draining {run['messages']:,} queued messages "
                f"(scale {r['scale']}, {r['cpus']} cores)",
                [
                    ("drained in (s)", f"{run['drain_s']}"),
                    (
                        "messages/s (x the first count)",
                        f"{run['messages_per_s']:,} ({run['vs_first']})"
                        if run["messages_per_s"]
                        else "did not finish in 600 s",
                    ),
                    ("messages taken in per bridge", ", ".join(f"{n:,}" for n in run["received_per_bridge"])),
                    *(
                        (f"{name}: CPU %, peak RSS MB", f"{v['cpu_percent']} %, {v['peak_rss_mb']}")
                        for name, v in run["processes"].items()
                    ),
                ],
            )
        args.json.write_text(json.dumps({"bridges": r}, indent=2))
        console.print(f"results in {args.json}")
        return
    if args.what == "pipeline":
        from bench.pipeline import pipeline_bench

        r = pipeline_bench(
            args.scale or 20,
            args.rate,
            args.duration,
            args.probes,
            args.feeds or ["water"],
            console,
            args.samples,
            args.hours,
            args.spans,
        )
        p, lat = r["pipeline"], r.get("latency_s", {})
        offered = "flat out" if r["rate"] is None else f"{r['rate']:,.0f} readings/s offered"
        show(
            f"pipeline on {r['cpus']} cores (scale {r['scale']}, {', '.join(r['feeds'])}, "
            f"{r['readings_per_message']} readings/message, "
            f"{offered}, {r['samples_per_message']} sample(s)/message)",
            [
                ("baseline mosquitto pub/sub, readings/s", f"{r['baseline_mqtt']['readings_per_s']:,}"),
                ("baseline Kafka produce, readings/s", f"{r['baseline_kafka']['produce_readings_per_s']:,}"),
                ("baseline Kafka consume, readings/s", f"{r['baseline_kafka']['consume_readings_per_s']:,}"),
                ("baseline InfluxDB writes, readings/s", f"{r['baseline_influx']['readings_per_s']:,}"),
                ("published over MQTT, readings/s", f"{p['published_readings_per_s']:,}"),
                (
                    "sustained into InfluxDB while loaded (after the first third), readings/s",
                    f"{p['sustained_readings_per_s'] or 0:,}",
                ),
                ("end to end (first reading to all in InfluxDB), readings/s", f"{p['end_to_end_readings_per_s']:,}"),
                (
                    "readings published / in InfluxDB / dead-lettered (the simulator's duplicates)",
                    f"{p['readings_published']:,} / {p['readings_in_influx']:,} / {p['readings_dead_lettered']:,}",
                ),
                (
                    "end to end / Kafka produce, consume baselines",
                    f"{r['ratio_to_kafka_produce']:.0%}, {r['ratio_to_kafka_consume']:.0%}",
                ),
                (
                    "backlog (published - in InfluxDB - dead-lettered), readings, steady first / last",
                    str(p["backlog_first_last"]),
                ),
                ("agents' consumer lag, records, steady first / last", str(p["record_lag_first_last"])),
                (
                    "reading -> warning latency p50 / p95 / p99 (s)",
                    f"{lat.get('p50')} / {lat.get('p95')} / {lat.get('p99')} (n={lat.get('n', 0)})",
                ),
                *(
                    (f"{name}: CPU %, peak RSS MB", f"{v['cpu_percent']} %, {v['peak_rss_mb']}")
                    for name, v in r["processes"].items()
                ),
            ],
        )
        args.json.write_text(json.dumps({"pipeline": r}, indent=2))
        console.print(f"results in {args.json}")
        return
    scale = args.scale or 1
    results = generation(args.scenarios, scale, args.repeats)
    table = Table(title=f"simulator generation to Parquet (scale {scale}, best of {args.repeats})")
    for column in results[0]:
        table.add_column(column)
    for r in results:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in r.values()))
    console.print(table)
    args.json.write_text(json.dumps({"generation": results}, indent=2))
    console.print(f"target: >= 200,000 readings/s at scale 1; results in {args.json}")


if __name__ == "__main__":
    main()
