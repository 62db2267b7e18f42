"""`yuflow eval gecco FILE --stream --days 3` as a user runs it: the command starts its own embedded
services, worker and bridge, sends real 1-minute drinking-water rows over MQTT, and the water agent's
alerts must be the batch run's (the same screen, the same events at the same times)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration
EXCERPT = Path(__file__).parents[1] / "data" / "gecco-water-2016-spring-first-3-days.csv.gz"


def test_eval_gecco_stream_gives_the_batch_runs_alerts(tmp_path):
    env = {
        **os.environ,
        "YUFLOW_DATA_DIR": str(tmp_path / "yuflow"),
        "YUFLOW_MQTT__PORT": str(free_port()),
        "YUFLOW_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "YUFLOW_INFLUX__URL": f"http://127.0.0.1:{free_port()}",
        "YUFLOW_WORKER__WEB_PORT": str(free_port()),
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "eval", "gecco", str(EXCERPT), "--stream", "--days", "3"],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    print(done.stdout[-2000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = next(line for line in done.stdout.splitlines() if line.startswith("batch run:"))
    raised = int(summary.split("batch run: ")[1].split(" events")[0])
    assert raised > 0 and "the same" in summary, summary  # the excerpt raises events: the comparison means something
