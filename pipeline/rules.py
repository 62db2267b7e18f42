"""The rule files of config/, loaded into their models (pipeline/rule_files.py) and validated at start.

An unknown key, a missing one or a value of the wrong type fails the load with the file and the key
named, e.g. ``config/warnings.toml: grouping.trace_hld_h: extra inputs are not permitted``, so a typo
stops ``yuflow config show``, the worker and the bridge at start rather than at the first alert.

The files are read from the config directory (``YUFLOW_CONFIG_DIR``, default ./config; see
pipeline/settings.py); ``rules()`` loads them once per process.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from models.warnings import recipients, route
from pipeline import settings as settings_module
from pipeline.rule_files import (
    CrowdFile,
    Gb3838File,
    ParametersFile,
    RainFile,
    RosterFile,
    RoutingFile,
    SourcesFile,
    TracingFile,
    WarningsFile,
)


class WarningRouting(BaseModel):
    """Where a warning goes: levels and departments by category and tier (routing.toml) and who
    answers for each department in an area (roster.toml). The pure rules are models/warnings.py's."""

    model_config = ConfigDict(frozen=True)
    routing: RoutingFile
    roster: RosterFile = RosterFile()

    def route(self, category: str, tier: str) -> tuple[list[str], list[str]]:
        """(levels, departments) that receive a warning of this category and tier."""
        return route(category, tier, self.routing.model_dump())  # models/ takes plain mappings

    def recipients(
        self, departments: Sequence[str], levels: Sequence[str], district: str, township: str, names: dict[str, str]
    ) -> list[str]:
        """The named persons and duty posts for the area (``names``: area id -> name)."""
        return recipients(departments, levels, district, township, names, self.roster.model_dump())


# --- loading ---------------------------------------------------------------------------------------
FILES: dict[str, type[BaseModel]] = {
    "warnings": WarningsFile,
    "routing": RoutingFile,
    "roster": RosterFile,
    "rain": RainFile,
    "crowd": CrowdFile,
    "tracing": TracingFile,
    "sources": SourcesFile,
    "gb3838": Gb3838File,
    "parameters": ParametersFile,
}


M = TypeVar("M", bound=BaseModel)


class RulesError(Exception):
    """Rule files that do not load: one line per problem, each naming the file and the key."""


@dataclass(frozen=True)
class Rules:
    warnings: WarningsFile
    routing: RoutingFile
    roster: RosterFile
    rain: RainFile
    crowd: CrowdFile
    tracing: TracingFile
    sources: SourcesFile
    gb3838: Gb3838File
    parameters: ParametersFile

    @property
    def warning_routing(self) -> WarningRouting:
        return WarningRouting(routing=self.routing, roster=self.roster)


def config_dir() -> Path:
    return settings_module.CONFIG_DIR


def shown(path: Path) -> str:
    """The path as people know it: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def key_path(loc: tuple) -> str:
    """A pydantic error location as a key path: ``tiers[1].window_h``, ``priors.oil`` (a bad key: the key)."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def problems(path: Path, error: ValidationError) -> list[str]:
    lines = []
    for e in error.errors():
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"{shown(path)}: {key_path(e['loc'])}: {message[:1].lower()}{message[1:]}")
    return lines


def read_toml(path: Path) -> dict:
    """The file's data; RulesError naming the file when it is missing or not TOML."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RulesError(f"{shown(path)}: {e}") from None


def load_rule(name: str, model: type[M], directory: Path | None = None) -> M:
    """One rule file as its model; RulesError naming the file and every bad key."""
    path = (directory or config_dir()) / f"{name}.toml"
    raw = read_toml(path)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise RulesError("\n".join(problems(path, e))) from None


def load_rules(directory: Path | None = None) -> Rules:
    """Every rule file, validated; RulesError with the problems of all of them."""
    loaded, errors = {}, []
    for name, model in FILES.items():
        try:
            loaded[name] = load_rule(name, model, directory)
        except RulesError as e:
            errors.append(str(e))
    if errors:
        raise RulesError("\n".join(errors))
    return Rules(**loaded)


@cache
def rules() -> Rules:
    """The rule files of the config directory, loaded once per process."""
    return load_rules()


def config_problems() -> list[str]:
    """What is wrong with the config directory, one line each (empty: nothing): the rule files,
    the city (city.toml, loaded as the worker loads it) and the simulator's scenarios.toml (as TOML)."""
    from pipeline.city import default_city

    found = []
    try:
        load_rules()
    except RulesError as e:
        found += str(e).splitlines()
    try:
        city_file = config_dir() / settings_module.load_settings().city.file
    except ValidationError as e:  # the settings (default.toml, yuflow.toml, YUFLOW_* variables)
        return found + [f"settings: {key_path(x['loc'])}: {x['msg']}" for x in e.errors()]
    try:
        default_city()
    except Exception as e:  # any error building the city: report it with the file, never a traceback
        found.append(f"{shown(city_file)}: {type(e).__name__}: {e}")
    try:
        read_toml(config_dir() / "scenarios.toml")
    except RulesError as e:
        found.append(str(e))
    return found


def rules_or_exit(program: str) -> Rules:
    """``rules()``, or exit (status 1, no traceback) saying which file and key are wrong: for the
    commands that start a long-running process (the worker, the bridge)."""
    try:
        return rules()
    except RulesError as e:
        raise SystemExit(f"{program}: invalid configuration\n{e}") from None
