"""A local service process: config, start, health check, pid file, stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import Settings


class ServiceError(RuntimeError):
    pass


class MissingBinary(ServiceError):
    pass


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # running | started | stopped | external | down
    address: str
    pid: int | None = None
    detail: str = ""


def find_binary(name: str, extra_dirs: tuple[str, ...], install_hint: str) -> Path:
    found = shutil.which(name) or next((str(Path(d) / name) for d in extra_dirs if (Path(d) / name).is_file()), None)
    if found is None:
        raise MissingBinary(f"{name} not found; install it with: {install_hint}")
    return Path(found)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not alive
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Service:
    """Subclasses set ``name`` and implement binary/arguments/healthy; may override prepare/after_start."""

    name = "service"
    start_timeout_s = 30.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.data_path
        self.dir = self.root / self.name
        self.pid_file = self.root / "run" / f"{self.name}.pid"
        self.log_file = self.root / "logs" / f"{self.name}.log"

    # -- to implement
    @property
    def embedded(self) -> bool:
        raise NotImplementedError

    @property
    def address(self) -> str:
        raise NotImplementedError

    def binary(self) -> Path:
        raise NotImplementedError

    def arguments(self) -> list[str]:
        """Command-line arguments after the binary."""
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files before start."""

    def after_start(self) -> None:
        """Provision (topics, databases) once healthy; must be idempotent."""

    # -- lifecycle
    def our_pid(self) -> int | None:
        """The pid from our pid file if that process is alive and still runs our binary."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if process_alive(pid) and self.binary().name in cmdline(pid):
            return pid
        return None

    def status(self) -> ServiceStatus:
        if not self.embedded:
            state = "external" if self.healthy() else "down"
            return ServiceStatus(self.name, state, self.address, detail="" if state == "external" else "not reachable")
        pid = self.our_pid()
        if pid is None:
            return ServiceStatus(self.name, "stopped", self.address)
        return ServiceStatus(self.name, "running" if self.healthy() else "unhealthy", self.address, pid)

    def start(self) -> ServiceStatus:
        if not self.embedded:
            if not self.healthy():
                raise ServiceError(f"{self.name}: external service at {self.address} is not reachable")
            self.after_start()
            return ServiceStatus(self.name, "external", self.address)
        pid = self.our_pid()
        if pid is not None and self._wait_healthy(pid, 5.0):
            self.after_start()
            return ServiceStatus(self.name, "running", self.address, pid, "already running")
        if pid is None and self.healthy():
            raise ServiceError(
                f"{self.name}: {self.address} is already in use by a process Yuflow did not start; stop it, "
                f"or change the port in the settings, or set embedded = false to use it as an external service"
            )
        binary = self.binary()  # raises MissingBinary with the install hint
        for d in (self.dir, self.pid_file.parent, self.log_file.parent):
            d.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [str(binary), *self.arguments()],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it; our own process group
                cwd=self.dir,
            )
        self.pid_file.write_text(str(proc.pid))
        if not self._wait_healthy(proc.pid, self.start_timeout_s):
            tail = self.log_tail()
            self.stop()
            raise ServiceError(f"{self.name} did not become healthy at {self.address}; last log lines:\n{tail}")
        self.after_start()
        return ServiceStatus(self.name, "started", self.address, proc.pid)

    def stop(self) -> ServiceStatus:
        if not self.embedded:
            return ServiceStatus(self.name, "external", self.address, detail="not ours to stop")
        pid = self.our_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return ServiceStatus(self.name, "stopped", self.address, detail="was not running")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while process_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return ServiceStatus(self.name, "stopped", self.address, pid, "stopped")

    def _wait_healthy(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _reap(pid)
            if not process_alive(pid):
                return False
            if self.healthy():
                return True
            time.sleep(0.1)
        return False

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
