"""The commands that run until interrupted: the MQTT -> Kafka bridge and the operators' web page (the
Faust worker's command is the agents', agents/cli.py)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from pipeline.cli.terminal import console
from pipeline.settings import load_settings


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
    from pipeline.bridge import run_bridge
    from pipeline.bridge_supervisor import supervise_bridges

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
