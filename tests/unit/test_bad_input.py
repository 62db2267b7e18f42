"""Bad input (issue #8): every message is either a valid reading or a dead letter with a reason.

A named corpus of bad inputs, each with the dead-letter code it must get (or ``ACCEPTED``), run through
the bridge's ``ReadingValidator``; then property-based fuzzing of the validator (arbitrary bytes,
mutated readings, arbitrary topics). The same corpus is sent over MQTT to a running bridge in
tests/integration/test_bad_input_bridge.py.

Every corpus message has its own timestamp (minutes from ``T0``, a day no other test uses), so the
whole corpus can run through one validator, or one bridge, in order, with no case disturbing another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.city import default_city, load_toml
from pipeline.schemas import PAYLOAD_KEEP_CHARS, CameraDetection, DeadLetter, Reading, parse_reading
from pipeline.settings import BridgeSettings, MqttSettings
from pipeline.topics import parse_mqtt_topic
from pipeline.validation import ReadingValidator, parameter_specs

ACCEPTED = "accepted"
ROOT = MqttSettings().topic_root
BRIDGE = BridgeSettings()
T0 = datetime(2024, 3, 11, tzinfo=UTC)  # corpus timestamps: T0 + n minutes
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # the unit tests' wall clock (the corpus is in the past)

SENSOR, STATION, DISTRICT = "wq-qijiang-ganshui", "qijiang-ganshui", "qijiang"
CAMERA, CAMERA_SITE = "cam-qijiang-gunan", "qijiang-gunan"


def readme_codes() -> set[str]:
    """The dead-letter codes listed in the README's table (after "dead-letter `code`")."""
    lines = (Path(__file__).parents[2] / "README.md").read_text().split("dead-letter `code`", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    codes = set()
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if m := re.match(r"\|\s*`([a-z_]+)`\s*\|", line):
            codes.add(m.group(1))
    return codes


README_CODES = readme_codes()
CODES = {
    "invalid",
    "bad_topic",
    "topic_mismatch",
    "unknown_sensor",
    "sensor_mismatch",
    "unknown_parameter",
    "wrong_unit",
    "impossible_value",
    "future_timestamp",
    "duplicate",
    "too_large",
}  # the README's table today


def bridge_validator() -> ReadingValidator:
    """Built as Bridge.__init__ builds it, with the default bridge settings."""
    return ReadingValidator(
        default_city(),
        parameter_specs(load_toml("parameters")),
        ROOT,
        max_payload_bytes=BRIDGE.max_payload_bytes,
        max_future_s=BRIDGE.max_future_s,
        dedup_window=BRIDGE.dedup_window,
    )


# --- the corpus -------------------------------------------------------------------------------------


def stamp(n: int) -> str:
    return (T0 + timedelta(minutes=n)).isoformat().replace("+00:00", "Z")


def reading(n: int, **changes) -> dict:
    """A valid, unremarkable reading of Qijiang Ganshui (DO 8 mg/L, pH 7.5) at T0 + n minutes."""
    payload = {
        "sensor_id": SENSOR,
        "kind": "water",
        "station": STATION,
        "district": DISTRICT,
        "ts": stamp(n),
        "values": {"do": {"value": 8.0, "unit": "mg/L"}, "ph": {"value": 7.5, "unit": "pH"}},
    }
    payload.update(changes)
    return payload


def camera_reading(n: int, **changes) -> dict:
    payload = {
        "sensor_id": CAMERA,
        "kind": "camera",
        "station": CAMERA_SITE,
        "district": DISTRICT,
        "ts": stamp(n),
        "values": {"oil_area": {"value": 0.0, "unit": "m2"}},
        "detection": "oil_sheen",
        "confidence": 0.1,
    }
    payload.update(changes)
    return payload


def enc(payload: dict | list, **kwargs) -> bytes:
    return json.dumps(payload, **kwargs).encode()


def topic(district: str = DISTRICT, kind: str = "water", sensor: str = SENSOR, root: str = ROOT) -> str:
    return f"{root}/{district}/{kind}/{sensor}"


@dataclass(frozen=True)
class Case:
    name: str
    topic: str
    payload: bytes
    expect: str  # a dead-letter code, or ACCEPTED
    words: str = ""  # in the dead letter's reason
    prior: tuple[bytes, ...] = ()  # sent first on the same topic, each accepted (duplicates, late readings)

    def messages(self) -> Iterator[tuple[str, bytes, str]]:
        """(topic, payload, expected outcome), priors first."""
        for p in self.prior:
            yield self.topic, p, ACCEPTED
        yield self.topic, self.payload, self.expect


def corpus(root: str = ROOT, max_payload_bytes: int = BRIDGE.max_payload_bytes) -> list[Case]:
    """The bad-input corpus; ``root`` is the MQTT topic root the bridge listens under."""
    T = topic(root=root)
    counter = iter(range(10_000))

    def n() -> int:  # a fresh minute for each message
        return next(counter)

    def r(**changes) -> dict:
        return reading(n(), **changes)

    def value(name: str, v, unit: str) -> dict:
        return r(values={name: {"value": v, "unit": unit}})

    def raw_value(token: str) -> bytes:  # a DO value written as a raw JSON token
        return enc(value("do", 0, "mg/L")).replace(b'"value": 0', b'"value": ' + token.encode())

    dup, late, late_after = r(), r(), r()  # late is a minute before late_after, and sent after it
    m = n()
    dup_utc, dup_offset = (
        reading(m),
        reading(m, ts=(T0 + timedelta(minutes=m)).astimezone(timezone(timedelta(hours=-5))).isoformat()),
    )
    padded, over = enc(r()), enc(r())
    padded += b" " * (max_payload_bytes - len(padded))
    over += b" " * (max_payload_bytes + 1 - len(over))
    nested = "[" * 5000 + "]" * 5000
    cases = [
        # accepted
        Case("valid reading", T, enc(r()), ACCEPTED),
        Case("convertible unit (DO in ug/L)", T, enc(value("do", 8000, "ug/L")), ACCEPTED),
        Case(
            "UTC offset +08:00 (normalised to UTC)",
            T,
            enc(r(ts=(T0 + timedelta(minutes=n())).astimezone(timezone(timedelta(hours=8))).isoformat())),
            ACCEPTED,
        ),
        Case("pretty-printed JSON", T, enc(r(), indent=2).replace(b"\n", b"\r\n"), ACCEPTED),
        Case(
            "unicode escapes in strings",
            T,
            enc(r()).replace(b'"qijiang-ganshui"', b'"\\u0071ijiang-ganshui"'),
            ACCEPTED,
        ),
        Case("late (out-of-order) reading is forwarded", T, enc(late), ACCEPTED, prior=(enc(late_after),)),
        Case("payload exactly at the size limit", T, padded, ACCEPTED),
        # malformed JSON
        Case("truncated JSON", T, enc(r())[:60], "invalid", "Invalid JSON"),
        Case("trailing garbage", T, enc(r()) + b"}", "invalid", "trailing characters"),
        Case("Python dict repr", T, str(r()).encode(), "invalid", "Invalid JSON"),
        Case("JSON with a comment", T, enc(r())[:-1] + b" // note\n}", "invalid", "Invalid JSON"),
        # a JSON array is a batch of the sensor's samples, each checked on its own (test_batches below)
        Case("one reading inside an array: a batch of one", T, enc([r()]), ACCEPTED),
        Case("an empty array", T, b"[]", "invalid", "empty array"),
        Case(
            "an array of a number",
            T,
            b"[7]",
            "invalid",
            "sample 1 of 1: invalid reading: payload: Input should be an object",
        ),
        Case("an array holding an array", T, enc([[r()]]), "invalid", "should be an object"),
        Case("JSON null", T, b"null", "invalid", "should be an object"),
        Case("JSON number", T, b"42", "invalid", "should be an object"),
        Case("JSON string", T, b'"do=8"', "invalid", "should be an object"),
        Case("empty payload", T, b"", "invalid", "Invalid JSON"),
        Case("whitespace only", T, b" \r\n\t ", "invalid", "Invalid JSON"),
        Case("UTF-8 byte-order mark", T, b"\xef\xbb\xbf" + enc(r()), "invalid", "Invalid JSON"),
        Case("UTF-16 encoded JSON", T, json.dumps(r()).encode("utf-16"), "invalid", "Invalid JSON"),
        Case("non-UTF-8 bytes", T, b"\xff\xfe\xfd\x00\x80binary", "invalid", "Invalid JSON"),
        Case(
            "Latin-1 byte inside a string",
            T,
            enc(r(station="qijiang-ganshui\xb5"), ensure_ascii=False).decode().encode("latin-1"),
            "invalid",
            "Invalid JSON",
        ),
        Case("deeply nested JSON (top level)", T, nested.encode(), "invalid", "depth limit"),
        Case(
            "deeply nested JSON (in a value)",
            T,
            enc(r()).replace(b'"value": 8.0', b'"value": ' + nested.encode()),
            "invalid",
            "recursion limit",
        ),
        # wrong types and shapes
        Case("value as a word", T, enc(value("do", "high", "mg/L")), "invalid", "values.do.value"),
        Case("value null", T, enc(value("do", None, "mg/L")), "invalid", "values.do.value"),
        Case("value as a numeric string", T, enc(value("do", "6.5", "mg/L")), "invalid", "values.do.value"),
        Case("value as a boolean", T, enc(value("do", True, "mg/L")), "invalid", "values.do.value"),
        Case("ts as Unix seconds", T, enc(r(ts=1710115200)), "invalid", "ts"),
        Case(
            "confidence as a string",
            topic(kind="camera", sensor="cam-x", root=root),
            enc(r(kind="camera", sensor_id="cam-x", detection="oil_sheen", confidence="0.9")),
            "invalid",
            "confidence",
        ),
        Case("value as a list", T, enc(value("do", [8.0], "mg/L")), "invalid", "values.do.value"),
        Case("values as a list", T, enc(r(values=[{"do": 8.0}])), "invalid", "values"),
        Case("values empty", T, enc(r(values={})), "invalid", "values"),
        Case("bare number instead of a quantity", T, enc(r(values={"do": 8.0})), "invalid", "values.do"),
        Case("quantity without a unit", T, enc(r(values={"do": {"value": 8.0}})), "invalid", "values.do.unit"),
        Case("empty unit", T, enc(value("do", 8.0, "")), "invalid", "values.do.unit"),
        Case(
            "65 parameters",
            T,
            enc(r(values={f"p{i}": {"value": 1, "unit": "x"} for i in range(65)})),
            "invalid",
            "values",
        ),
        Case("sensor_id as a number", T, enc(r(sensor_id=42)), "invalid", "sensor_id"),
        Case(
            "sensor_id with a space",
            topic(sensor="wq qijiang", root=root),
            enc(r(sensor_id="wq qijiang")),
            "invalid",
            "sensor_id",
        ),
        Case("unknown kind in the payload", T, enc(r(kind="sewage")), "invalid", "kind"),
        Case("missing ts", T, enc({k: v for k, v in r().items() if k != "ts"}), "invalid", "ts: Field required"),
        Case(
            "missing values",
            T,
            enc({k: v for k, v in r().items() if k != "values"}),
            "invalid",
            "values: Field required",
        ),
        Case("extra field", T, enc(r(note="calibrated")), "invalid", "note"),
        Case("ts as a boolean", T, enc(r(ts=True)), "invalid", "ts"),
        Case("ts as words", T, enc(r(ts="yesterday at noon")), "invalid", "ts"),
        Case(
            "water reading on a camera topic", topic(kind="camera", root=root), enc(r(kind="water")), "invalid", "kind"
        ),
        Case(
            "camera reading without its detection",
            topic(kind="camera", sensor=CAMERA, root=root),
            enc({k: v for k, v in camera_reading(n()).items() if k != "detection"}),
            "invalid",
            "detection",
        ),
        Case(
            "camera confidence above 1",
            topic(kind="camera", sensor=CAMERA, root=root),
            enc(camera_reading(n(), confidence=1.5)),
            "invalid",
            "confidence",
        ),
        # NaN and infinity
        Case("NaN token", T, raw_value("NaN"), "invalid", "finite number"),
        Case("Infinity token", T, raw_value("Infinity"), "invalid", "finite number"),
        Case("-Infinity token", T, raw_value("-Infinity"), "invalid", "finite number"),
        Case("1e400 (overflows to infinity)", T, raw_value("1e400"), "invalid", "finite number"),
        Case("a 400-digit integer", T, raw_value("9" * 400), "invalid", "finite number"),
        Case("NaN as a string", T, enc(value("do", "NaN", "mg/L")), "invalid", "valid number"),
        Case(
            "finite value that overflows on conversion",
            T,
            enc(value("conductivity", 1e306, "mS/cm")),
            "impossible_value",
            "inf",
        ),
        # impossible values
        Case("DO 90 mg/L", T, enc(value("do", 90, "mg/L")), "impossible_value", "outside"),
        Case("negative pH", T, enc(value("ph", -1, "pH")), "impossible_value", "ph"),
        Case("pH 14.5", T, enc(value("ph", 14.5, "pH")), "impossible_value", "ph"),
        Case("DO 1e300 mg/L", T, enc(value("do", 1e300, "mg/L")), "impossible_value", "outside"),
        Case("negative conductivity", T, enc(value("conductivity", -5, "uS/cm")), "impossible_value", "conductivity"),
        Case("impossible after unit conversion", T, enc(value("do", 90_000, "ug/L")), "impossible_value", "90 mg/L"),
        # registry: unknown sensor, mismatches
        Case(
            "unknown sensor",
            topic(sensor="wq-qijiang-nowhere", root=root),
            enc(r(sensor_id="wq-qijiang-nowhere")),
            "unknown_sensor",
            "wq-qijiang-nowhere",
        ),
        Case("registered at another station", T, enc(r(station="qijiang-gunan")), "sensor_mismatch", "registered"),
        Case(
            "registered in another district",
            topic(district="jiangjin", root=root),
            enc(r(district="jiangjin")),
            "sensor_mismatch",
            "registered",
        ),
        Case(
            "registered as another kind",
            topic(kind="rain", root=root),
            enc(r(kind="rain", values={"rain": {"value": 1, "unit": "mm"}})),
            "sensor_mismatch",
            "registered as water",
        ),
        # parameters and units
        Case("unknown parameter", T, enc(value("co2", 400, "ppm")), "unknown_parameter", "co2"),
        Case("another feed's parameter", T, enc(value("rain", 1, "mm")), "unknown_parameter", "rain"),
        Case("DO in ppm", T, enc(value("do", 8, "ppm")), "wrong_unit", "ppm"),
        Case("pH in mg/L", T, enc(value("ph", 7.5, "mg/L")), "wrong_unit", "mg/L"),
        Case("temperature in degF", T, enc(value("temperature", 60, "degF")), "wrong_unit", "degF"),
        Case("unit in another case", T, enc(value("do", 8, "MG/L")), "wrong_unit", "MG/L"),
        # size
        Case("oversized payload", T, enc(r(note="x" * 70_000)), "too_large", f"> {max_payload_bytes}"),
        Case("one byte over the limit", T, over, "too_large", f"{max_payload_bytes + 1} bytes"),
        # duplicates and time
        Case("duplicate", T, enc(dup), "duplicate", "already accepted", prior=(enc(dup),)),
        Case(
            "duplicate written with another UTC offset",
            T,
            enc(dup_offset),
            "duplicate",
            "already accepted",
            prior=(enc(dup_utc),),
        ),
        Case("far-future timestamp", T, enc(r(ts="2099-01-01T00:00:00Z")), "future_timestamp", "future"),
        Case("year 9999", T, enc(r(ts="9999-12-31T23:59:59Z")), "future_timestamp", "future"),
        Case("missing timezone", T, enc(r(ts="2024-03-11T12:00:00")), "invalid", "timezone"),
        Case("date only", T, enc(r(ts="2024-03-11")), "invalid", "valid datetime"),
        Case(
            "year 1 with a positive offset (before year 1 in UTC)",
            T,
            enc(r(ts="0001-01-01T00:30:00+01:00")),
            "invalid",
            "ts: date value out of range",
        ),
        Case(
            "year 9999 with a negative offset (after 9999 in UTC)",
            T,
            enc(r(ts="9999-12-31T23:30:00-01:00")),
            "invalid",
            "ts: date value out of range",
        ),
        # topics
        Case("unknown kind in the topic", topic(kind="sewage", root=root), enc(r()), "bad_topic", "unknown kind"),
        Case("kind in capitals", topic(kind="Water", root=root), enc(r()), "bad_topic", "unknown kind"),
        Case("two levels", f"{root}/garbage", enc(r()), "bad_topic", "is not"),
        Case("three levels", f"{root}/{DISTRICT}/water", enc(r()), "bad_topic", "is not"),
        Case("five levels", f"{T}/extra", enc(r()), "bad_topic", "is not"),
        Case("leading slash", f"/{T}", enc(r()), "bad_topic", "is not"),
        Case("another root", topic(root=root + "x"), enc(r()), "bad_topic", "is not"),
        Case("empty topic", "", enc(r()), "bad_topic", "is not"),
        Case("wildcards in the topic", f"{root}/+/water/#", enc(r()), "topic_mismatch", "sensor_id"),
        Case("wildcard as the kind", f"{root}/{DISTRICT}/+/{SENSOR}", enc(r()), "bad_topic", "unknown kind"),
        Case("NUL in the topic", f"{root}/{DISTRICT}\x00/water/{SENSOR}", enc(r()), "topic_mismatch", "district"),
        Case(
            "topic names another sensor",
            topic(sensor="wq-qijiang-gunan", root=root),
            enc(r()),
            "topic_mismatch",
            "sensor_id",
        ),
        Case(
            "topic names another district",
            topic(district="jiangjin", root=root),
            enc(r()),
            "topic_mismatch",
            "district",
        ),
        Case("topic names another kind", topic(kind="rain", root=root), enc(r()), "topic_mismatch", "kind"),
        Case("empty district level", topic(district="", root=root), enc(r()), "topic_mismatch", "district"),
    ]
    return cases


def reaches_bridge(topic_: str, root: str) -> bool:
    """Whether the bridge's subscription ``<root>/#`` matches the topic (and MQTT allows publishing it)."""
    parts = topic_.split("/")
    return len(parts) >= 2 and parts[0] == root and not any(c in topic_ for c in "+#\x00")


CORPUS = corpus()


def test_the_corpus_is_sound():
    """Codes from the README; one message per (topic, payload) except deliberate duplicates; one timestamp each."""
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    assert {c.expect for c in CORPUS} - {ACCEPTED} == CODES <= README_CODES  # every code has a case
    messages = [(t, p) for c in CORPUS for t, p, _ in c.messages()]
    duplicates = [c for c in CORPUS if c.expect == "duplicate"]
    assert len(set(messages)) == len(messages) - sum(c.payload in c.prior for c in duplicates)
    padded = next(c for c in CORPUS if c.name == "payload exactly at the size limit").payload
    over = next(c for c in CORPUS if c.name == "one byte over the limit").payload
    assert len(padded) == BRIDGE.max_payload_bytes and len(over) == BRIDGE.max_payload_bytes + 1


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_bad_input_corpus(case: Case):
    validator = bridge_validator()
    for p in case.prior:
        assert isinstance(validator.validate(case.topic, p, NOW), Reading)
    result = one(validator.validate_message(case.topic, case.payload, NOW))
    if not case.payload.lstrip().startswith(b"[") or case.payload == b"[]":
        check_accounted(validator, case.topic, case.payload, result)
    if case.expect == ACCEPTED:
        assert isinstance(result, Reading), result
        assert result.sensor_id == SENSOR and result.ts.utcoffset() == timedelta(0)
        assert result.values["do"].value == pytest.approx(8.0) and result.values["do"].unit == "mg/L"
    else:
        assert isinstance(result, DeadLetter), f"{case.name}: accepted {result}"
        assert result.code == case.expect, result.reason
        assert case.words in result.reason


def one(results: list):
    assert len(results) == 1, results
    return results[0]


def test_batches_check_each_sample_and_dead_letter_only_the_bad_ones():
    validator = bridge_validator()
    good = [reading(900 + k) for k in range(3)]
    bad = reading(905, values={"do": {"value": -5.0, "unit": "mg/L"}})
    results = validator.validate_message(TOPIC, enc([good[0], bad, good[1], good[0], good[2]]), NOW)
    assert [type(x).__name__ for x in results] == ["Reading", "Reading", "Reading", "DeadLetter"]
    assert [x.ts for x in results if isinstance(x, Reading)] == [datetime.fromisoformat(g["ts"]) for g in good]
    # one dead letter for the message's bad samples, with their count and the first one's reason
    summary = results[-1]
    assert (
        summary.reason.startswith("2 of 5 samples rejected (")
        and "impossible_value 1" in summary.reason
        and "duplicate 1" in summary.reason
    )
    assert "the first: sample 2 of 5: " in summary.reason
    one_bad = validator.validate_message(TOPIC, enc([reading(910), bad]), NOW)
    assert json.loads(one_bad[-1].payload)["ts"] == bad["ts"]  # a lone bad sample's dead letter keeps the sample
    other = reading(906, sensor_id="wq-qijiang-gunan")
    mixed = one(validator.validate_message(TOPIC, enc([other]), NOW))
    assert mixed.code == "topic_mismatch"  # a batch holds the topic's sensor only


def test_a_batch_over_the_size_limit_is_dead_lettered_whole():
    payload = enc([reading(1000 + k) for k in range(BRIDGE.max_payload_bytes // 150)])
    assert len(payload) > BRIDGE.max_payload_bytes
    assert one(bridge_validator().validate_message(TOPIC, payload, NOW)).code == "too_large"


def test_the_late_reading_is_older_and_the_escaped_one_is_escaped():
    late = next(c for c in CORPUS if c.name.startswith("late"))
    assert json.loads(late.payload)["ts"] < json.loads(late.prior[0])["ts"]
    assert b"\\u0071ijiang" in next(c for c in CORPUS if c.name == "unicode escapes in strings").payload


def test_the_whole_corpus_through_one_validator_gives_each_case_its_outcome():
    """What the running bridge sees: every message in order, one validator (the dedup memory is shared)."""
    validator = bridge_validator()
    outcomes = [(one(validator.validate_message(t, p, NOW)), expect) for c in CORPUS for t, p, expect in c.messages()]
    assert [r.code if isinstance(r, DeadLetter) else ACCEPTED for r, _ in outcomes] == [e for _, e in outcomes]


def test_a_dead_letter_keeps_the_payload_truncated_at_4_kib():
    case = next(c for c in CORPUS if c.name == "oversized payload")
    result = bridge_validator().validate(case.topic, case.payload, NOW)
    assert result.truncated and result.payload == case.payload[:PAYLOAD_KEEP_CHARS].decode()
    assert result.payload_bytes == len(case.payload) > PAYLOAD_KEEP_CHARS
    assert (result.kind, result.sensor_id) == ("water", SENSOR)
    binary = bridge_validator().validate(TOPIC, b"\xff" * 5000, NOW)
    assert binary.payload == "\\xff" * 1024 and binary.truncated  # undecodable bytes escaped, then cut


# --- the property ----------------------------------------------------------------------------------


def check_accounted(validator: ReadingValidator, topic_: str, payload: bytes, result) -> None:
    """validate() returned a reading that round-trips, or a dead letter with a README code, a reason and the payload."""
    assert isinstance(result, Reading | DeadLetter), type(result)
    if isinstance(result, Reading):
        address = parse_mqtt_topic(topic_, validator.topic_root)
        assert (result.sensor_id, result.kind, result.district) == (address.sensor_id, address.kind, address.district)
        assert len(payload) <= validator.max_payload_bytes
        assert (result.ts - NOW).total_seconds() <= validator.max_future_s
        for name, q in result.values.items():
            spec = validator.specs[result.kind][name]
            assert q.unit == spec.unit and spec.min <= q.value <= spec.max
        again = parse_reading(result.to_json())
        assert again == result and type(again) is type(result)
        assert isinstance(result, CameraDetection) == (result.kind == "camera")
    else:
        assert result.code in README_CODES, f"{result.code}: {result.reason}"
        assert result.reason.strip()
        assert result.source_topic == topic_ and result.stage == "bridge"
        text = payload.decode("utf-8", errors="backslashreplace")
        assert result.payload == text[:PAYLOAD_KEEP_CHARS] and result.payload_bytes == len(payload)
        assert result.truncated == (len(text) > PAYLOAD_KEEP_CHARS)
        assert DeadLetter.model_validate_json(result.to_json()) == result  # it can be sent on
        if len(payload) > validator.max_payload_bytes:
            assert result.code == "too_large"
        else:
            try:
                parse_mqtt_topic(topic_, validator.topic_root)
            except ValueError:
                assert result.code == "bad_topic"


def validate_twice(topic_: str, payload: bytes) -> None:
    """Validate a message, check it is accounted for; a message accepted once is a duplicate the second time."""
    validator = bridge_validator()
    result = validator.validate(topic_, payload, NOW)
    check_accounted(validator, topic_, payload, result)
    again = validator.validate(topic_, payload, NOW)
    check_accounted(validator, topic_, payload, again)
    if isinstance(result, Reading):
        assert isinstance(again, DeadLetter) and again.code == "duplicate"
    else:
        assert isinstance(again, DeadLetter) and again.code == result.code


TOPIC = topic()
CAMERA_TOPIC = topic(kind="camera", sensor=CAMERA)
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

VALID = enc(reading(0))


@st.composite
def corrupted(draw, payload: bytes = VALID) -> bytes:
    """A valid payload with a few bytes replaced, inserted or cut."""
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["replace", "insert", "cut"]))
        chunk = draw(st.binary(min_size=1, max_size=4))
        if op == "replace":
            data[at : at + len(chunk)] = chunk
        elif op == "insert":
            data[at:at] = chunk
        else:
            del data[at : at + draw(st.integers(1, 20))]
    return bytes(data)


@FUZZ
@given(payload=st.binary(max_size=2000) | corrupted() | st.sampled_from([b"", b"{}", b"[]", b"null", VALID]))
def test_fuzz_arbitrary_bytes_on_a_valid_topic(payload):
    validate_twice(TOPIC, payload)


@FUZZ
@given(samples=st.lists(st.sampled_from([VALID, b"42", b"null", b"{}", b"[]", b'"x"']) | corrupted(), max_size=8))
def test_fuzz_batches_give_one_outcome_per_sample(samples):
    """A JSON array of samples: a reading per good sample and one dead letter for the bad ones
    (numbered when one, counted when many); malformed: one dead letter."""
    payload = b"[" + b",".join(samples) + b"]"
    results = bridge_validator().validate_message(TOPIC, payload, NOW)
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = None
    assert all(isinstance(x, Reading | DeadLetter) for x in results)
    if not parsed:
        assert len(results) == 1 and isinstance(results[0], DeadLetter) and results[0].code == "invalid"
        return
    dead = [x for x in results if isinstance(x, DeadLetter)]
    bad = len(parsed) - (len(results) - len(dead))  # samples not accepted
    assert len(dead) == (bad > 0)
    if bad == 1:
        assert re.match(rf"sample \d+ of {len(parsed)}: ", dead[0].reason), dead[0].reason
    elif bad > 1:
        assert dead[0].reason.startswith(f"{bad} of {len(parsed)} samples rejected"), dead[0].reason
    assert all(d.code in README_CODES for d in dead)


PARAMETERS = sorted({name for kind in parameter_specs(load_toml("parameters")).values() for name in kind})
UNITS = sorted(
    {
        u
        for kind in parameter_specs(load_toml("parameters")).values()
        for s in kind.values()
        for u in (s.unit, *s.convert)
    }
)
FIELDS = ["sensor_id", "kind", "station", "district", "ts", "values", "detection", "confidence", "image_ref"]
IDENTS = [
    SENSOR,
    STATION,
    DISTRICT,
    CAMERA,
    CAMERA_SITE,
    "water",
    "camera",
    "rain",
    "wq-qijiang-gunan",
    "qijiang-gunan",
    "jiangjin",
    "rg-01-00",
]
NEST = "__nested__"

numbers = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1, max_value=30)
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.sampled_from(["8.0", "NaN", "inf", "1e400", "", "high", True, False, None])
)
offsets = (
    st.none()
    | st.just(UTC)
    | st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60 - 59, 23 * 60 + 59))
)
timestamps = (
    st.builds(lambda d: d.isoformat(), st.datetimes(timezones=offsets))
    | st.builds(
        lambda d: d.isoformat(), st.datetimes(max_value=datetime(1, 1, 1, 3), timezones=offsets)
    )  # the edges of
    | st.builds(
        lambda d: d.isoformat(), st.datetimes(min_value=datetime(9999, 12, 31, 21), timezones=offsets)
    )  # datetime's range
    | st.builds(
        lambda d: d.isoformat(),
        st.datetimes(min_value=datetime(2026, 11, 23), max_value=datetime(2026, 11, 25), timezones=st.just(UTC)),
    )
    | st.text(max_size=30)
    | st.integers()
    | st.floats()
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=20) | st.sampled_from(IDENTS + UNITS + PARAMETERS)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(FIELDS), children, max_size=4)
    ),
    max_leaves=12,
)
quantities = (
    st.fixed_dictionaries(
        {}, optional={"value": numbers, "unit": st.sampled_from(UNITS) | st.text(max_size=20), "extra": json_values}
    )
    | json_values
)


@st.composite
def mutated_readings(draw) -> tuple[str, bytes]:
    """A valid water or camera reading, then a few mutations: fields set, removed, retyped, huge, nested."""
    topic_, payload = draw(st.sampled_from([(TOPIC, reading(0)), (CAMERA_TOPIC, camera_reading(0))]))
    payload = deepcopy(payload)
    nest_depth = 0
    for _ in range(draw(st.integers(0, 4))):
        op = draw(
            st.sampled_from(["set", "drop", "parameter", "number", "unit", "ts", "ts", "identity", "huge", "nest"])
        )
        values = payload.get("values") if isinstance(payload.get("values"), dict) else None
        if op == "set":
            payload[draw(st.sampled_from(FIELDS) | st.text(max_size=10))] = draw(json_values)
        elif op == "drop" and payload:
            del payload[draw(st.sampled_from(sorted(payload)))]
        elif op == "parameter" and values is not None:
            values[draw(st.sampled_from(PARAMETERS) | st.text(max_size=10))] = draw(quantities)
        elif op == "number" and values:
            q = values[draw(st.sampled_from(sorted(values)))]
            if isinstance(q, dict):
                q["value"] = draw(numbers)
        elif op == "unit" and values:
            q = values[draw(st.sampled_from(sorted(values)))]
            if isinstance(q, dict):
                q["unit"] = draw(st.sampled_from(UNITS) | st.text(max_size=20))
        elif op == "ts":
            payload["ts"] = draw(timestamps)
        elif op == "identity":
            payload[draw(st.sampled_from(["sensor_id", "station", "district", "kind"]))] = draw(st.sampled_from(IDENTS))
        elif op == "huge":
            size = draw(st.sampled_from([4095, 4096, 4097, 60_000, 70_000]) | st.integers(0, 80_000))
            payload[draw(st.sampled_from(FIELDS) | st.just("note"))] = draw(st.sampled_from("xé中\U0001f30a")) * size
        elif op == "nest":
            payload[draw(st.sampled_from(FIELDS))] = NEST
            nest_depth = draw(st.integers(1, 3000))
    if draw(st.booleans()) and all(
        isinstance(payload.get(k), str) and "/" not in payload[k] for k in ("district", "kind", "sensor_id")
    ):
        topic_ = topic(payload["district"], payload["kind"], payload["sensor_id"])  # the topic follows the payload
    text = json.dumps(payload, allow_nan=True, ensure_ascii=draw(st.booleans()))
    if nest_depth:
        text = text.replace(json.dumps(NEST), "[" * nest_depth + "{}" + "]" * nest_depth, 1)
    return topic_, text.encode()


@FUZZ
@given(message=mutated_readings())
def test_fuzz_mutated_readings(message):
    validate_twice(*message)


segments = st.sampled_from(
    [ROOT, DISTRICT, "jiangjin", "water", "camera", "rain", SENSOR, CAMERA, "", "+", "#", "yuflow ", "WATER"]
) | st.text(max_size=12)
topics = (
    st.text(max_size=80)
    | st.builds("/".join, st.lists(segments, max_size=6))
    | st.builds(lambda s: "/".join([ROOT, *s]), st.lists(segments, min_size=3, max_size=3))
)


@FUZZ
@given(
    topic_=topics,
    payload=st.sampled_from([VALID, enc(camera_reading(0)), b"{", b""]) | st.builds(lambda m: m[1], mutated_readings()),
)
def test_fuzz_arbitrary_topics(topic_, payload):
    validate_twice(topic_, payload)
