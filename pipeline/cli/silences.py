"""``yuflow silence``: maintenance windows, set, listed and ended by operators."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pipeline.cli.terminal import console
from pipeline.settings import load_settings

silence_app = typer.Typer(
    help="Maintenance windows: a sensor's, station's or area's alerts held back until a time.", no_args_is_help=True
)


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
