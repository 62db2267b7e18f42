"""``yuflow config``: the effective settings, after checking every file of the config directory."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.cli.terminal import console
from pipeline.settings import load_settings, masked_dict

config_app = typer.Typer(help="Settings.", no_args_is_help=True)


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
