"""What the water screen is told: each parameter's pollution direction and resolution
(``ParameterSpec``, from config/parameters.toml) and its settings (``ScreenSettings``, ``[water.screen]``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

DIRECTIONS = {"up": 1.0, "down": -1.0, "both": 0.0}  # "none": screened, never evidence of an event


@dataclass(frozen=True)
class ParameterSpec:
    """What the screen knows of a parameter: its pollution direction and its sensor's resolution
    (the noise floor of its scale, in its canonical unit); both come from config/parameters.toml."""

    name: str
    direction: str = "both"  # up | down | both | none
    resolution: float = 1e-6

    def __post_init__(self):
        if self.direction not in (*DIRECTIONS, "none"):
            raise ValueError(f"{self.name}: direction must be up, down, both or none, got {self.direction!r}")
        if not self.resolution > 0:
            raise ValueError(f"{self.name}: resolution must be > 0, got {self.resolution!r}")


@dataclass(frozen=True)
class ScreenSettings:
    """The screen's settings; every time in seconds (config/water.toml ``[screen]``)."""

    fast_level_s: float = 3600.0  # time constant of the fast level (the day's wander)
    slow_level_s: float = 48 * 3600.0  # of the slow level (broad plumes far downstream)
    scale_s: float = 3 * 86400.0  # of the EWMA of absolute residuals (it must have seen the usual wander)
    profile_days: float = 6.0  # memory of each knot of the daily profile, in days
    recent_s: float = 900.0  # the recent mean a parameter jumps to when its shift is accepted
    warmup_s: float = 2 * 3600.0  # no z until a parameter has been read this long ...
    warmup_readings: int = 6  # ... and this many times
    max_step_s: float = 3600.0  # a gap learns at most this much time (after a dropout)
    z_outlier: float = 3.0  # |z| of an outlier, in the parameter's direction
    z_clip: float = 6.0  # absolute residuals learned by the scale are clipped at this many sd
    z_cap: float = 6.0  # one parameter's evidence from one reading is at most this
    window_s: float = 60.0  # the event discriminator's window (decay time of its evidence) ...
    window_cadences: float = 1.0  # ... and at least this many of the sensor's cadences (a window shorter
    # than the gap between readings forgets each before the next comes)
    raise_evidence: float = 8.0  # raise when the evidence in the window reaches this
    clear_s: float = 60.0  # an event clears after this long with every parameter back
    back_fraction: float = 0.3  # a parameter is back within this fraction of its peak z in the event
    alarm_weight: float = 0.1  # learning weight of an outlier, or of any reading during an event
    accept_after_s: float = 1800.0  # a parameter outlying this long is its new normal
    stuck_s: float = 1200.0  # every parameter repeating for this long is a frozen instrument
    z_spike: float = 4.5  # a reading this many noise sd off both neighbours, one parameter alone, is a spike
    dropout_factor: float = 3.0  # a gap of this many cadences is a dropout
    restart_after_s: float = 7 * 86400.0  # a sensor silent this long (or sent back this far) learns afresh
    utc_offset_h: float = 0.0  # local time of the daily profile

    def __post_init__(self):
        if not self.z_cap < self.raise_evidence:
            raise ValueError(
                f"z_cap ({self.z_cap:g}) must be below raise_evidence ({self.raise_evidence:g}): "
                "one reading of one parameter must not raise an event alone"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> ScreenSettings:
        """Settings from a config table; an unknown key fails at once (a typo is not a default)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown water screen settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)
