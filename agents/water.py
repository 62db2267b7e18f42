"""Water agent: GB 3838 exceedance with a persistence rule, and the statistical screen -> Alerts.

Each sensor's state (the persistence counters per parameter and its ``StationWatch``) is one entry
of the Faust table ``water_state``, kept live in memory and checkpointed (agents/checkpoint.py), so
it survives a worker restart. The stream is keyed by sensor id, so one sensor's state stays in one
partition. Readings are taken in batches (``stream.take``) and their alerts sent together.
"""

from __future__ import annotations

from collections.abc import Mapping

from dataclasses import dataclass, field

from agents.app import SETTINGS, alerts_topic, app, dead_letter, readings_topics
from agents.checkpoint import CheckpointedTable
from models.persistence import Change, PersistenceState, step
from models.station_watch import StationWatch
from models.standards import Limit, class_limits
from pipeline.city import City, default_city, load_toml
from pipeline.schemas import Alert, Category, Kind, Reading

PERSISTENCE_READINGS = SETTINGS.water.persistence_readings

@dataclass
class SensorState:
    """One water sensor's state: persistence per parameter, and the statistical screen (None: not yet seen)."""

    persistence: dict[str, PersistenceState] = field(default_factory=dict)
    watch: StationWatch | None = None

    @classmethod
    def load(cls, raw: dict | None) -> "SensorState":
        if not raw:
            return cls()
        return cls({p: PersistenceState(*v) for p, v in raw["persistence"].items()},
                   StationWatch.from_state(raw["watch"]) if raw.get("watch") else None)

    def dump(self) -> dict:
        return {"persistence": {p: [s.bad_run, s.good_run, s.active, s.reported_severity] for p, s in self.persistence.items()},
                "watch": self.watch.state() if self.watch is not None else None}


state_table = app.Table("water_state", default=None, partitions=SETTINGS.kafka.partitions)
states = CheckpointedTable(app, state_table, SensorState.load, SensorState.dump, every_s=SETTINGS.water.checkpoint_s)


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
                area=station.river,
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


def watch_reading(reading: Reading, watch: StationWatch | None, city: City) -> tuple[StationWatch, Alert | None]:
    """The statistical screen for one reading: the (updated) watch, and an early alert when pollution is raised.

    Raised before any standard limit is crossed, so it is an early (blue) warning; the limit rule's
    alerts for the same parameter escalate the same incident.
    """
    values = {p: q.value for p, q in reading.values.items()}
    watch = watch if watch is not None else StationWatch(sorted(values))
    verdict = watch.step(values, city.local_hour(reading.ts))
    alert = None
    if verdict.change == "raised" and verdict.parameter is not None:
        station = city.stations[reading.station]
        label = load_toml("parameters")["water"][verdict.parameter].get("label", verdict.parameter)
        quantity = reading.values[verdict.parameter]
        alert = Alert(
            alert_id=f"{reading.sensor_id}:{verdict.parameter}:{int(reading.ts.timestamp() * 1000)}:statistical",
            category=Category.water, rule="statistical", sensor_id=reading.sensor_id, station=reading.station,
            district=reading.district, township=station.township, area=station.river, ts=reading.ts, parameter=verdict.parameter,
            value=quantity.value, unit=quantity.unit, limit=LIMITS[reading.station][verdict.parameter].bound
            if verdict.parameter in LIMITS[reading.station] else 0.0, severity=0.1,
            message=(f"{station.name}: {label} {quantity.value:.3g} {quantity.unit} is {verdict.z:.1f} robust sd from normal "
                     f"for this hour, with related parameters moving too (early warning: no limit crossed yet)"),
        )
    return watch, alert


def water_step(reading: Reading, state: SensorState, city: City) -> list[Alert]:
    """One reading through the standard check and the screen; ``state`` is updated in place."""
    new_states, alerts = assess(reading, LIMITS[reading.station], state.persistence, PERSISTENCE_READINGS, city)
    state.watch, early = watch_reading(reading, state.watch, city)
    state.persistence.update(new_states)
    return ([early] if early is not None else []) + alerts


CITY = default_city()
LIMITS = station_limits(CITY, load_toml("gb3838"), SETTINGS.water.default_class)


@app.agent(readings_topics[Kind.water])
async def water(stream):
    # one reading at a time (a Faust table may only be written inside the stream's own iteration)
    async for raw in stream:
        try:
            reading = Reading.model_validate_json(raw)
            alerts = water_step(reading, states.get(reading.sensor_id), CITY)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("water", readings_topics[Kind.water], raw, error)
            continue
        states.changed(reading.sensor_id, force=bool(alerts))  # an alert's state must survive a crash
        for alert in alerts:
            await alerts_topic.send(key=alert.incident_key.encode(), value=alert.to_json())
