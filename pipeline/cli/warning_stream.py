"""``yuflow warnings`` (follow, act on and export the operators' warning stream) and ``yuflow
incidents`` (the incidents on the warnings and lifecycle topics)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.markup import escape

from pipeline.cli.terminal import console
from pipeline.schemas import Tier
from pipeline.settings import load_settings

warnings_app = typer.Typer(help="The operators' warning stream.", no_args_is_help=True)


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
