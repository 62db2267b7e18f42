"""Source tracing and its warning, on small synthetic rivers and results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from models.incidents import Incident
from models.river import RiverNetwork, RiverSpec
from models.tracing import Candidate, Catchment, Observations, SourceBeliefs, StationSeries, trace
from models.transport import dispersion_sigma_s, plume_mg_l
from pipeline.city import default_city
from pipeline.incident_traces import decide_traced
from pipeline.rules import WarningRouting, rules
from pipeline.schemas import CameraSighting, Category, IntakeArrival, SourceSuspect, TracingResult

RULES = rules()

NET = RiverNetwork({"r": RiverSpec("r", (20.0,), (0.5,), (5.0,), dispersion_m2s=10.0)})
PROFILES = {"sewage_plant": {"cod": 0.85, "nh3n": 0.15}, "vessel": {"oil": 1.0}}
PRIORS = {
    "cod": {"sewage_plant": 0.5, "vessel": 0.5},
    "nh3n": {"sewage_plant": 0.7, "vessel": 0.3},
    "oil": {"vessel": 0.6, "sewage_plant": 0.4},
}
CANDIDATES = [
    Candidate("a", "sewage_plant", ("r", 2.0)),
    Candidate("b", "sewage_plant", ("r", 8.0)),
    Candidate("dock", "vessel", ("r", 9.0)),
]
STATIONS = {"s1": ("r", 5.0), "s2": ("r", 12.0)}
BELIEFS = SourceBeliefs(PROFILES, PRIORS)
NOISE_SD = {"cod": 0.5, "nh3n": 0.02, "oil": 0.003}


def observed(
    source_km: float, loads: dict[str, float], start_s=3600.0, duration_s=1800.0, seed=0
) -> list[StationSeries]:
    """What the two stations see of a release (plus sensor noise), every 10 minutes for a day."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 86400, 600.0)
    series = []
    for sid, point in STATIONS.items():
        tau = NET.travel_time_s(("r", source_km), point)
        excess = {}
        for p in ("cod", "nh3n", "oil"):
            c = np.zeros_like(t)
            if tau is not None and p in loads:
                sigma = float(dispersion_sigma_s(tau, NET.distance_km(("r", source_km), point), 10.0))
                c = plume_mg_l(t - start_s, tau, sigma, duration_s, loads[p], 5.0)
            excess[p] = c + rng.normal(0, {"cod": 0.5, "nh3n": 0.02, "oil": 0.003}[p], len(t))
        series.append(StationSeries(sid, point, t, excess))
    return series


def first_detection(series: list[StationSeries]) -> tuple[str, float]:
    seen = [
        (s.t_s[np.argmax(s.excess["cod"] + 50 * s.excess["oil"] > 3)], s.station_id)
        for s in series
        if (s.excess["cod"] + 50 * s.excess["oil"] > 3).any()
    ]
    t, sid = min(seen)
    return sid, float(t)


@pytest.mark.parametrize("source_km, truth", [(2.0, "a"), (8.0, "b")])
def test_a_clean_station_between_two_plants_tells_them_apart(source_km, truth):
    series = observed(source_km, {"cod": 400.0, "nh3n": 60.0})
    sid, t = first_detection(series)
    suspects = trace(Catchment(NET, CANDIDATES), Observations(series, sid, t, NOISE_SD), BELIEFS)
    assert suspects[0].source_id == truth and suspects[0].probability > 0.9
    assert suspects[0].release_start_s == pytest.approx(3600, abs=600)
    assert suspects[0].masses_kg["cod"] == pytest.approx(400, rel=0.15)
    assert sum(s.probability for s in suspects) == pytest.approx(1.0)


def test_the_pollutant_mix_points_at_the_dock_not_the_plant_beside_it():
    series = observed(9.0, {"oil": 40.0})  # the dock is 1 km below plant b: only the mix tells them apart
    sid, t = first_detection(series)
    suspects = trace(Catchment(NET, CANDIDATES), Observations(series, sid, t, NOISE_SD), BELIEFS)
    assert suspects[0].source_id == "dock"
    assert suspects[0].signature_match > 0.9 > next(s.signature_match for s in suspects if s.source_id == "b")


def _result(hours_left: float, source_id="ruxi-food-factory") -> TracingResult:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return TracingResult(
        incident_key="water:ruxi",
        category=Category.water,
        station="ruxi-mingda",
        district="liangping",
        parameter="oil",
        ts=now,
        compute_ms=50.0,
        suspects=[
            SourceSuspect(
                source_id=source_id,
                name="食品厂",
                type="factory",
                enterprise="某公司",
                probability=0.9,
                distance_km=2.3,
                travel_time_h=1.3,
                explanation="fits",
            )
        ],
        arrivals=[
            IntakeArrival(
                intake_id="ruxi-intake",
                name="取水口",
                arrival=now + timedelta(hours=hours_left),
                earliest=now,
                latest=now + timedelta(hours=hours_left + 1),
                peak_mg_l=0.8,
                hours_left=hours_left,
            )
        ],
    )


def test_traced_warning_names_the_source_escalates_near_the_intake_and_is_not_repeated():
    city, rules, routing = default_city(), RULES.warnings, WarningRouting(routing=RULES.routing)
    incident = Incident("water:ruxi:1", open=False, tier="yellow")  # the river is clear again
    incident, warning = decide_traced(_result(4.7), incident, city, rules, routing)
    assert warning is not None and warning.tier.value == "red" and warning.suspects[0].source_id == "ruxi-food-factory"
    assert "emergency_management" in warning.departments and "city" in warning.levels
    assert any("某公司" in c for c in warning.checklist) and any("截污坝" in c for c in warning.checklist)
    assert decide_traced(_result(4.5), incident, city, rules, routing)[1] is None  # same source, same tier
    _, revised = decide_traced(_result(3.5), incident, city, rules, routing)  # a later look moves the arrival by 1.2 h
    assert revised is not None and "arrival revised" in revised.title and revised.warning_id != warning.warning_id
    dock = _result(4.5, "ruxi-mingda-dock")
    less_sure = dock.model_copy(update={"suspects": [dock.suspects[0].model_copy(update={"probability": 0.85})]})
    assert (
        decide_traced(less_sure, incident, city, rules, routing)[1] is None
    )  # less sure than the warned one (0.9): it stands
    surer = dock.model_copy(update={"suspects": [dock.suspects[0].model_copy(update={"probability": 0.95})]})
    _, other = decide_traced(surer, incident, city, rules, routing)
    assert other is not None and other.suspects[0].source_id == "ruxi-mingda-dock"
    _, far = decide_traced(_result(30.0), Incident("water:ruxi:2", tier="yellow"), city, rules, routing)
    assert far.tier.value == "yellow"  # a day and more away: no escalation
    seen = _result(30.0).model_copy(
        update={
            "camera_sightings": [
                CameraSighting(station="ruxi-mingda", camera_id="cam-ruxi-mingda", area_m2=300, confidence=0.9)
            ]
        }
    )
    _, corroborated = decide_traced(seen, Incident("water:ruxi:3", tier="yellow"), city, rules, routing)
    assert corroborated.tier.value == "orange" and "300 m²" in corroborated.message


def test_a_traced_plume_keeps_its_incident_open_red_until_it_passes_the_intake_then_blue_down_the_river():
    from models.incidents import active_tier

    city, rules, routing = default_city(), RULES.warnings, WarningRouting(routing=RULES.routing)
    result = _result(4.7)
    incident, warning = decide_traced(result, Incident("water:ruxi:1", tier="yellow", members={}), city, rules, routing)
    t0, intake_passed = result.ts.timestamp(), result.arrivals[0].latest.timestamp()
    assert (
        active_tier(incident.members, intake_passed - 1) == "red"
        and active_tier(incident.members, intake_passed) == "blue"
    )
    border_s = city.network.travel_time_s(city.sources["ruxi-food-factory"].point, city.stations["ruxi-border"].point)
    passed = t0 - 1.3 * 3600 + border_s + rules.grouping.plume_margin_h * 3600
    assert active_tier(incident.members, passed - 1) == "blue" and active_tier(incident.members, passed) is None
    # a result about an earlier incident does not land on a newer one
    newer = Incident(f"water:ruxi:{int(t0) + 60}", tier="blue", members={})
    assert decide_traced(result, newer, city, rules, routing) == (newer, None)


def test_the_checklist_names_only_a_dam_still_ahead_of_the_plume_and_an_unsure_look_names_no_one():
    city, rules, routing = default_city(), RULES.warnings, WarningRouting(routing=RULES.routing)
    first = _result(4.7)
    released_s = first.ts.timestamp() - 1.3 * 3600
    factory = city.sources["ruxi-food-factory"].point
    slower = 1.3 * 3600 / city.network.travel_time_s(factory, city.stations["ruxi-mingda"].point)
    reached_s = {
        d.name: released_s + city.network.travel_time_s(factory, d.point) * slower
        for d in city.dams.values()
        if d.river == "ruxi" and city.network.path(factory, d.point)
    }
    incident, warning = decide_traced(first, Incident("water:ruxi:1", tier="yellow", members={}), city, rules, routing)
    named = [name for name in reached_s if any(name in item for item in warning.checklist)]
    assert len(named) == 1 and reached_s[named[0]] > first.ts.timestamp()  # ahead of the plume when traced
    # a later look, the same arrival, with the plume past that dam: an update that no longer names it
    later = first.model_copy(update={"observed_until": datetime.fromtimestamp(reached_s[named[0]] + 60, UTC)})
    _, update = decide_traced(later, incident, city, rules, routing)
    assert update is not None and update.title.startswith("[更新 dam revised]")
    assert not any(named[0] in item for item in update.checklist)
    assert all(
        reached_s[name] > reached_s[named[0]] for name in reached_s if any(name in item for item in update.checklist)
    )
    # a look not sure enough of anyone names no one
    unsure = _result(4.7).model_copy(update={"suspects": [first.suspects[0].model_copy(update={"probability": 0.3})]})
    assert decide_traced(unsure, Incident("water:ruxi:2", tier="yellow"), city, rules, routing)[1] is None


def test_a_sharp_plume_points_at_the_near_source_not_a_far_one_on_a_faster_river():
    # one station: a far source could send the same plume only on a river much faster than today's
    # (dispersion narrows it), which the flow prior (sd 15 %) makes unlikely
    net = RiverNetwork({"r": RiverSpec("r", (20.0,), (0.5,), (5.0,), dispersion_m2s=10.0)})
    station, rng = ("r", 12.0), np.random.default_rng(3)
    t = np.arange(0, 12 * 3600, 300.0)
    tau = net.travel_time_s(("r", 10.0), station)
    cod = plume_mg_l(t - 3600, tau, float(dispersion_sigma_s(tau, 2.0, 10.0)), 600, 60.0, 5.0) + rng.normal(
        0, 0.2, len(t)
    )
    series = [StationSeries("s", station, t, {"cod": cod})]
    candidates = [Candidate("near", "sewage_plant", ("r", 10.0)), Candidate("far", "sewage_plant", ("r", 6.0))]
    first_t = float(t[np.argmax(cod > 1.0)])
    suspects = trace(Catchment(net, candidates), Observations(series, "s", first_t, {"cod": 0.2}), BELIEFS)
    assert suspects[0].source_id == "near" and suspects[0].probability > 0.9
    assert suspects[0].velocity_factor == pytest.approx(1.0, abs=0.1)
