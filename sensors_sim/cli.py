"""``yuflow sim ...``, ``yuflow replay`` and ``yuflow demo``: run, record, plot and replay simulator scenarios,
and the demo that replays one through the whole pipeline.

Mounted on the ``yuflow`` command through the ``yuflow.commands`` entry points (pyproject.toml).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

sim_app = typer.Typer(help="The seeded city simulator.", no_args_is_help=True)
console = Console()


class TimeBase(StrEnum):
    original = "original"  # the scenario's own timestamps
    now = "now"  # first reading at launch: live at speed 1
    end_now = "end-now"  # last reading at launch: history, so nothing is in the future


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )


def _simulate(scenario: str, seed: int | None, duration_h: float | None, scale: int):
    from pipeline.city import load_city
    from sensors_sim.scenario import load_scenario
    from sensors_sim.simulation import simulate

    city = load_city(scale=scale)
    scn = load_scenario(scenario, seed=seed, duration_h=duration_h, city=city, scale=scale)
    started = time.perf_counter()
    with console.status(f"simulating {scenario} (seed {scn.seed}, {scn.duration_s / 3600:g} h, scale {scale})..."):
        recording = simulate(scn, city)
    elapsed = time.perf_counter() - started
    console.print(
        f"{scenario}: {recording.readings:,} readings in {recording.messages:,} messages, "
        f"{len(recording.truth.events)} ground-truth events, {elapsed:.2f} s "
        f"({recording.readings / max(elapsed, 1e-9):,.0f} readings/s)"
    )
    return recording


def shift_ms(base: TimeBase, first_ms: int, last_ms: int) -> int:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return {TimeBase.original: 0, TimeBase.now: now_ms - first_ms, TimeBase.end_now: now_ms - last_ms}[base]


@sim_app.command("list")
def sim_list() -> None:
    """The named scenarios."""
    from sensors_sim.scenario import scenario_names

    table = Table(title="Scenarios")
    table.add_column("name")
    table.add_column("what happens")
    for name, description in scenario_names().items():
        table.add_row(name, description)
    console.print(table)


Seed = Annotated[int | None, typer.Option(help="random seed (default: the scenario's)")]
Duration = Annotated[float | None, typer.Option("--duration", help="hours (default: the scenario's)")]
Scale = Annotated[int, typer.Option(help="clone the city this many times (load tests)")]


@sim_app.command("run")
def sim_run(
    scenario: str,
    seed: Seed = None,
    speed: Annotated[
        float | None, typer.Option(help="simulated seconds per second; omit for as fast as possible")
    ] = None,
    duration_h: Duration = None,
    scale: Scale = 1,
    qos: Annotated[int | None, typer.Option(help="MQTT QoS (default: settings)")] = None,
    time_base: Annotated[TimeBase, typer.Option("--time", help="where the timestamps start")] = TimeBase.end_now,
) -> None:
    """Simulate a scenario and publish it to MQTT; the ground truth goes to .yuflow/runs/."""
    from pipeline.settings import load_settings
    from sensors_sim.recording import messages

    settings = load_settings()
    recording = _simulate(scenario, seed, duration_h, scale)
    frame = recording.frame
    shift = shift_ms(time_base, int(frame["ts_ms"].min()), int(frame["ts_ms"].max()))
    truth_file = settings.data_path / "runs" / f"{scenario}-{recording.truth.seed}.truth.json"
    truth_file.parent.mkdir(parents=True, exist_ok=True)
    truth_file.write_text(recording.truth.model_dump_json(indent=1))
    _publish(messages(frame, settings.mqtt.topic_root, shift), recording.messages, speed, qos)
    console.print(f"ground truth (timestamps unshifted; shift {shift / 1000:+.0f} s): {truth_file}")


def _publish(stream, total: int, speed: float | None, qos: int | None) -> None:
    from pipeline.settings import load_settings
    from sensors_sim.publisher import publish_timed

    with progress_bar() as progress:
        task = progress.add_task(f"MQTT {'flat out' if speed is None else f'{speed:g}x'}", total=total)
        acked = publish_timed(
            stream, load_settings().mqtt, speed=speed, qos=qos, on_sent=lambda n: progress.advance(task, n)
        )
    console.print(f"published {acked:,} of {total:,} messages (broker-acknowledged)")


@sim_app.command("record")
def sim_record(scenario: str, file: Path, seed: Seed = None, duration_h: Duration = None, scale: Scale = 1) -> None:
    """Simulate a scenario into FILE (.parquet or .jsonl) plus FILE's .truth.json."""
    from sensors_sim.recording import save, truth_path

    recording = _simulate(scenario, seed, duration_h, scale)
    save(recording, file)
    console.print(f"wrote {file} and {truth_path(file)}")


@sim_app.command("plot")
def sim_plot(scenario: str, file: Path, seed: Seed = None, duration_h: Duration = None) -> None:
    """Plot a scenario's series with its ground-truth events shaded, to FILE (.png)."""
    from sensors_sim.plot import plot_recording

    recording = _simulate(scenario, seed, duration_h, 1)
    plot_recording(recording, file)
    console.print(f"wrote {file}")


def replay(
    file: Path,
    speed: Annotated[
        float | None, typer.Option(help="simulated seconds per second; omit for as fast as possible")
    ] = None,
    to: Annotated[str, typer.Option(help="mqtt, or kafka to skip MQTT and the bridge (benchmarks)")] = "mqtt",
    qos: Annotated[int | None, typer.Option()] = None,
    time_base: Annotated[TimeBase, typer.Option("--time", help="where the timestamps start")] = TimeBase.end_now,
) -> None:
    """Replay a recording (.parquet, or .jsonl as recorded) into MQTT or Kafka."""
    from pipeline.settings import load_settings
    from sensors_sim.publisher import produce_to_kafka
    from sensors_sim.recording import jsonl_messages, load_frame, messages

    settings = load_settings()
    if file.suffix == ".jsonl":
        stream, total = jsonl_messages(file), sum(1 for _ in open(file, "rb"))
    else:
        frame = load_frame(file)
        if to == "kafka":
            frame = frame[~frame["malformed"]]  # Kafka takes validated readings only
        shift = shift_ms(time_base, int(frame["ts_ms"].min()), int(frame["ts_ms"].max()))
        stream, total = messages(frame, settings.mqtt.topic_root, shift), int(frame["msg"].nunique())
    if to == "kafka":
        with progress_bar() as progress:
            task = progress.add_task("Kafka flat out", total=total)
            sent = produce_to_kafka(stream, settings, on_sent=lambda n: progress.advance(task, n))
        console.print(f"produced {sent:,} messages to readings.<kind>")
    else:
        _publish(stream, total, speed, qos)


def demo(
    keep: Annotated[bool, typer.Option("--keep", help="leave services, worker and bridge running")] = False,
    timeout_s: Annotated[float, typer.Option("--timeout", help="seconds to wait for the warning")] = 90,
) -> None:
    """Start everything, publish a short feed with a DO sag and a malformed payload, show the result."""
    from pipeline.settings import load_settings
    from sensors_sim.demo import run_demo

    # the demo lets clients in without a login (mosquitto_sub/pub as the README shows them); nothing else does
    raise typer.Exit(run_demo(load_settings(mqtt={"anonymous": True}), console, keep=keep, timeout_s=timeout_s))
