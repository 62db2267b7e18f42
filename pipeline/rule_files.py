"""The rule files of config/, one pydantic model each: every key typed, an unknown key refused.

Loaded and validated by pipeline/rules.py (``rules()``). A default that the code used to supply
(``.get(key, default)``) is the field's default here, declared once.
"""

from __future__ import annotations

from typing import Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

TierName = Literal["blue", "yellow", "orange", "red"]
CategoryName = Literal["water", "rain", "crowd"]
LevelName = Literal["township", "district", "city"]
ServiceLevel = Literal["A", "B", "C", "D", "E", "F"]  # Fruin's pedestrian levels of service


class Rule(BaseModel):
    """A table of a rule file: its keys are exactly the fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- config/warnings.toml ---------------------------------------------------------------------------
class Escalation(Rule):
    intake_hours_red: float
    arrival_update_h: float
    min_source_probability: float


class Lifecycle(Rule):
    resend_after_min: float
    escalate_after: int = Field(ge=1)
    check_interval_s: float = Field(gt=0)


class Grouping(Rule):
    deescalate_after_min: float
    early_alert_h: float
    trace_hold_h: float
    plume_margin_h: float


class WarningsFile(Rule):
    tier_from_severity: dict[TierName, float]
    checklists: dict[CategoryName, list[str]] = {}
    escalation: Escalation
    checklists_traced: dict[CategoryName, list[str]] = {}
    lifecycle: Lifecycle
    grouping: Grouping

    @model_validator(mode="after")
    def _every_tier(self) -> Self:
        missing = [t for t in get_args(TierName) if t not in self.tier_from_severity]
        if missing:
            raise ValueError(f"tier_from_severity: missing {', '.join(missing)}")
        return self


# --- config/routing.toml and config/roster.toml -------------------------------------------------------
class TierOrder(Rule):
    order: list[TierName]


class RoutingFile(Rule):
    tiers: TierOrder
    levels: dict[TierName, list[LevelName]]
    categories: dict[CategoryName, dict[TierName, list[str]]]
    departments: dict[str, str]  # department id -> name

    @model_validator(mode="after")
    def _known_departments(self) -> Self:
        for category, tiers in self.categories.items():
            for tier, departments in tiers.items():
                unknown = [d for d in departments if d not in self.departments]
                if unknown:
                    raise ValueError(f"categories.{category}.{tier}: unknown department {', '.join(unknown)}")
        return self


class Person(Rule):
    name: str
    role: str
    department: str
    district: str
    township: str = ""  # empty: every township of the district
    phone: str


class RosterFile(Rule):
    posts: dict[str, str] = {}  # department -> duty post, {district} / {township} filled in
    city_posts: dict[str, str] = {}  # department -> the municipal post, when a warning reaches the city level
    persons: list[Person] = []


# --- config/rain.toml --------------------------------------------------------------------------------
class RainTier(Rule):
    tier: TierName
    window_h: int | float = Field(gt=0)  # int or float as written: it shows in messages
    mm: float = Field(gt=0)


class RainWatchRules(Rule):
    step_s: float = Field(gt=0)
    nowcast_h: float = Field(gt=0)
    forecast_quantile: Literal["p10", "p50", "p90"]
    clear_after_h: float
    flood_depth_m: float
    flood_tier: TierName
    forecast_within_window: bool = False
    corroborate_fraction: float = 0.2
    corroborate_neighbours: int = Field(2, ge=1)
    tile_km: float | None = None  # None: one tile over the whole city
    halo_km: float = 0.0


class NowcastRules(Rule):
    """models/rain_nowcast.py StormNowcaster's keyword arguments; an omitted one takes the nowcaster's default."""

    track_h: float | None = None
    min_fixes: int | None = None
    wet_mm_h: float | None = None
    min_peak_mm_h: float | None = None
    trend_h: float | None = None
    max_growth: float | None = None
    residual_h: float | None = None
    members: int | None = None
    speed_sd: float | None = None
    angle_sd_deg: float | None = None
    intensity_sd: float | None = None
    suspect_mm_h: float | None = None
    suspect_ratio: float | None = None
    decay_h: float | None = None
    life_h: float | None = None
    life_fixes: int | None = None
    seed: int | None = None

    def kwargs(self) -> dict[str, float]:
        return self.model_dump(exclude_none=True)


class RainFile(Rule):
    tiers: list[RainTier] = Field(min_length=1)
    watch: RainWatchRules
    nowcast: NowcastRules = NowcastRules()


# --- config/crowd.toml -------------------------------------------------------------------------------
class LevelBounds(Rule):
    """Each level's upper density bound, persons/m² (above E is F)."""

    A: float
    B: float
    C: float
    D: float
    E: float


class CrowdWatchRules(Rule):
    step_s: int = Field(gt=0)
    forecast_min: int = Field(gt=0)
    alpha: float
    beta: float
    flow_weight: float
    clear_below: float
    clear_after_min: int
    camera_max_age_s: int
    persons_per_officer: int = Field(gt=0)


class CrowdFile(Rule):
    congestion_density: float
    level_of_service: LevelBounds
    tiers: dict[TierName, ServiceLevel]
    watch: CrowdWatchRules
    dispersal: dict[TierName, list[str]] = {}


# --- config/tracing.toml and config/sources.toml ---------------------------------------------------
class TracingFit(Rule):
    durations_min: list[int] = Field(min_length=1)
    t0_step_min: int = Field(gt=0)
    max_travel_h: int | float = Field(gt=0)  # as written: it shows in messages
    residual_correlation: float
    signature_weight: float
    flow_sd: float
    flow_factors: list[float] = Field(min_length=1)


class TracingAgent(Rule):
    looks_min: list[int] = Field(min_length=1)


class TracingFile(Rule):
    priors: dict[str, dict[str, float]]  # leading pollutant -> source type -> prior probability
    fit: TracingFit
    agent: TracingAgent


class SourcesFile(Rule):
    profiles: dict[str, dict[str, float]]  # "type" or "type.subtype" -> pollutant -> relative mass


# --- config/gb3838.toml and config/parameters.toml -----------------------------------------------------
class StandardRow(Rule):
    """One parameter's GB 3838 limits: by class (I-V) for a min or max bound, or low-high for a range."""

    bound: Literal["min", "max", "range"]
    I: float | None = None  # noqa: E741 (the standard's class names)
    II: float | None = None
    III: float | None = None
    IV: float | None = None
    V: float | None = None
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _limits_for_bound(self) -> Self:
        needed = ("low", "high") if self.bound == "range" else ("I", "II", "III", "IV", "V")
        missing = [k for k in needed if getattr(self, k) is None]
        if missing:
            raise ValueError(f"bound {self.bound!r} needs {', '.join(missing)}")
        return self


class Gb3838File(RootModel[dict[str, StandardRow]]):
    model_config = ConfigDict(frozen=True)

    def table(self) -> dict[str, dict[str, Any]]:
        """As models/standards.py ``class_limits`` takes it."""
        return {parameter: row.model_dump(exclude_none=True) for parameter, row in self.root.items()}


class ParameterRule(Rule):
    label: str = ""
    unit: str
    convert: dict[str, float]  # alternative unit -> factor to the canonical unit
    min: float
    max: float
    direction: Literal["up", "down", "both", "none"] = "both"  # water: the way a change is evidence
    resolution: float = Field(1e-6, gt=0)  # water: the sensor's smallest step
    instances: int = Field(1, ge=1)  # several instruments of one quantity: name, name_2, ... name_N


class ParametersFile(Rule):
    water: dict[str, ParameterRule] = {}
    rain: dict[str, ParameterRule] = {}
    crowd: dict[str, ParameterRule] = {}
    camera: dict[str, ParameterRule] = {}
