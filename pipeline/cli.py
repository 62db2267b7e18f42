"""The ``yuflow`` command."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import sys
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from pipeline.schemas import Tier
from pipeline.settings import load_settings, masked_dict

app = typer.Typer(
    help="Yuflow: streaming sensor analytics for city governance.", no_args_is_help=True, add_completion=False
)
config_app = typer.Typer(help="Settings.", no_args_is_help=True)
services_app = typer.Typer(help="Embedded MQTT, Kafka and InfluxDB services.", no_args_is_help=True)
warnings_app = typer.Typer(help="The operators' warning stream.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(services_app, name="services")
silence_app = typer.Typer(
    help="Maintenance windows: a sensor's, station's or area's alerts held back until a time.", no_args_is_help=True
)
app.add_typer(warnings_app, name="warnings")
app.add_typer(silence_app, name="silence")


def _mount_entry_point_commands() -> None:
    """Mount the commands other packages declare as ``yuflow.commands`` entry points (pyproject.toml):
    the simulator's (sim, replay, demo) and the evaluation's (eval). They are applications on top of
    the pipeline, which mounts them without importing them. A Typer app becomes a command group, a
    function a command; by name, so the order does not depend on how the package was installed."""
    for entry in sorted(entry_points(group="yuflow.commands"), key=lambda e: e.name):
        command = entry.load()
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=entry.name)
        else:
            app.command(entry.name)(command)


_mount_entry_point_commands()

console = Console()


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False) -> None:
    """Print the effective settings (defaults < user file < YUFLOW_* env), secrets masked, after checking
    every file of the config directory: a wrong key exits 1 naming the file and the key."""
    from pipeline.rules import config_problems

    if problems := config_problems():
        errors = Console(stderr=True)
        errors.print("[red]invalid configuration:[/]")
        for line in problems:
            errors.print(escape(line), highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    data = masked_dict(load_settings())
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    table = Table(title="Effective settings", show_lines=False)
    table.add_column("setting")
    table.add_column("value")

    def rows(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                rows(f"{prefix}.{k}" if prefix else k, v)
        else:
            table.add_row(prefix, str(value))

    rows("", data)
    console.print(table)


def _print_statuses(statuses) -> None:
    table = Table()
    for column in ("service", "state", "address", "pid", "detail"):
        table.add_column(column)
    colours = {
        "started": "green",
        "running": "green",
        "external": "cyan",
        "stopped": "dim",
        "down": "red",
        "unhealthy": "red",
    }
    for s in statuses:
        table.add_row(s.name, f"[{colours.get(s.state, 'white')}]{s.state}[/]", s.address, str(s.pid or ""), s.detail)
    console.print(table)


@services_app.command("up")
def services_up() -> None:
    """Start (or check, when external) MQTT, Kafka and InfluxDB; create topics and the database."""
    from pipeline import services

    try:
        with console.status("starting services..."):
            statuses = services.up(load_settings())
    except services.ServiceError as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    _print_statuses(statuses)


@services_app.command("down")
def services_down() -> None:
    """Stop the services Yuflow started (never external ones, never foreign processes)."""
    from pipeline import services

    _print_statuses(services.down(load_settings()))


@services_app.command("status")
def services_status() -> None:
    from pipeline import services

    statuses = services.status(load_settings())
    _print_statuses(statuses)
    if any(s.state in ("stopped", "down", "unhealthy") for s in statuses):
        raise typer.Exit(3)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"yuflow {version('yuflow')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Yuflow: streaming sensor analytics for city governance."""


@app.command()
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


@app.command()
def incidents(
    open_only: Annotated[bool, typer.Option("--open", help="only incidents not closed")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON line per incident")] = False,
) -> None:
    """The incidents on the warnings and lifecycle topics: id, tier, area, age, who acknowledged, state."""
    from dataclasses import asdict

    from pipeline.operators import incidents_table, read_incidents

    rows = [r for r in asyncio.run(read_incidents(load_settings())) if not (open_only and r.closed)]
    if as_json:
        for r in rows:
            print(json.dumps(asdict(r), default=str, ensure_ascii=False), flush=True)
        return
    console.print(incidents_table(rows, datetime.now(UTC)) if rows else "no incidents" + (" open" if open_only else ""))


@silence_app.command("add")
def silence_add(
    until: Annotated[str, typer.Option(help="a duration (90m, 2h, 1d) or an ISO time with its zone")],
    reason: Annotated[
        str, typer.Option(help="why (maintenance, calibration ...): shown with every alert it holds back")
    ],
    sensor: Annotated[str | None, typer.Option(help="a sensor id")] = None,
    station: Annotated[str | None, typer.Option(help="a station, gauge or zone id")] = None,
    area: Annotated[str | None, typer.Option(help="a river, district, township or zone id")] = None,
    by: Annotated[str, typer.Option(help="who sets it")] = "operator",
) -> None:
    """Hold back the alerts of a sensor, station or area until a time; they are recorded as suppressed."""
    import uuid

    from pipeline.city import default_city
    from pipeline.operators import parse_until, send_silence
    from pipeline.schemas import Silence

    city = default_city()
    known = {
        "sensor": city.sensors,
        "station": {**city.stations, **city.gauges, **city.zones},
        "area": {**city.rivers, **city.districts, **city.townships, **city.zones},
    }
    try:
        chosen = [(kind, value) for kind, value in (("sensor", sensor), ("station", station), ("area", area)) if value]
        if len(chosen) != 1:
            raise ValueError("name exactly one of --sensor, --station, --area")
        kind, value = chosen[0]
        if value not in known[kind]:
            raise ValueError(f"unknown {kind} {value!r} (see config/city.toml)")
        now = datetime.now(UTC)
        silence = Silence(
            silence_id=f"s{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}",
            sensor_id=sensor or "",
            station=station or "",
            area=area or "",
            until=parse_until(until, now),
            reason=reason,
            by=by,
        )
    except ValueError as error:
        console.print(f"[red]rejected:[/] {escape(str(error))}", emoji=False, highlight=False)
        raise typer.Exit(2) from None
    asyncio.run(send_silence(load_settings(), silence))
    console.print(
        f"silence {silence.silence_id}: {silence.target} until {silence.until:%Y-%m-%d %H:%M} UTC ({escape(reason)})",
        emoji=False,
        highlight=False,
    )


@silence_app.command("list")
def silence_list(
    show_all: Annotated[bool, typer.Option("--all", help="also the expired and removed ones")] = False,
) -> None:
    """The silences in force (and with --all, the past ones)."""
    from pipeline.operators import read_silences

    now = datetime.now(UTC)
    silences = [x for x in asyncio.run(read_silences(load_settings())) if show_all or x.active(now)]
    if not silences:
        console.print("no silences in force" if not show_all else "no silences")
        return
    table = Table(title="Silences")
    for column in ("id", "target", "until (UTC)", "reason", "by", "state"):
        table.add_column(column, overflow="fold")
    for x in silences:
        table.add_row(
            x.silence_id,
            x.target,
            f"{x.until:%Y-%m-%d %H:%M}",
            escape(x.reason),
            escape(x.by),
            "in force" if x.active(now) else "removed" if x.removed else "expired",
        )
    console.print(table, emoji=False)


@silence_app.command("remove")
def silence_remove(
    silence_id: Annotated[str, typer.Argument(help="the id `yuflow silence list` shows")],
    by: Annotated[str, typer.Option(help="who ends it")] = "operator",
) -> None:
    """End a silence before its time."""
    from pipeline.operators import read_silences, send_silence

    settings = load_settings()
    found = next((x for x in asyncio.run(read_silences(settings)) if x.silence_id == silence_id), None)
    if found is None or not found.active(datetime.now(UTC)):
        console.print(f"[red]rejected:[/] no silence {escape(silence_id)} in force", emoji=False, highlight=False)
        raise typer.Exit(1)
    asyncio.run(send_silence(settings, found.model_copy(update={"removed": True, "by": by})))
    console.print(f"silence {silence_id} removed", emoji=False, highlight=False)


@app.command()
def bridge(
    log_level: str = "INFO",
    instance: Annotated[
        str | None, typer.Option(help="this bridge's name (default: bridge.instance); keep it across restarts")
    ] = None,
    instances: Annotated[
        int, typer.Option(help="run this many bridges of the shared subscription, restarting any that dies")
    ] = 1,
) -> None:
    """Run the MQTT -> Kafka bridge until interrupted (with --instances N: N bridges splitting the feed)."""
    from pipeline.bridge import run_bridge, supervise_bridges

    _logging(log_level)
    settings = load_settings()
    if instance:
        from pipeline.settings import BridgeSettings

        settings = settings.model_copy(
            update={"bridge": BridgeSettings(**{**settings.bridge.model_dump(), "instance": instance})}
        )
    if instances > 1:
        supervise_bridges(settings, instances)
    else:
        run_bridge(settings)


@app.command()
def worker(log_level: str = "info") -> None:
    """Run a Faust worker with every agent until interrupted."""
    from agents.app import run_worker

    run_worker(log_level)


@warnings_app.command("tail")
def warnings_tail(
    tier: Annotated[Tier | None, typer.Option(help="only this tier and above")] = None,
    district: Annotated[str | None, typer.Option()] = None,
    department: Annotated[str | None, typer.Option()] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="replay the topic from its start")] = False,
    max_warnings: Annotated[int | None, typer.Option("--max", help="stop after this many")] = None,
    timeout_s: Annotated[float | None, typer.Option("--timeout", help="stop after this many seconds")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON line per warning instead of the live table")
    ] = False,
) -> None:
    """Follow the warnings topic: a live table of the latest warnings (a line each when piped), with
    the warning id that `yuflow warnings ack` takes."""
    from pipeline.operators import WarningFilter, follow_warnings, warning_line, warnings_table

    settings = load_settings()
    where = WarningFilter(min_tier=tier, district=district, department=department)
    seen = []

    async def follow(live: Live | None) -> None:
        async for warning in follow_warnings(settings, from_beginning, timeout_s, where):
            seen.append(warning)
            if live is not None:
                live.update(warnings_table(seen[-25:]))
            else:  # a pipe or a file: a line per warning as it comes
                print(warning.model_dump_json() if as_json else warning_line(warning), flush=True)
            if max_warnings is not None and len(seen) >= max_warnings:
                return

    try:
        if as_json or not console.is_terminal:
            asyncio.run(follow(None))
        else:
            with Live(warnings_table([]), console=console, refresh_per_second=4) as live:
                asyncio.run(follow(live))
    except KeyboardInterrupt:
        pass


def _operator_action(stage: str, warning_or_incident_id: str, by: str, note: str, wait_s: float) -> None:
    from pipeline.operators import submit_action
    from pipeline.schemas import LifecycleEvent

    try:
        event = LifecycleEvent.by_operator(warning_or_incident_id, stage, by, note)
    except ValueError as error:
        console.print(f"[red]rejected:[/] {escape(str(error))}", emoji=False, highlight=False)
        raise typer.Exit(2) from None
    result = asyncio.run(submit_action(load_settings(), event, timeout_s=wait_s))
    if result is None:
        console.print(
            f"[yellow]no answer within {wait_s:g} s[/]: is `yuflow worker` running? The request stays queued and is "
            f"applied or rejected when a worker takes it.",
            emoji=False,
            highlight=False,
        )
        raise typer.Exit(3)
    if not result.accepted:
        console.print(
            f"[red]rejected:[/] {stage} {escape(event.incident_id)}: {escape(result.reason)}",
            emoji=False,
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(f"accepted: {stage} {escape(event.incident_id)} by {escape(by)}", emoji=False, highlight=False)


def _action_command(name: str, stage: str, doc: str) -> None:
    def command(
        id: Annotated[str, typer.Argument(help="warning or incident id")],
        by: Annotated[str, typer.Option("--by", help="who acts (name, department)")] = "operator",
        note: Annotated[str, typer.Option(help="what was done or learned")] = "",
        wait: Annotated[float, typer.Option("--wait", help="seconds to wait for the warning agent's answer")] = 15.0,
    ) -> None:
        _operator_action(stage, id, by, note, wait)

    command.__doc__ = doc
    warnings_app.command(name)(command)


for _name, _stage, _doc in (
    ("ack", "acknowledged", "Acknowledge a warning (签收): it stops being re-sent."),
    ("dispose", "disposed", "Record that the incident has been dealt with (处置)."),
    ("close", "closed", "Close the incident (办结); a new alert at the same place opens a new one."),
    ("review", "reviewed", "Record the review of a closed incident (复盘)."),
):
    _action_command(_name, _stage, _doc)


@warnings_app.command("export")
def warnings_export(
    fmt: Annotated[
        str, typer.Option("--format", help="cap: an OASIS CAP 1.2 XML file per warning; json: warnings.jsonl")
    ] = "cap",
    out: Annotated[Path, typer.Option(help="directory for the files")] = Path("cap"),
    tier: Annotated[Tier | None, typer.Option(help="only this tier and above")] = None,
    district: Annotated[str | None, typer.Option()] = None,
    department: Annotated[str | None, typer.Option()] = None,
    timeout_s: Annotated[float, typer.Option("--timeout", help="read the warnings topic for this many seconds")] = 5.0,
) -> None:
    """Export the warnings on the topic (from its start) as CAP 1.2 alerts (escalations are Updates) or JSON lines."""
    from pipeline.cap import cap_documents
    from pipeline.city import default_city
    from pipeline.operators import WarningFilter, follow_warnings

    if fmt not in ("cap", "json"):
        console.print(f"[red]--format is cap or json, not {fmt!r}[/]", emoji=False)
        raise typer.Exit(2)
    settings = load_settings()

    async def collect() -> list:
        return [
            w
            async for w in follow_warnings(
                settings, True, timeout_s, WarningFilter(min_tier=tier, district=district, department=department)
            )
        ]

    warnings = asyncio.run(collect())
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        (out / "warnings.jsonl").write_bytes(b"".join(w.to_json() + b"\n" for w in warnings))
        console.print(f"{len(warnings)} warning(s) written to {out}/warnings.jsonl", emoji=False)
        return
    documents = cap_documents(warnings, default_city())
    for name, xml in documents:
        (out / name).write_bytes(xml)
    console.print(f"{len(documents)} CAP 1.2 alert(s) written to {out}/", emoji=False)


@app.command()
def web(
    host: Annotated[str | None, typer.Option(help="default: web.host")] = None,
    port: Annotated[int | None, typer.Option(help="default: web.port")] = None,
) -> None:
    """The operators' web page: live warnings, filters, incident detail, acknowledge and close."""
    from pipeline.web import serve

    settings = load_settings()
    host, port = host or settings.web.host, port or settings.web.port
    console.print(f"Yuflow warnings page on http://{host}:{port}/", emoji=False)
    serve(settings, host, port)


@app.command()
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


@app.command()
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
