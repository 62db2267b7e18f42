"""Rainstorm tiers (models/rain_tiers.py): the CMA tiers from config reached and forecast, one gauge and many."""

from __future__ import annotations

import numpy as np
import pytest

from models.rain_tiers import tier_forecast, tier_reached, tiers_many
from pipeline.city import load_toml
from tests.unit.rain_builders import STEP, filled

TIERS = load_toml("rain")["tiers"]


@pytest.mark.parametrize(
    ("mm_per_5min", "hours", "expected"),
    [
        (50.0 / 144, 12, "blue"),  # 50 mm in 12 h
        (50.0 / 72, 6, "yellow"),  # 50 mm in 6 h
        (50.0 / 36, 3, "orange"),  # 50 mm in 3 h
        (100.0 / 36, 3, "red"),  # 100 mm in 3 h
        (49.0 / 144, 12, None),  # just short of blue
    ],
)
def test_cma_tiers_from_config_at_their_thresholds(mm_per_5min, hours, expected):
    slots = int(hours * 12)
    acc = filled([mm_per_5min] * slots)
    assert tier_reached(acc, slots * STEP, TIERS).tier == expected


def test_a_tier_is_forecast_when_observed_plus_nowcast_reaches_it_and_not_below_the_one_reached():
    acc = filled([2.5] * 12)  # 30 mm in the last hour
    leads = np.arange(1, 73) * STEP  # 6 h of 5-min leads
    wet = 40.0 / 12 * np.arange(1, 73)  # and 40 mm/h to come: 30 + 40 τ >= 100 at τ = 1.75 h
    fc = tier_forecast(acc, 12 * STEP, wet, leads, TIERS)
    assert fc == ("red", 6300.0, pytest.approx(100.0, abs=0.01), 3)
    assert (
        tier_forecast(acc, 12 * STEP, 2.5 * np.arange(1, 73), leads, TIERS).tier == "orange"
    )  # 30 mm/h: 90 mm in 3 h at most
    assert tier_forecast(acc, 12 * STEP, np.zeros(72), leads, TIERS) is None
    done = filled([100.0 / 36] * 36)  # red already reached: nothing higher to forecast
    assert tier_forecast(done, 36 * STEP, wet, leads, TIERS) is None


def test_the_field_form_agrees_with_the_one_gauge_form():
    rng = np.random.default_rng(5)
    leads = np.arange(1, 73) * STEP
    recent = rng.gamma(0.6, 1.5, (40, 144))
    forecast = np.cumsum(rng.gamma(0.6, 1.5, (40, 72)), axis=1)
    field = tiers_many(recent, forecast, leads, STEP, TIERS)
    for g in range(40):
        acc = filled(recent[g])
        now, fc = tier_reached(acc, 144 * STEP, TIERS), tier_forecast(acc, 144 * STEP, forecast[g], leads, TIERS)
        assert now.tier == (TIERS[field.reached[g]]["tier"] if field.reached[g] >= 0 else None)
        assert (fc.tier if fc else None) == (TIERS[field.forecast[g]]["tier"] if field.forecast[g] >= 0 else None)
        if fc:
            assert fc.lead_s == field.lead_s[g]
