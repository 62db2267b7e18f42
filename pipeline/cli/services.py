"""``yuflow services``: the embedded MQTT, Kafka and InfluxDB services (or checks of external ones)."""

from __future__ import annotations

import typer
from rich.table import Table

from pipeline.cli.terminal import console
from pipeline.settings import load_settings

services_app = typer.Typer(help="Embedded MQTT, Kafka and InfluxDB services.", no_args_is_help=True)


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
