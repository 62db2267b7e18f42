"""The ``yuflow`` command (``python -m pipeline.cli`` runs it too).

Its command families, each in its own module:

- ``config``: ``config show``, the effective settings after checking every config file;
- ``services``: ``services up|down|status``, the embedded MQTT, Kafka and InfluxDB;
- ``long_running``: ``bridge`` and ``web``, which run until interrupted (``worker``: agents/cli.py);
- ``inspection``: ``status``, ``report`` and ``query``, which look at the system and its data;
- ``warning_stream``: ``warnings tail|ack|dispose|close|review|export`` and ``incidents``;
- ``silences``: ``silence add|list|remove``, maintenance windows.

The commands of the packages on top of the pipeline (sim, replay, demo, eval, and the agents'
worker) are mounted from their ``yuflow.commands`` entry points, without importing them here.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Annotated

import typer

from pipeline.cli.config import config_app
from pipeline.cli.inspection import query, report, status
from pipeline.cli.long_running import bridge, web
from pipeline.cli.services import services_app
from pipeline.cli.silences import silence_app
from pipeline.cli.warning_stream import incidents, warnings_app

app = typer.Typer(
    help="Yuflow: streaming sensor analytics for city governance.", no_args_is_help=True, add_completion=False
)
app.add_typer(config_app, name="config")
app.add_typer(services_app, name="services")
app.add_typer(warnings_app, name="warnings")
app.add_typer(silence_app, name="silence")


def _mount_entry_point_commands() -> None:
    """Mount the commands other packages declare as ``yuflow.commands`` entry points (pyproject.toml):
    the simulator's (sim, replay, demo), the evaluation's (eval) and the agents' (worker). They are
    applications on top of the pipeline, which mounts them without importing them. A Typer app
    becomes a command group, a function a command; by name, so the order does not depend on how the
    package was installed."""
    for entry in sorted(entry_points(group="yuflow.commands"), key=lambda e: e.name):
        command = entry.load()
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=entry.name)
        else:
            app.command(entry.name)(command)


_mount_entry_point_commands()

# after the mounted ones, in the order `yuflow --help` lists them
for _command in (status, incidents, bridge, web, report, query):
    app.command()(_command)


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


def main() -> None:
    app()
