from datetime import UTC

import pytest
from pydantic import ValidationError

from pipeline.schemas import CameraDetection, Reading, Tier, parse_reading
from pipeline.topics import ALL_TOPICS, mqtt_subscription, mqtt_topic, parse_mqtt_topic
from tests.unit.helpers import encode, water_payload


def test_reading_round_trip_normalises_to_utc():
    payload = water_payload(ts="2026-11-24T20:00:00+08:00")
    reading = Reading.model_validate_json(encode(payload))
    assert reading.ts.tzinfo == UTC and reading.ts.hour == 12
    assert b'"ts":"2026-11-24T12:00:00Z"' in reading.to_json()
    assert Reading.model_validate_json(reading.to_json()) == reading


@pytest.mark.parametrize(
    "change, field",
    [
        ({"ts": "2026-11-24T20:00:00"}, "ts"),  # no timezone
        ({"kind": "air"}, "kind"),
        ({"values": {}}, "values"),
        ({"sensor_id": "has space"}, "sensor_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_reading_rejects_bad_fields(change, field):
    with pytest.raises(ValidationError) as e:
        Reading.model_validate_json(encode(water_payload(**change)))
    assert field in str(e.value)


def test_nan_and_infinity_are_rejected():
    raw = encode(water_payload()).replace(b"6.5", b"NaN")
    with pytest.raises(ValidationError, match="finite"):
        Reading.model_validate_json(raw)
    raw = encode(water_payload()).replace(b"6.5", b"Infinity")
    with pytest.raises(ValidationError, match="finite"):
        Reading.model_validate_json(raw)


def test_camera_detection_parses_as_its_own_type():
    payload = water_payload(
        kind="camera", detection="oil_sheen", confidence=0.9, values={"oil_area": {"value": 300, "unit": "m2"}}
    )
    assert isinstance(parse_reading(encode(payload)), CameraDetection)
    assert type(parse_reading(encode(water_payload()))) is Reading
    with pytest.raises(ValidationError):
        CameraDetection.model_validate_json(encode({**payload, "confidence": 1.5}))


def test_tiers_are_ordered_low_to_high():
    assert [t.rank for t in (Tier.blue, Tier.yellow, Tier.orange, Tier.red)] == [0, 1, 2, 3]


def test_topics_are_defined_once_and_parse_back():
    assert set(ALL_TOPICS) == {
        "readings.water",
        "readings.rain",
        "readings.crowd",
        "readings.camera",
        "rain.tiles",
        "rain.districts",
        "crowd.camera",
        "alerts",
        "tracing",
        "warnings",
        "lifecycle",
        "actions",
        "actions.results",
        "silences",
        "alerts.suppressed",
        "deliveries",
        "deadletter",
        "water.trace",
    }
    topic = mqtt_topic("yuflow", "qijiang", "water", "wq-1")
    assert topic == "yuflow/qijiang/water/wq-1"
    address = parse_mqtt_topic(topic, "yuflow")
    assert (address.district, address.kind.value, address.sensor_id) == ("qijiang", "water", "wq-1")
    assert mqtt_subscription("yuflow") == "yuflow/#"
    for bad in ("yuflow/qijiang/water", "other/qijiang/water/x", "yuflow/qijiang/air/x"):
        with pytest.raises(ValueError):
            parse_mqtt_topic(bad, "yuflow")
