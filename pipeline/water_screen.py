"""The water screen as configured: its parameters from config/parameters.toml (direction and
resolution, every instrument of a quantity) and its settings from ``[water.screen]``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from models.water_screen import WaterScreen
from models.water_screen_settings import ParameterSpec, ScreenSettings
from pipeline.rules import rules
from pipeline.schemas import Kind
from pipeline.validation import parameter_specs


@lru_cache(maxsize=1)
def water_parameters() -> dict[str, ParameterSpec]:
    """Every water parameter accepted on the wire, as the screen knows it, by name."""
    specs = parameter_specs(rules().parameters)[Kind.water]
    return {name: ParameterSpec(name, spec.direction, spec.resolution) for name, spec in sorted(specs.items())}


def water_label(parameter: str) -> str:
    """The parameter's label for people (a second instrument: the label with its number)."""
    specs = parameter_specs(rules().parameters)[Kind.water]
    base, _, n = parameter.rpartition("_")
    if parameter not in specs:
        return parameter
    label = specs[parameter].label or parameter
    return f"{label} #{n}" if n.isdigit() and base in specs else label


def screen_settings(values: Mapping[str, float], **overrides: float) -> ScreenSettings:
    return ScreenSettings.from_mapping({**values, **overrides})


def new_screen(values: Mapping[str, float], parameters: Sequence[str] | None = None, **overrides: float) -> WaterScreen:
    """A screen over ``parameters`` (default: every water parameter) with settings ``values``
    (``Settings.water.screen``) and ``overrides``."""
    specs = water_parameters()
    return WaterScreen([specs[p] for p in (parameters or specs)], screen_settings(values, **overrides))
