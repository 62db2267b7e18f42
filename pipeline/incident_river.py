"""When what an incident saw passes down the river: the times and the dam site the incident engine
(models/incident_decisions.py) takes as plain values, from the city's river network."""

from __future__ import annotations

from pipeline.city import City, Dam
from pipeline.rule_files import WarningsFile
from pipeline.schemas import TracingResult


def river_passed_s(city: City, point, river: str, at_s: float, rules: WarningsFile) -> float:
    """When what was at ``point`` at ``at_s`` will have passed the river's last station, plus a margin."""
    times = [
        t
        for st in city.stations.values()
        if st.river == river and not st.treated
        if (t := city.network.travel_time_s(point, st.point)) is not None
    ]
    return at_s + max(times, default=0.0) + rules.grouping.plume_margin_h * 3600


def plume_passed_s(city: City, result: TracingResult, rules: WarningsFile) -> float:
    """When a traced plume will have passed the last station of the incident's river: the incident
    stays open, at least blue, while it travels, so the downstream exceedances it causes join it."""
    top = result.suspects[0]
    released_s = result.ts.timestamp() - top.travel_time_h * 3600
    return river_passed_s(
        city, city.sources[top.source_id].point, result.incident_key.split(":", 1)[1], released_s, rules
    )


def dam_ahead(city: City, result: TracingResult, intake_point) -> Dam | None:
    """The interception-dam site furthest downstream between the top suspect and the intake it
    threatens that the plume has not reached by the end of the readings traced (None: none left)."""
    top = result.suspects[0]
    source_point = city.sources[top.source_id].point
    now_s = (result.observed_until or result.ts).timestamp()
    released_s = result.ts.timestamp() - top.travel_time_h * 3600
    nominal_s = city.network.travel_time_s(source_point, city.stations[result.station].point)
    slower = top.travel_time_h * 3600 / nominal_s if nominal_s else 1.0  # today's flow against the model's
    ahead = [
        (city.network.distance_km(source_point, d.point), d)
        for d in city.dams.values()
        if city.network.path(source_point, d.point)
        and city.network.path(d.point, intake_point)
        and released_s + city.network.travel_time_s(source_point, d.point) * slower > now_s
    ]
    return max(ahead, key=lambda x: x[0])[1] if ahead else None
