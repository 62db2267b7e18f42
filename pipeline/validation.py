"""Turn one MQTT message into a valid ``Reading`` or a ``DeadLetter`` that says why. Never raises.

Checks, in order: size, topic layout, JSON and schema, topic/payload agreement, sensor registry,
parameter names, units (converted to the canonical unit), physically possible range, clock skew,
duplicates. Late (out-of-order) readings are valid and forwarded: the agents order by event time.

A message carries one reading (a JSON object) or several samples of its sensor (a JSON array of
readings, as a data logger uploads what it buffered, or a replay sends fast): each sample is then
checked on its own, and a bad one is dead-lettered with its position while the others go on.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import TypeAdapter, ValidationError

from pipeline.city import City
from pipeline.rule_files import ParametersFile
from pipeline.schemas import CameraDetection, DeadLetter, Kind, Quantity, Reading
from pipeline.topics import MqttAddress, parse_mqtt_topic


@dataclass(frozen=True)
class ParameterSpec:
    unit: str
    convert: dict[str, float]
    min: float
    max: float
    label: str = ""
    direction: str = "both"  # water: the way a change is evidence of an event (up, down, both, none)
    resolution: float = 1e-6  # water: the sensor's smallest step, the screen's noise floor
    instances: int = 1  # several instruments of one quantity: name, name_2, ... name_N


def parameter_specs(parameters: ParametersFile | dict) -> dict[Kind, dict[str, ParameterSpec]]:
    """config/parameters.toml (``rules().parameters``, or its raw data, validated here) as
    {kind: {parameter: spec}}, a second instrument of a quantity (``instances``) as ``<name>_2`` and so on.

    >>> raw = {"water": {"flow": {"unit": "m3/h", "convert": {}, "min": 0, "max": 1e6, "instances": 2}}}
    >>> specs = parameter_specs(raw)
    >>> sorted(specs[Kind.water])
    ['flow', 'flow_2']
    """
    if not isinstance(parameters, ParametersFile):
        parameters = ParametersFile.model_validate(parameters)
    out: dict[Kind, dict[str, ParameterSpec]] = {}
    for kind, params in parameters:
        if kind not in parameters.model_fields_set:
            continue  # a kind the file does not list
        specs = out[Kind(kind)] = {}
        for name, rule in params.items():
            spec = ParameterSpec(**rule.model_dump())
            specs[name] = spec
            for n in range(2, spec.instances + 1):
                specs[f"{name}_{n}"] = spec
    return out


_BATCHES = {False: TypeAdapter(list[Reading]), True: TypeAdapter(list[CameraDetection])}  # by "is a camera"


class Rejected(Exception):
    """A message that cannot be accepted: a short code (for counting) and the reason (for people)."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code


class ReadingValidator:
    def __init__(
        self,
        city: City,
        specs: dict[Kind, dict[str, ParameterSpec]],
        topic_root: str,
        max_payload_bytes: int = 65536,
        max_future_s: float = 300,
        dedup_window: int = 100_000,
    ):
        self.city = city
        self.specs = specs
        self.topic_root = topic_root
        self.max_payload_bytes = max_payload_bytes
        self.max_future_s = max_future_s
        self.dedup_window = dedup_window
        self._seen: OrderedDict[tuple[str, datetime], None] = OrderedDict()

    def validate_message(self, topic: str, payload: bytes, now: datetime) -> list[Reading | DeadLetter]:
        """Each valid reading of a message (one, or a JSON array of samples); its rejected samples as
        one dead letter (the message's one bad sample, or a summary of many: one message never
        becomes thousands of dead letters, log lines and points)."""
        results = self._validate_message(topic, payload, now)
        dead = [r for r in results if isinstance(r, DeadLetter)]
        if len(dead) <= 1:
            return results
        codes = Counter(d.code for d in dead)
        summary = self._dead_letter(
            topic,
            payload,
            codes.most_common(1)[0][0],
            f"{len(dead)} of {len(results)} samples rejected "
            f"({', '.join(f'{c} {n}' for c, n in codes.most_common())}); the first: {dead[0].reason}"[:1000],
        )
        return [r for r in results if not isinstance(r, DeadLetter)] + [summary]

    def _validate_message(self, topic: str, payload: bytes, now: datetime) -> list[Reading | DeadLetter]:
        if not payload.lstrip()[:1] == b"[" or len(payload) > self.max_payload_bytes:
            return [self.validate(topic, payload, now)]  # an array too large is dead-lettered whole
        try:
            address = self._address(topic)
            # the whole array at once; when a sample is malformed (or none is there), each on its own
            readings = _BATCHES[address.kind is Kind.camera].validate_json(payload, strict=True)
        except (Rejected, ValidationError, OverflowError):
            readings = []
        except Exception as e:  # a bug here must not stop the bridge
            return [
                self._dead_letter(topic, payload, "internal", f"internal validation error: {type(e).__name__}: {e}")
            ]
        if not readings:
            return self._validate_samples(topic, payload, now)
        results = []
        for n, reading in enumerate(readings):
            try:
                results.append(self._check(reading, address, topic, now))
            except Exception as e:
                code, reason = (
                    (e.code, str(e))
                    if isinstance(e, Rejected)
                    else ("internal", f"internal validation error: {type(e).__name__}: {e}")
                )
                results.append(
                    self._dead_letter(topic, reading.to_json(), code, f"sample {n + 1} of {len(readings)}: {reason}")
                )
        return results

    def _validate_samples(self, topic: str, payload: bytes, now: datetime) -> list[Reading | DeadLetter]:
        try:
            samples = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            return [self._dead_letter(topic, payload, "invalid", f"invalid reading: malformed JSON array: {e}")]
        if not samples:
            return [self._dead_letter(topic, payload, "invalid", "invalid reading: an empty array of samples")]
        results = []
        for n, sample in enumerate(samples):
            try:
                raw = orjson.dumps(sample)
            except Exception as e:  # a bug here must not stop the bridge
                results.append(
                    self._dead_letter(topic, payload, "internal", f"internal validation error: {type(e).__name__}: {e}")
                )
                continue
            result = self.validate(topic, raw, now)
            if isinstance(result, DeadLetter):
                result = result.model_copy(update={"reason": f"sample {n + 1} of {len(samples)}: {result.reason}"})
            results.append(result)
        return results

    def validate(self, topic: str, payload: bytes, now: datetime) -> Reading | DeadLetter:
        """One reading (a JSON object)."""
        try:
            return self._accept(topic, payload, now)
        except Rejected as e:
            return self._dead_letter(topic, payload, e.code, str(e))
        except Exception as e:  # a bug here must not stop the bridge; the record says what happened
            return self._dead_letter(topic, payload, "internal", f"internal validation error: {type(e).__name__}: {e}")

    def _address(self, topic: str) -> MqttAddress:
        try:
            return parse_mqtt_topic(topic, self.topic_root)
        except ValueError as e:
            raise Rejected("bad_topic", str(e)) from None

    def _accept(self, topic: str, payload: bytes, now: datetime) -> Reading:
        if len(payload) > self.max_payload_bytes:
            raise Rejected("too_large", f"payload too large: {len(payload)} bytes > {self.max_payload_bytes}")
        address = self._address(topic)
        model = CameraDetection if address.kind is Kind.camera else Reading
        try:
            reading = model.model_validate_json(
                payload, strict=True
            )  # no lax coercion: "6.5", true and epoch numbers are wrong types
        except ValidationError as e:
            raise Rejected("invalid", _describe(e)) from None
        except OverflowError as e:  # a timestamp in range, but not once its offset is applied (0001-01-01T00:30+01:00)
            raise Rejected("invalid", f"invalid reading: ts: {e} in UTC") from None
        return self._check(reading, address, topic, now)

    def _check(self, reading: Reading, address: MqttAddress, topic: str, now: datetime) -> Reading:
        """A parsed reading against its topic, the registry, the parameters' units and ranges, the clock and
        the readings seen."""
        for field, from_topic in (
            ("sensor_id", address.sensor_id),
            ("kind", address.kind),
            ("district", address.district),
        ):
            if getattr(reading, field) != from_topic:
                raise Rejected("topic_mismatch", f"{field} {getattr(reading, field)!r} does not match topic {topic!r}")
        sensor = self.city.sensors.get(reading.sensor_id)
        if sensor is None:
            raise Rejected("unknown_sensor", f"unknown sensor {reading.sensor_id!r}")
        if sensor.kind is not reading.kind or sensor.site != reading.station or sensor.district != reading.district:
            raise Rejected(
                "sensor_mismatch",
                f"sensor {reading.sensor_id!r} is registered as {sensor.kind.value} at "
                f"{sensor.district}/{sensor.site}, not {reading.kind.value} at {reading.district}/{reading.station}",
            )

        specs = self.specs.get(reading.kind, {})
        # the common case, every quantity in its canonical unit and possible, kept as it is at the cost of a look
        canonical = all(
            (spec := specs.get(name)) is not None and q.unit == spec.unit and spec.min <= q.value <= spec.max
            for name, q in reading.values.items()
        )
        values = (
            None if canonical else {name: self._canonical(reading.kind, name, q) for name, q in reading.values.items()}
        )

        if (reading.ts - now).total_seconds() > self.max_future_s:
            raise Rejected(
                "future_timestamp",
                f"timestamp {reading.ts.isoformat()} is more than {self.max_future_s:g} s in the future",
            )
        key = (reading.sensor_id, reading.ts)
        if key in self._seen:
            raise Rejected(
                "duplicate", f"duplicate reading: {reading.sensor_id} at {reading.ts.isoformat()} already accepted"
            )
        self._seen[key] = None
        if len(self._seen) > self.dedup_window:
            self._seen.popitem(last=False)
        if values is None:
            return reading  # every unit canonical already: nothing to copy
        return reading.model_copy(update={"values": values})  # a unit converted

    def _canonical(self, kind: Kind, name: str, q: Quantity) -> Quantity:
        spec = self.specs.get(kind, {}).get(name)
        if spec is None:
            raise Rejected(
                "unknown_parameter",
                f"unknown parameter {name!r} for {kind.value} (known: {sorted(self.specs.get(kind, {}))})",
            )
        if q.unit == spec.unit:
            if spec.min <= q.value <= spec.max:
                return q  # canonical and possible, kept as it is (another quantity needs converting)
            value = q.value
        elif q.unit in spec.convert:
            value = q.value * spec.convert[q.unit]
        else:
            accepted = [spec.unit, *spec.convert]
            raise Rejected("wrong_unit", f"wrong unit for {name}: {q.unit!r} (accepted: {accepted})")
        if not spec.min <= value <= spec.max:
            raise Rejected(
                "impossible_value",
                f"impossible value for {name}: {value:g} {spec.unit} outside [{spec.min:g}, {spec.max:g}]",
            )
        return Quantity(value=value, unit=spec.unit)

    @staticmethod
    def _dead_letter(topic: str, payload: bytes, code: str, reason: str) -> DeadLetter:
        parts = topic.split("/")
        address = {"kind": parts[2], "sensor_id": parts[3]} if len(parts) == 4 else {}
        return DeadLetter.of(code, reason, topic, payload, **address)


def _describe(error: ValidationError) -> str:
    """Pydantic errors as one line: 'invalid reading: ts: Input should have timezone info; ...'."""
    parts = []
    for err in error.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "invalid reading: " + "; ".join(parts)
