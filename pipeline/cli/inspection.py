"""The commands that look at the running system and its data: ``status``, ``report`` (HTML from
InfluxDB) and ``query`` (InfluxQL)."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.terminal import console
from pipeline.settings import load_settings


def status() -> None:
    """Services, worker, bridge, web page and the worker's consumer lag; exit 3 when a required part is down."""
    from pipeline.status import system_status

    parts = system_status(load_settings())
    table = Table(title="Yuflow status")
    for column in ("part", "state", "detail"):
        table.add_column(column, overflow="fold")
    for p in parts:
        colour = "green" if p.ok else "red" if p.required else "dim"
        table.add_row(p.name, f"[{colour}]{p.state}[/]", p.detail)
    console.print(table, emoji=False)
    if not all(p.ok for p in parts if p.required):
        raise typer.Exit(3)


def report(
    out: Annotated[Path, typer.Option(help="the HTML file to write")] = Path("yuflow-report.html"),
    days: Annotated[float, typer.Option(help="how far back")] = 7.0,
) -> None:
    """An HTML report from InfluxDB: incidents on a timeline, closed-loop times, detection and delivery delays."""
    from pipeline.report import frames, render

    settings = load_settings()
    try:
        data = frames(settings.influx, days)
    except OSError as e:
        console.print(f"[red]InfluxDB not reachable:[/] {e}", emoji=False)
        raise typer.Exit(1) from None
    out.write_text(render(data, days), encoding="utf-8")
    console.print(f"report written to {out}", emoji=False)


def query(
    influxql: Annotated[str, typer.Argument(help='e.g. SELECT count("do") FROM readings WHERE time > now() - 1d')],
    as_csv: Annotated[bool, typer.Option("--csv")] = False,
) -> None:
    """Run an InfluxQL query against the configured InfluxDB; print a table (or CSV)."""
    from pipeline.influx import influxql as run

    try:
        series = run(load_settings().influx, influxql)
    except Exception as e:
        console.print(f"[red]query failed:[/] {e}")
        raise typer.Exit(1) from None
    if as_csv:
        writer = csv.writer(sys.stdout)
        for s in series:
            tag_names = sorted(s["tags"])
            writer.writerow(["name", *tag_names, *s["columns"]])
            for row in s["values"]:
                writer.writerow([s["name"], *(s["tags"][t] for t in tag_names), *row])
        return
    for name in dict.fromkeys(s["name"] for s in series):
        console.print(series_table([s for s in series if s["name"] == name]))
    if not series:
        console.print("(no rows)")


def series_table(series: list[dict]) -> Table:
    """InfluxQL series of one measurement as one table: a column per tag, then the value columns."""
    tag_names = sorted({k for s in series for k in s["tags"]})
    table = Table(title=series[0]["name"] if series else "")
    for column in [*tag_names, *(series[0]["columns"] if series else [])]:
        table.add_column(column)
    for s in series:
        for row in s["values"]:
            cells = [_iso_ms(v) if c == "time" and isinstance(v, int) else str(v) for c, v in zip(s["columns"], row)]
            table.add_row(*(s["tags"].get(t, "") for t in tag_names), *cells)
    return table


def _iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
