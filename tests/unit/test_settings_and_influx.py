import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from pipeline.influx import deadletter_line, reading_line
from pipeline.schemas import DeadLetter, Reading
from pipeline.services.base import MissingBinary, find_binary
from pipeline.settings import load_settings, masked_dict
from tests.unit.helpers import encode, water_payload


def test_env_overrides_user_file_overrides_defaults(tmp_path, monkeypatch):
    user = tmp_path / "mine.toml"
    user.write_text('[mqtt]\nport = 2883\nhost = "10.0.0.5"\n[kafka]\npartitions = 2\n')
    monkeypatch.setenv("YUFLOW_CONFIG", str(user))
    monkeypatch.setenv("YUFLOW_MQTT__PORT", "3883")
    s = load_settings()
    assert s.mqtt.port == 3883  # env beats the user file
    assert s.mqtt.host == "10.0.0.5" and s.kafka.partitions == 2  # user file beats defaults
    assert s.mqtt.qos == 1 and s.influx.database == "yuflow"  # defaults fill the rest


def test_config_show_masks_secrets():
    env = {**os.environ, "YUFLOW_INFLUX__TOKEN": "tok-very-secret", "YUFLOW_MQTT__PASSWORD": "pw-very-secret"}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "show", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "very-secret" not in out.stdout + out.stderr
    assert '"token": "***"' in out.stdout and '"password": "***"' in out.stdout
    assert "very-secret" not in repr(load_settings(influx={"token": "very-secret"}))
    assert masked_dict(load_settings())["influx"]["token"] == ""


def test_reading_line_protocol_escapes_tags():
    reading = Reading.model_validate_json(encode(water_payload(ts="2026-01-01T00:00:00Z")))
    assert reading_line(reading) == (
        "readings,district=qijiang,kind=water,sensor_id=wq-puhe-zhaixi-bridge,station=puhe-zhaixi-bridge "
        "do=6.5,ph=7.2 1767225600000000000"
    )


def test_deadletter_line_counts_and_keeps_the_reason():
    record = DeadLetter(
        code="invalid",
        reason='bad "json", really',
        source_topic="yuflow/a b",
        payload="{",
        payload_bytes=1,
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert deadletter_line(record).startswith(
        'deadletter,code=invalid,stage=bridge count=1i,reason="bad \\"json\\", really"'
    )


def test_missing_binary_names_the_package():
    with pytest.raises(MissingBinary, match="apt-get install -y nothing-here"):
        find_binary("yuflow-no-such-binary", (), "apt-get install -y nothing-here")
