"""``yuflow bridge --instances N``: N bridge processes of one shared subscription, each started
again when it dies."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from pipeline.rules import rules_or_exit
from pipeline.settings import Settings

log = logging.getLogger("yuflow.bridge")


def supervise_bridges(settings: Settings, instances: int, restart_after_s: float = 1.0) -> None:
    """Run ``instances`` bridges (``<instance>-1`` … ``-N``) as child processes of a shared
    subscription, and start again any that dies: the broker keeps what it queued for the dead
    one's session and delivers it to the new one. Until SIGINT/SIGTERM, which stops them all."""
    rules_or_exit("yuflow bridge")  # rather than N children failing and being restarted
    names = [f"{settings.bridge.instance}-{k}" for k in range(1, instances + 1)]
    stopping = False

    def start(name: str) -> subprocess.Popen:
        env = {**os.environ, "YUFLOW_BRIDGE__INSTANCE": name}
        if settings.bridge.health_port:  # one port each: health_port, +1, ...
            env["YUFLOW_BRIDGE__HEALTH_PORT"] = str(settings.bridge.health_port + names.index(name))
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "bridge"], env=env)

    def stop(*_) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children = {name: start(name) for name in names}
    log.info("supervising %d bridges: %s", instances, ", ".join(f"{n} (pid {p.pid})" for n, p in children.items()))
    while not stopping:
        time.sleep(0.2)
        for name, child in list(children.items()):
            if child.poll() is not None and not stopping:
                log.warning(
                    "bridge %s (pid %d) ended with %s; starting it again in %.0f s",
                    name,
                    child.pid,
                    child.returncode,
                    restart_after_s,
                )
                time.sleep(restart_after_s)
                if not stopping:  # (a stop signal to the whole process group ends the children first)
                    children[name] = start(name)
    for child in children.values():
        child.terminate()
    for child in children.values():
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
