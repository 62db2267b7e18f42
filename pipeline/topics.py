"""Topic names, defined once. MQTT: ``<root>/<district>/<kind>/<sensor_id>``; Kafka: see below."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from aiokafka.partitioner import murmur2

from pipeline.schemas import Kind

# Kafka topics
READINGS: dict[Kind, str] = {kind: f"readings.{kind.value}" for kind in Kind}
ALERTS = "alerts"
WARNINGS = "warnings"
DEADLETTER = "deadletter"
TRACING = "tracing"
LIFECYCLE = (
    "lifecycle"  # incident stages: operators' accepted actions (ack, close ...) and the system's (warned, re-sent ...)
)
# operators' requests (ack, close ...), keyed like the incident: the warning agent accepts or rejects each
ACTIONS = "actions"
ACTION_RESULTS = "actions.results"  # the answer to each request, for the CLI or page that made it
SILENCES = (
    "silences"  # maintenance windows: alerts of a sensor, station or area suppressed until a time (keyed by silence id)
)
SUPPRESSED = "alerts.suppressed"  # the alerts a silence held back, for the record
DELIVERIES = "deliveries"  # one record per warning, department and channel
# internal re-keyed streams: each gauge's rain to every tile of the field that holds it (keyed by
# tile: a tile's nowcast sees its halo); the tiles' statuses of each district and road-flooding
# sightings, keyed by district; camera person counts keyed by their zone's counter
RAIN_TILES = "rain.tiles"
RAIN_DISTRICTS = "rain.districts"
CROWD_CAMERA = "crowd.camera"
# what source tracing needs, keyed by river basin so one task sees a basin's all in event order:
# the traced parameters of every water reading, the water alerts, and cameras' oil-sheen sightings
WATER_TRACE = "water.trace"
ALL_TOPICS: tuple[str, ...] = (
    *READINGS.values(),
    ALERTS,
    TRACING,
    WARNINGS,
    LIFECYCLE,
    ACTIONS,
    ACTION_RESULTS,
    SILENCES,
    SUPPRESSED,
    DELIVERIES,
    DEADLETTER,
    RAIN_TILES,
    RAIN_DISTRICTS,
    CROWD_CAMERA,
    WATER_TRACE,
)


@lru_cache(maxsize=1 << 17)  # murmur2 in Python was 5 % of the loaded bridge's CPU; sensors are few
def reading_partition(sensor_id: str, partitions: int) -> int:
    """The partition of a sensor's readings on ``readings.*``: Kafka's default partitioner on the
    sensor id (murmur2), so a sensor's state stays in one partition and one table changelog
    partition, and a batch record holds readings of one partition only.

    >>> reading_partition("wq-cj-01", 4) == reading_partition("wq-cj-01", 4) < 4
    True
    """
    return (murmur2(sensor_id.encode()) & 0x7FFFFFFF) % partitions


def department_topic(department: str) -> str:
    """A department's own warning feed (the "topic" delivery channel): ``to.<department>``."""
    return f"to.{department}"


@dataclass(frozen=True)
class MqttAddress:
    district: str
    kind: Kind
    sensor_id: str


def mqtt_topic(root: str, district: str, kind: Kind | str, sensor_id: str) -> str:
    return f"{root}/{district}/{Kind(kind).value}/{sensor_id}"


def mqtt_subscription(root: str, share_group: str = "") -> str:
    """Everything under the root: sensor topics, and anything else published there, which the bridge
    dead-letters as ``bad_topic`` rather than never seeing it (its own status topics excepted). With
    ``share_group``, an MQTT shared subscription: the broker splits the messages among the bridges
    of the group (each message to one of them).

    >>> mqtt_subscription("yuflow"), mqtt_subscription("yuflow", "yuflow-bridges")
    ('yuflow/#', '$share/yuflow-bridges/yuflow/#')
    """
    return f"$share/{share_group}/{root}/#" if share_group else f"{root}/#"


def bridge_status_topic(root: str, instance: str = "+") -> str:
    """Retained 'online pid=…'/'offline' of a bridge instance (offline is its MQTT last will); ``+``: all of them."""
    return f"{root}/status/bridge/{instance}"


def is_bridge_status(topic: str, root: str) -> bool:
    return topic.startswith(f"{root}/status/bridge/")


def parse_mqtt_topic(topic: str, root: str) -> MqttAddress:
    """Split a sensor topic; ValueError with the reason when it does not follow the layout."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != root:
        raise ValueError(f"topic {topic!r} is not {root}/<district>/<kind>/<sensor_id>")
    _, district, kind, sensor_id = parts
    try:
        kind_value = Kind(kind)
    except ValueError:
        raise ValueError(f"unknown kind {kind!r} in topic (expected one of {[k.value for k in Kind]})") from None
    return MqttAddress(district=district, kind=kind_value, sensor_id=sensor_id)
