"""Simulate a scenario on a city: ``simulate(scenario, city)`` -> a ``Recording``.

Every feed is built as (time, sensor) arrays with numpy, events and faults injected, the ground
truth recorded, and everything flattened into one long frame. No per-reading Python loops: the
loops run over events, parameters and feeds. Each step draws from its own seeded random stream
(``sensors_sim.run``), so a run is reproducible byte for byte.
"""

from __future__ import annotations

from pipeline.city import City, load_toml
from sensors_sim.crowd_feed import simulate_crowd
from sensors_sim.fault_injection import false_oil_detections, inject_sensor_faults
from sensors_sim.frame import to_frame
from sensors_sim.rain_feed import simulate_rain
from sensors_sim.recording import Recording
from sensors_sim.run import Run
from sensors_sim.scenario import Scenario
from sensors_sim.truth import GroundTruth
from sensors_sim.water_feed import simulate_water


def simulate(scn: Scenario, city: City) -> Recording:
    run = Run.begin(scn, city)
    simulate_water(run)
    simulate_rain(run)
    simulate_crowd(run)
    specs = load_toml("parameters")
    inject_sensor_faults(run, specs)
    if run.simulates("camera"):
        false_oil_detections(run)
    frame = to_frame(run, specs)
    truth = GroundTruth(
        scenario=scn.name,
        seed=scn.seed,
        scale=scn.scale,
        start=scn.start,
        end=run.at(scn.duration_s),
        steps_s=dict(scn.steps_s),
        events=run.truth,
    )
    return Recording(frame=frame, truth=truth)


__all__ = ["simulate"]
