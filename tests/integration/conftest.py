"""Real services for the integration tests: started once per session on free loopback ports.

Mosquitto, the Tansu Kafka-protocol broker and InfluxDB run from a temporary data directory; a Faust
worker and the bridge run as subprocesses (`python -m pipeline.cli worker|bridge`), configured by the
same YUFLOW_* environment variables a user would set.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from pipeline import services
from pipeline.processes import Background
from pipeline.settings import Settings, load_settings
from pipeline.status import bridge_online


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    settings: Settings
    worker: Background
    bridge: Background


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("yuflow")
    influx_port = free_port()
    env = {
        "YUFLOW_DATA_DIR": str(data_dir),
        "YUFLOW_MQTT__PORT": str(free_port()),
        "YUFLOW_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "YUFLOW_INFLUX__URL": f"http://127.0.0.1:{influx_port}",
        "YUFLOW_WORKER__WEB_PORT": str(free_port()),
        "YUFLOW_INFLUX__FLUSH_INTERVAL_S": "0.5",
        "YUFLOW_BRIDGE__MAX_FUTURE_S": "86400",  # the Ruxi test sends the rest of its scenario ahead of time
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the subprocesses and load_settings() both read them
    settings = load_settings()
    processes: list[Background] = []
    stack_: Stack | None = None
    try:
        services.up(settings)
        worker = Background("worker", ["worker"], settings)
        bridge = Background("bridge", ["bridge"], settings)
        processes += [worker, bridge]
        bridge_online(settings, bridge.pid, timeout_s=60)
        stack_ = Stack(settings, worker, bridge)
        yield stack_
    finally:
        if stack_ is not None:  # the fault tests replace the worker and the bridge with restarted ones
            processes += [p for p in (stack_.worker, stack_.bridge) if p not in processes]
        for p in reversed(processes):
            p.stop()
        services.down(settings)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def own_services(data_dir, bridges: int = 1, workers: int = 1, processes: list | None = None, **extra_env: str):
    """Services, worker and bridge of their own, started the way the README's commands start them.

    ``bridges`` > 1: `yuflow bridge --instances N`; ``workers`` > 1: more `yuflow worker`s (logs
    worker-2 …); ``processes``: an empty list that gets the started processes (whatever the test adds
    to it is stopped at the end too); ``extra_env``: more YUFLOW_* settings (short deadman limits)."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "YUFLOW_DATA_DIR": str(data_dir / "yuflow"),
            "YUFLOW_MQTT__PORT": str(free_port()),
            "YUFLOW_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "YUFLOW_INFLUX__URL": f"http://127.0.0.1:{free_port()}",
            "YUFLOW_WORKER__WEB_PORT": str(free_port()),
            "COLUMNS": "200",
            **extra_env,
        }.items():
            env.setenv(key, value)
        settings = load_settings()
        started: list[Background] = processes if processes is not None else []  # all stopped at the end
        try:
            services.up(settings)
            command = ["bridge"] if bridges == 1 else ["bridge", "--instances", str(bridges)]
            started += [Background("worker", ["worker"], settings), Background("bridge", command, settings)]
            started += [
                Background(f"worker-{k}", ["worker"], settings, env={"YUFLOW_WORKER__WEB_PORT": str(free_port())})
                for k in range(2, workers + 1)
            ]  # one consumer group: they split the partitions
            bridge_online(settings, started[1].pid if bridges == 1 else None, timeout_s=60, instances=bridges)
            yield settings
        finally:
            for process in reversed(started):
                process.stop()
            services.down(settings)


def yuflow(*args: str, exit_code: int = 0, timeout_s: float = 300) -> str:
    """``yuflow <args>`` as a user runs it (a wide terminal for rich's tables); its output, once it
    has exited with ``exit_code``."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == exit_code, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout
