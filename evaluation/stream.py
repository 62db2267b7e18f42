"""``yuflow eval water --stream``: the seed scenarios through the real pipeline (MQTT, bridge, Kafka,
Faust agents, InfluxDB), judged on the same ground truth as the offline evaluation."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pipeline import services
from pipeline.city import City
from pipeline.operators import follow_warnings
from pipeline.processes import Background
from pipeline.schemas import Warning, utc_now
from pipeline.settings import Settings
from pipeline.status import bridge_online
from sensors_sim.publisher import publish_timed
from sensors_sim.recording import messages
from sensors_sim.scenario import load_scenario
from sensors_sim.simulation import simulate


@dataclass
class StreamResult:
    scenario: str
    detected: bool
    delay_min: float | None  # first warning's event time minus the truth's expected detection
    top1: str | None
    truth_source: str | None
    arrival_error: float | None  # at the first intake named, relative to the true travel time
    wall_s_to_warning: float | None  # publish finished -> first warning received
    wall_s_to_source: float | None  # publish finished -> warning naming a source received


async def _collect(settings: Settings, stations: set[str], since_s: float, timeout_s: float, started: float):
    first, traced = None, None
    try:
        async with asyncio.timeout(timeout_s):
            async for w in follow_warnings(settings, from_beginning=True):
                if w.station not in stations or w.ts.timestamp() < since_s:
                    continue
                if first is None:
                    first = (w, time.monotonic() - started)
                if w.suspects and traced is None:
                    traced = (w, time.monotonic() - started)
                if w.suspects and w.arrivals:  # the answer with an intake at risk, when there is one
                    return first, (w, traced[1])
    except TimeoutError:
        pass
    return first, traced


def run_scenario(settings: Settings, city: City, name: str, timeout_s: float = 120) -> StreamResult:
    recording = simulate(load_scenario(name, city=city), city)
    frame = recording.frame
    shift_s = (int(utc_now().timestamp() * 1000) - int(frame["ts_ms"].max())) / 1000
    event = next(e for e in recording.truth.events if e.type in ("release", "oil_spill", "do_sag"))
    stations = {s.removeprefix("wq-") for s in event.affected_sensors}
    publish_timed(messages(frame, settings.mqtt.topic_root, int(shift_s * 1000)), settings.mqtt)
    started = time.monotonic()
    first, traced = asyncio.run(_collect(settings, stations, event.start.timestamp() + shift_s, timeout_s, started))
    result = StreamResult(
        name,
        first is not None,
        None,
        None,
        event.source_id,
        None,
        first[1] if first else None,
        traced[1] if traced else None,
    )
    if first is not None and event.expected_detection is not None:
        result.delay_min = (first[0].ts.timestamp() - (event.expected_detection.timestamp() + shift_s)) / 60
    if traced is not None:
        w: Warning = traced[0]
        result.top1 = w.suspects[0].source_id
        for a in w.arrivals:
            true_h = event.details.get("intake_arrival_h", {}).get(a.intake_id)
            if true_h:
                true_arrival = event.start.timestamp() + shift_s + true_h * 3600
                result.arrival_error = abs(a.arrival.timestamp() - true_arrival) / (true_h * 3600)
                break
    return result


def evaluate_stream(
    settings: Settings, city: City, scenarios: tuple[str, ...] = ("ruxi_oil_spill", "puhe_do_sag"), log=print
) -> list[StreamResult]:
    started: list[Background] = []
    try:
        services.up(settings)
        started += [Background("worker", ["worker"], settings), Background("bridge", ["bridge"], settings)]
        bridge_online(settings, started[1].pid)
        results = []
        for name in scenarios:
            log(f"streaming {name} through MQTT -> bridge -> Kafka -> agents ...")
            results.append(run_scenario(settings, city, name))
        return results
    finally:
        for process in reversed(started):
            process.stop()
        services.down(settings)
