"""Embedded MQTT broker: Debian's mosquitto 2.x on loopback, persistent sessions, optional password."""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

from pipeline.services.base import Service, find_binary, port_open


class MqttService(Service):
    name = "mqtt"

    @property
    def embedded(self) -> bool:
        return self.settings.mqtt.embedded

    @property
    def address(self) -> str:
        return f"{self.settings.mqtt.host}:{self.settings.mqtt.port}"

    def binary(self) -> Path:
        return find_binary("mosquitto", ("/usr/sbin", "/usr/local/sbin"), "apt-get install -y mosquitto")

    def arguments(self) -> list[str]:
        return ["-c", str(self.dir / "mosquitto.conf")]

    def healthy(self) -> bool:
        return port_open(self.settings.mqtt.host, self.settings.mqtt.port)

    def prepare(self) -> None:
        mqtt = self.settings.mqtt
        lines = [
            f"listener {mqtt.port} {mqtt.host}",
            f"user {getpass.getuser()}",  # stay the user who started it (root would switch to 'mosquitto')
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 5",
            # queued QoS 1 messages for an offline persistent session (a restarting bridge): keep them all
            "max_queued_messages 0",
            "max_inflight_messages 1000",
            "set_tcp_nodelay true",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if mqtt.username:
            password_file = self.dir / "passwd"
            password_file.write_text(f"{mqtt.username}:{mqtt.password.get_secret_value()}\n")
            password_file.chmod(0o600)
            # hash in place so the password never appears on a command line
            subprocess.run(
                [str(find_binary("mosquitto_passwd", ("/usr/bin",), "apt-get install -y mosquitto")), "-U", str(password_file)],
                check=True,
                capture_output=True,
            )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
