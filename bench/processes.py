"""The processes a bench run starts and measures: free ports to start services on, and CPU and peak
memory per process (read from /proc)."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0


@dataclass
class ProcessMeter:
    pids: dict[str, int]
    started: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, float] = field(default_factory=dict)
    t0: float = 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.started = {name: cpu_s(pid) for name, pid in self.pids.items()}

    def sample(self) -> None:
        for name, pid in self.pids.items():
            self.peak_rss[name] = max(self.peak_rss.get(name, 0.0), rss_mb(pid))

    def result(self) -> dict[str, dict]:
        wall = time.monotonic() - self.t0
        return {
            name: {
                "cpu_percent": round(100 * (cpu_s(pid) - self.started[name]) / wall, 1),
                "peak_rss_mb": round(self.peak_rss.get(name, rss_mb(pid)), 1),
            }
            for name, pid in self.pids.items()
        }
