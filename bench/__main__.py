"""``python -m bench [generation]``: benchmarks with numbers, never asserted in tests.

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
    from sensors_sim.scenario import load_scenario, simulate

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
                run = {"scenario": name, "scale": scale, "readings": recording.readings, "messages": recording.messages,
                       "simulate_s": round(simulated - started, 3), "write_s": round(done - simulated, 3),
                       "readings_per_s": round(recording.readings / (done - started))}
                best = run if best is None or run["readings_per_s"] > best["readings_per_s"] else best
            results.append(best)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("what", nargs="?", default="generation", choices=["generation"])
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scenarios", nargs="*", default=["quiet_week", "puhe_do_sag", "jiefangbei_spring_festival", "random"])
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args()
    results = generation(args.scenarios, args.scale, args.repeats)
    table = Table(title=f"simulator generation to Parquet (scale {args.scale}, best of {args.repeats})")
    for column in results[0]:
        table.add_column(column)
    for r in results:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in r.values()))
    console.print(table)
    args.json.write_text(json.dumps({"generation": results}, indent=2))
    console.print(f"target: >= 200,000 readings/s at scale 1; results in {args.json}")


if __name__ == "__main__":
    main()
