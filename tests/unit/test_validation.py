from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.city import default_city, load_toml
from pipeline.schemas import DeadLetter, Reading
from pipeline.validation import ReadingValidator, parameter_specs
from tests.unit.helpers import NOW, TOPIC, encode, water_payload


@pytest.fixture
def validator() -> ReadingValidator:
    return ReadingValidator(default_city(), parameter_specs(load_toml("parameters")), "yuflow", max_payload_bytes=4096)


def test_valid_reading_passes_and_units_are_canonical(validator):
    payload = water_payload(values={"do": {"value": 6500, "unit": "ug/L"}})
    reading = validator.validate(TOPIC, encode(payload), NOW)
    assert isinstance(reading, Reading)
    assert reading.values["do"].value == pytest.approx(6.5) and reading.values["do"].unit == "mg/L"


@pytest.mark.parametrize(
    "topic, payload, code, words",
    [
        (TOPIC, b"{not json", "invalid", "Invalid JSON"),
        (TOPIC, b"", "invalid", "Invalid JSON"),
        (TOPIC, encode(water_payload(ts="2026-11-24T10:00:00")), "invalid", "timezone"),
        (TOPIC, encode(water_payload(values={"do": {"value": "high", "unit": "mg/L"}})), "invalid", "values.do.value"),
        ("yuflow/qijiang/water", encode(water_payload()), "bad_topic", "not yuflow/<district>"),
        ("yuflow/qijiang/water/wq-puhe-upper", encode(water_payload()), "topic_mismatch", "sensor_id"),
        (
            "yuflow/qijiang/water/wq-nowhere",
            encode(water_payload(sensor_id="wq-nowhere")),
            "unknown_sensor",
            "wq-nowhere",
        ),
        (TOPIC, encode(water_payload(station="puhe-upper")), "sensor_mismatch", "registered"),
        (TOPIC, encode(water_payload(values={"co2": {"value": 1, "unit": "ppm"}})), "unknown_parameter", "co2"),
        (TOPIC, encode(water_payload(values={"do": {"value": 6, "unit": "ppm"}})), "wrong_unit", "ppm"),
        (TOPIC, encode(water_payload(values={"do": {"value": 90, "unit": "mg/L"}})), "impossible_value", "outside"),
        (TOPIC, encode(water_payload(values={"ph": {"value": -1, "unit": "pH"}})), "impossible_value", "ph"),
        (TOPIC, encode(water_payload(ts=(NOW + timedelta(days=2)).isoformat())), "future_timestamp", "future"),
        (TOPIC, b"x" * 5000, "too_large", "5000 bytes"),
    ],
)
def test_bad_input_becomes_a_dead_letter_with_a_reason(validator, topic, payload, code, words):
    result = validator.validate(topic, payload, NOW)
    assert isinstance(result, DeadLetter), result
    assert result.code == code
    assert words in result.reason
    assert result.source_topic == topic
    assert result.payload_bytes == len(payload)


def test_duplicates_are_dead_lettered_but_late_readings_pass(validator):
    assert isinstance(validator.validate(TOPIC, encode(water_payload(minutes=10)), NOW), Reading)
    duplicate = validator.validate(TOPIC, encode(water_payload(minutes=10)), NOW)
    assert isinstance(duplicate, DeadLetter) and duplicate.code == "duplicate"
    late = validator.validate(TOPIC, encode(water_payload(minutes=0)), NOW)  # older than the last one
    assert isinstance(late, Reading)


def test_dedup_window_is_bounded(validator):
    validator.dedup_window = 2
    for minute in range(3):
        validator.validate(TOPIC, encode(water_payload(minutes=minute)), NOW)
    assert isinstance(validator.validate(TOPIC, encode(water_payload(minutes=0)), NOW), Reading)  # forgotten


def test_oversized_payload_is_truncated_in_the_record(validator):
    validator.max_payload_bytes = 10**6
    huge = encode(water_payload(note="x" * 10_000))
    result = validator.validate(TOPIC, huge, NOW)
    assert isinstance(result, DeadLetter) and result.truncated and len(result.payload) == 4096


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
mutated_readings = st.builds(
    lambda field, value: encode({**water_payload(), field: value}) if field else encode(water_payload()),
    st.sampled_from([None, "sensor_id", "kind", "station", "district", "ts", "values"]),
    json_values,
)


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from([TOPIC, "yuflow/liangping/camera/cam-ruxi-mingda"]) | st.text(max_size=60),
    payload=st.binary(max_size=300) | mutated_readings,
)
def test_validator_never_raises(topic, payload):
    validator = ReadingValidator(default_city(), parameter_specs(load_toml("parameters")), "yuflow")
    result = validator.validate(topic, payload, NOW)
    assert isinstance(result, (Reading, DeadLetter))
    if isinstance(result, DeadLetter):
        assert result.reason
