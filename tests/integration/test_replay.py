"""`yuflow sim record` and `yuflow replay` through the real pipeline: MQTT (via the bridge) and Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.influx import influxql
from pipeline.processes import wait_until
from sensors_sim.recording import load_frame, load_truth
from tests.integration.conftest import yuflow

pytestmark = pytest.mark.integration


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("fmt, route, seed", [("jsonl", "mqtt", 21), ("parquet", "kafka", 22)])
def test_recording_replays_into_influxdb(stack, tmp_path, fmt, route, seed):
    file = tmp_path / f"random-{seed}.{fmt}"
    yuflow("sim", "record", "random", str(file), "--seed", str(seed), "--duration", "1")
    frame = load_frame(tmp_path / f"random-{seed}.parquet") if fmt == "parquet" else None
    if frame is None:  # the JSONL twin, for counting: the same scenario and seed
        yuflow(
            "sim", "record", "random", str(tmp_path / f"random-{seed}.parquet"), "--seed", str(seed), "--duration", "1"
        )
        frame = load_frame(tmp_path / f"random-{seed}.parquet")
    truth = load_truth(file)
    assert truth.scenario == "random" and truth.seed == seed
    yuflow("replay", str(file), "--to", route, "--time", "original")

    rain = frame[(frame["parameter"] == "rain") & ~frame["malformed"]]
    expected = rain[["sensor_id", "ts_ms"]].drop_duplicates().shape[0]  # duplicates overwrite one point
    query = (
        f"SELECT count(\"rain\") FROM readings WHERE time >= '{iso(int(rain['ts_ms'].min()))}' "
        f"AND time <= '{iso(int(rain['ts_ms'].max()))}'"
    )

    def counted():
        series = influxql(stack.settings.influx, query)
        return series and series[0]["values"][0][1] == expected

    assert wait_until(counted, 60, what=f"{expected} rain readings in InfluxDB via {route}")
