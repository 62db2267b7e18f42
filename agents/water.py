"""Water agent: GB 3838 exceedance with a persistence rule -> Alerts.

Per (sensor, parameter) persistence state lives in a Faust table, so it survives a worker restart
(rebuilt from the changelog). The stream is keyed by sensor id, so one sensor's state stays in one
partition. Later issues add statistical detectors beside the standard check; the agent stays thin.
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.app import SETTINGS, alerts_topic, app, dead_letter, readings_topics
from models.persistence import Change, PersistenceState, step
from models.standards import Limit, class_limits
from pipeline.city import City, default_city, load_toml
from pipeline.schemas import Alert, Category, Kind, Reading

PERSISTENCE_READINGS = SETTINGS.water.persistence_readings

persistence_table = app.Table("water_persistence", default=None, partitions=SETTINGS.kafka.partitions)


def station_limits(city: City, gb3838: Mapping, default_class: str) -> dict[str, dict[str, Limit]]:
    """Limits per station id, by the station's target class."""
    return {
        station.id: class_limits(gb3838, station.target_class or default_class)
        for station in city.stations.values()
    }


def assess(
    reading: Reading,
    limits: Mapping[str, Limit],
    states: Mapping[str, PersistenceState],
    persistence: int,
    city: City,
) -> tuple[dict[str, PersistenceState], list[Alert]]:
    """New persistence states per parameter and the alerts raised or cleared by this reading."""
    station = city.stations[reading.station]
    new_states: dict[str, PersistenceState] = {}
    alerts: list[Alert] = []
    for parameter, quantity in reading.values.items():
        limit = limits.get(parameter)
        if limit is None:
            continue
        severity = limit.severity(quantity.value)
        state, change = step(states.get(parameter, PersistenceState()), severity, persistence)
        new_states[parameter] = state
        if change is None:
            continue
        label = load_toml("parameters")["water"][parameter].get("label", parameter)
        if change is not Change.cleared:
            relation = "below" if limit.low is not None and quantity.value < limit.low else "above"
            running = f"for {persistence} readings running" if change is Change.raised else "and worsening"
            message = (
                f"{station.name}: {label} {quantity.value:.3g} {quantity.unit} {relation} the class "
                f"{station.target_class} limit {limit.bound:g} {running}"
            )
        else:
            message = f"{station.name}: {label} back within the class {station.target_class} limit"
        alerts.append(
            Alert(
                alert_id=f"{reading.sensor_id}:{parameter}:{int(reading.ts.timestamp() * 1000)}",
                category=Category.water,
                rule="gb3838_exceedance",
                sensor_id=reading.sensor_id,
                station=reading.station,
                district=reading.district,
                township=station.township,
                ts=reading.ts,
                parameter=parameter,
                value=quantity.value,
                unit=quantity.unit,
                limit=limit.bound,
                severity=severity or 0.0,
                message=message,
                resolved=change is Change.cleared,
            )
        )
    return new_states, alerts


CITY = default_city()
LIMITS = station_limits(CITY, load_toml("gb3838"), SETTINGS.water.default_class)


@app.agent(readings_topics[Kind.water])
async def water(stream):
    async for raw in stream:
        try:
            reading = Reading.model_validate_json(raw)
            keys = {p: f"{reading.sensor_id}|{p}" for p in reading.values}
            states = {p: PersistenceState(*persistence_table[k]) for p, k in keys.items() if k in persistence_table}
            new_states, alerts = assess(reading, LIMITS[reading.station], states, PERSISTENCE_READINGS, CITY)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("water", readings_topics[Kind.water], raw, error)
            continue
        for parameter, state in new_states.items():
            persistence_table[keys[parameter]] = [state.bad_run, state.good_run, state.active, state.reported_severity]
        for alert in alerts:
            await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())
