"""The Ruxi oil spill on MQTT: the pipeline traces it to the food factory and warns the intake in time."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.city import default_city
from pipeline.operators import follow_warnings
from pipeline.schemas import Tier, utc_now
from sensors_sim.publisher import publish_timed
from sensors_sim.recording import messages
from sensors_sim.scenario import load_scenario, simulate

pytestmark = pytest.mark.integration


def test_simulated_oil_spill_yields_a_warning_naming_the_source(stack):
    city = default_city()
    recording = simulate(load_scenario("ruxi_oil_spill", city=city), city)
    frame = recording.frame
    shift_ms = int(utc_now().timestamp() * 1000) - int(frame["ts_ms"].max())
    assert publish_timed(messages(frame, stack.settings.mqtt.topic_root, shift_ms), stack.settings.mqtt) == frame["msg"].nunique()
    spill = recording.truth.of_type("oil_spill")[0]
    release_s = spill.start.timestamp() + shift_ms / 1000

    async def traced_warning():
        async for w in follow_warnings(stack.settings, from_beginning=True, timeout_s=120):
            if w.station == "ruxi-mingda" and w.suspects and w.ts.timestamp() >= release_s:
                return w

    warning = asyncio.run(traced_warning())
    assert warning is not None, stack.worker.log_tail(60)
    assert warning.suspects[0].source_id == "ruxi-food-factory", warning.suspects
    assert warning.suspects[0].distance_km == pytest.approx(2.3, abs=0.05)
    intake = next(a for a in warning.arrivals if a.intake_id == "ruxi-intake")
    true_arrival_s = release_s + spill.details["intake_arrival_h"]["ruxi-intake"] * 3600
    assert abs(intake.arrival.timestamp() - true_arrival_s) <= 0.1 * spill.details["intake_arrival_h"]["ruxi-intake"] * 3600
    assert warning.tier is Tier.red  # due at a drinking-water intake within 6 h
    assert "oil sheen" in warning.message and "cam-ruxi-mingda" in warning.message  # the camera corroborates
    assert any("截污坝" in item for item in warning.checklist) and any("停产" in item for item in warning.checklist)
    assert {"water_bureau", "ecology_environment", "emergency_management"} <= set(warning.departments)
