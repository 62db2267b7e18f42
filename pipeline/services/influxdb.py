"""Embedded InfluxDB: Debian's influxdb 1.x (`influxd`) on loopback, data under .yuflow/influxdb/."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from pipeline.influx import ensure_database
from pipeline.services.base import Service, find_binary


class InfluxService(Service):
    name = "influxdb"

    @property
    def embedded(self) -> bool:
        return self.settings.influx.embedded

    @property
    def address(self) -> str:
        return self.settings.influx.url

    def binary(self) -> Path:
        return find_binary("influxd", ("/usr/bin",), "apt-get install -y influxdb")

    def arguments(self) -> list[str]:
        return ["-config", str(self.dir / "influxdb.conf")]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.settings.influx.url}/ping", timeout=1) as r:
                return r.status == 204
        except (urllib.error.URLError, OSError):
            return False

    def prepare(self) -> None:
        url = urlparse(self.settings.influx.url)
        host, port = url.hostname or "127.0.0.1", url.port or 8086
        conf = f"""\
reporting-disabled = true
bind-address = "{host}:{port + 2}"

[meta]
  dir = "{self.dir}/meta"

[data]
  dir = "{self.dir}/data"
  wal-dir = "{self.dir}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{host}:{port}"
  log-enabled = false

[logging]
  level = "warn"
"""
        (self.dir / "influxdb.conf").write_text(conf)

    def after_start(self) -> None:
        ensure_database(self.settings.influx)
