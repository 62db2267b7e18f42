"""``yuflow eval ...``: the models judged on simulated ground truth (water, rain, crowd) and on real
labelled data (gecco).

Mounted on the ``yuflow`` command through the ``yuflow.commands`` entry points (pyproject.toml).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from sensors_sim.cli import console, progress_bar

eval_app = typer.Typer(help="Judge the models on simulated ground truth.", no_args_is_help=True)


@eval_app.command("water")
def eval_water(
    runs: Annotated[int, typer.Option(help="randomised releases (oil spills, releases, DO sags in turn)")] = 50,
    seed: Annotated[int, typer.Option(help="seed of the first randomised release")] = 1000,
    observe_h: Annotated[
        float, typer.Option("--observe", help="hours of data after the first detection used for tracing")
    ] = 2.0,
    weeks: Annotated[
        int, typer.Option(help="quiet weeks besides the seed's, with other seeds (false alarms, faults)")
    ] = 3,
    details: Annotated[bool, typer.Option(help="a line per event")] = False,
    stream: Annotated[
        bool, typer.Option("--stream", help="the seed scenarios through the real pipeline instead")
    ] = False,
) -> None:
    """Seed scenarios, quiet weeks and RUNS random releases through the water models (no brokers)."""
    from evaluation.water import evaluate
    from evaluation.water_summary import seed_checks, summarise, summarise_tracing
    from pipeline.city import default_city

    city = default_city()
    if stream:
        _eval_stream(city)
        return
    with progress_bar() as progress:
        task = progress.add_task("evaluating", total=runs + 3 + weeks)
        started = time.perf_counter()
        results = evaluate(city, runs, seed, progress=lambda: progress.advance(task), observe_h=observe_h, weeks=weeks)
    _print_summary(
        f"water models on simulated ground truth ({runs} random releases from seed {seed}, "
        f"tracing {observe_h:g} h after detection; {time.perf_counter() - started:.0f} s)",
        summarise(results),
    )
    tracing = summarise_tracing(results)
    table = Table(title="tracing by time after the first detection (seed scenarios and random releases)")
    for column in tracing.columns:
        table.add_column(column, justify="right")
    for _, row in tracing.iterrows():  # all but the first two columns are fractions
        table.add_row(*(str(v) if i < 2 else "" if pd.isna(v) else f"{v:.1%}" for i, v in enumerate(row)))
    console.print(table)
    for check in seed_checks(results, city):
        console.print(check)
    if details:
        events = Table(title="events")
        for column in (
            "run",
            "type",
            "detected",
            "delay min",
            "truth rank",
            "top-1",
            "arrival error",
            "ms",
            "explanation",
        ):
            events.add_column(column, overflow="fold")
        for r in results:
            for e in r.events:
                events.add_row(
                    r.name,
                    e.event_type,
                    str(e.detected),
                    f"{e.delay_min:.0f}" if e.delay_min is not None else "",
                    str(e.rank_of_truth or ""),
                    e.top1 or "",
                    f"{e.arrival_error:.1%}" if e.arrival_error is not None else "",
                    f"{e.compute_ms:.0f}" if e.compute_ms is not None else "",
                    e.explanation,
                )
        console.print(events)


def _print_summary(title: str, summary: pd.DataFrame) -> None:
    table = Table(title=title)
    summary = summary.set_index("runs").T  # a column per group of runs: fits a terminal
    table.add_column("metric")
    for group in summary.columns:
        table.add_column(group, justify="right")
    for metric, row in summary.iterrows():
        table.add_row(metric, *("" if pd.isna(v) else f"{v:.3g}" for v in row))
    console.print(table)


@eval_app.command("gecco")
def eval_gecco(
    file: Annotated[
        Path,
        typer.Argument(help="a GECCO water-quality CSV: Time, Tp, Cl, pH, Redox, Leit, Trueb, Cl_2, Fm, Fm_2, EVENT"),
    ],
    out: Annotated[Path | None, typer.Option(help="write one line per row: Time,flag,score")] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="the rows through MQTT -> bridge -> Kafka -> the water agent instead")
    ] = False,
    days: Annotated[float | None, typer.Option(help="only the file's first DAYS days")] = None,
    calibrate: Annotated[
        bool, typer.Option(help="choose the screen's window, acceptance and threshold on the first half")
    ] = True,
) -> None:
    """Real labelled drinking-water data through the water screen the agent runs, causally: calibrated
    on the first half only, scored on the second (per-minute precision / recall / F1, events found,
    median detection delay, false alarms per day)."""
    from evaluation import gecco as ev
    from pipeline.city import default_city
    from pipeline.settings import load_settings

    city, settings = default_city(), load_settings()
    try:
        series = ev.load(file, city.utc_offset_h, days)
    except (OSError, ValueError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from error
    configured = dict(settings.water.screen)
    if stream:
        _eval_gecco_stream(settings, series, city, configured)
        return
    if series.labels is None or not series.labels.any():
        console.print(f"[red]{file}: no labelled events ({ev.LABEL} column): nothing to score[/]")
        raise typer.Exit(2)
    half = len(series.ts_s) // 2
    train, test = series.head(half), series.tail(half)
    started = time.perf_counter()
    chosen, train_f1 = configured, float("nan")
    with progress_bar() as progress:
        if calibrate:
            task = progress.add_task("calibrating on the first half", total=len(ev.candidates_of(configured)))
            chosen, train_f1 = ev.calibrate(
                train, configured, city.utc_offset_h, progress=lambda: progress.advance(task)
            )
        task = progress.add_task("screening every row", total=1)
        result = ev.run(series, chosen, city.utc_offset_h)
        progress.advance(task)
    scores = ev.score(result.flags[half:], test.labels, test.ts_s)
    table = Table(
        title=f"water screen on {file.name}: {len(series.ts_s):,} rows; the second half scored per minute "
        f"(events: found / labelled; delay: median to the first flag) ({time.perf_counter() - started:.0f} s)"
    )
    for column in ("precision", "recall", "F1", "events", "delay min", "false / day", "1st-half F1"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{scores.precision:.3f}",
        f"{scores.recall:.3f}",
        f"{scores.f1:.3f}",
        f"{scores.events_found}/{scores.events}",
        "" if scores.delay_median_min is None else f"{scores.delay_median_min:.0f}",
        f"{scores.false_alarms_per_day:.2f}",
        f"{train_f1:.3f}",
    )
    console.print(table)
    changed = {k: v for k, v in chosen.items() if configured.get(k) != v}
    console.print(
        "settings: "
        + (", ".join(f"{k} = {v:g}" for k, v in chosen.items()))
        + (
            f"  (calibrated; for yuflow.toml: [water.screen] {', '.join(f'{k} = {v:g}' for k, v in changed.items())})"
            if changed
            else "  (as configured)"
        )
    )
    if out is not None:
        ev.write_flags(out, series, result)
        again = ev.score_flags_file(out, series, start=half).f1
        console.print(f"wrote {out} ({len(series.ts_s):,} rows); its flags score test F1 {again:.3f}")


def _eval_gecco_stream(settings, series, city, configured: dict) -> None:
    from evaluation import gecco as ev
    from pipeline import services
    from pipeline.processes import Background
    from pipeline.status import bridge_online

    batch = ev.run(series, configured, city.utc_offset_h).raised_ts_s
    started: list[Background] = []
    try:
        services.up(settings)
        started += [Background("worker", ["worker"], settings), Background("bridge", ["bridge"], settings)]
        bridge_online(settings, started[1].pid)
        streamed = ev.stream(settings, series, city, log=lambda text: console.print(f"[dim]{text}[/]"))
    finally:
        for process in reversed(started):
            process.stop()
        services.down(settings)
    same = ev.same_alerts(batch, streamed)
    console.print(
        f"batch run: {len(batch)} events raised; through the pipeline: {len(streamed)} alerts from the water agent; "
        + ("[green]the same[/]" if same else "[red]they differ[/]")
    )
    if not same:
        raise typer.Exit(1)


@eval_app.command("rain")
def eval_rain(
    runs: Annotated[int, typer.Option(help="random storms")] = 10,
    seed: Annotated[int, typer.Option(help="seed of the first random storm")] = 2000,
) -> None:
    """central_rainstorm, a quiet week and RUNS random storms through the rain watch (accumulations,
    CMA tiers, nowcast): lead time before each gauge's tier crossing, misses, tier accuracy, false alarms."""
    _eval_feed("rain", runs, seed, f"{runs} random storms from seed {seed}")


@eval_app.command("crowd")
def eval_crowd(
    runs: Annotated[int, typer.Option(help="random days with 2 surges each")] = 10,
    seed: Annotated[int, typer.Option(help="seed of the first random day")] = 3000,
) -> None:
    """jiefangbei_spring_festival, a quiet week and RUNS random surge days through the crowd watch:
    lead time before each congestion crossing, misses, dispersal plans, false warnings per zone-day."""
    _eval_feed("crowd", runs, seed, f"{runs} random days from seed {seed}")


def _eval_feed(feed: str, runs: int, seed: int, what: str) -> None:
    from evaluation import feeds as ev
    from pipeline.city import default_city

    evaluate, summarise = {
        "rain": (ev.evaluate_rain, ev.summarise_rain),
        "crowd": (ev.evaluate_crowd, ev.summarise_crowd),
    }[feed]
    city = default_city()
    with progress_bar() as progress:
        task = progress.add_task("evaluating", total=runs + 2)
        started = time.perf_counter()
        results = evaluate(city, runs, seed, progress=lambda: progress.advance(task))
    _print_summary(
        f"{feed} watch on simulated ground truth ({what}; {time.perf_counter() - started:.0f} s)", summarise(results)
    )


def _eval_stream(city) -> None:
    from evaluation.stream import evaluate_stream
    from pipeline.settings import load_settings

    results = evaluate_stream(load_settings(), city, log=lambda text: console.print(f"[dim]{text}[/]"))
    table = Table(title="water seed scenarios through MQTT -> bridge -> Kafka -> Faust agents -> warnings")
    for column in (
        "scenario",
        "warned",
        "delay min",
        "top-1 (truth)",
        "arrival error",
        "s to first warning",
        "s to traced warning",
    ):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.scenario,
            str(r.detected),
            f"{r.delay_min:.0f}" if r.delay_min is not None else "",
            f"{r.top1} ({r.truth_source})",
            f"{r.arrival_error:.1%}" if r.arrival_error is not None else "",
            f"{r.wall_s_to_warning:.1f}" if r.wall_s_to_warning is not None else "",
            f"{r.wall_s_to_source:.1f}" if r.wall_s_to_source is not None else "",
        )
    console.print(table)
