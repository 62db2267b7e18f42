"""Embedded MQTT broker: Debian's mosquitto 2.x, persistent sessions; optionally passwords, an ACL and TLS.

One plain listener on loopback; clients must log in: the services user (bridge, simulator, demo;
``mqtt.username``, or a login generated into the data directory, see ``with_embedded_login``) and,
from ``mqtt.sensor_passwords_file``, one user per sensor named by its sensor id. ``mqtt.anonymous``
(``yuflow demo`` only) lets clients in without a login as well. Passwords go into a file
that ``mosquitto_passwd -U`` hashes in place, so they never appear on a command line. ``mqtt.acl``
writes an ACL file: a sensor may publish only to its own topic ``<root>/+/+/<sensor_id>``, the
services user reads ``<root>/#`` and writes ``<root>/status/#`` (and the readings, while no sensor
has a login of its own). ``mqtt.tls`` makes the listener speak
TLS with ``tls_cert_file``/``tls_key_file`` (and ``tls_ca_file`` for the chain).
"""

from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path

from pipeline.services.base import Service, ServiceError, find_binary, port_open
from pipeline.settings import MqttSettings

FORBIDDEN_IN_USERNAME = set("+#/:") | {" ", "\t"}


class MqttService(Service):
    name = "mqtt"

    @property
    def embedded(self) -> bool:
        return self.settings.mqtt.embedded

    @property
    def address(self) -> str:
        mqtt = self.settings.mqtt
        return f"{'mqtts://' if mqtt.tls else ''}{mqtt.host}:{mqtt.port}"

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
            *tls_lines(mqtt),
            f"user {getpass.getuser()}",  # stay the user who started it (root would switch to 'mosquitto')
            "persistence true",
            f"persistence_location {self.dir}/",
            # the database is written every second: a kill -9 of the broker loses at most the last second
            # of messages queued for an offline bridge (saving on every change would cost a write per message)
            "autosave_interval 1",
            # queued QoS 1 messages for an offline persistent session (a restarting bridge): ~10 min at 5,000/s
            "max_queued_messages 3000000",
            # larger payloads are refused by the broker before they cost memory; up to here the bridge
            # dead-letters what exceeds bridge.max_payload_bytes (too_large), with the reason
            f"message_size_limit {4 * self.settings.bridge.max_payload_bytes}",
            "max_inflight_messages 1000",
            "set_tcp_nodelay true",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        password_file, acl_file = self.dir / "passwd", self.dir / "acl"
        password_file.unlink(missing_ok=True)
        acl_file.unlink(missing_ok=True)
        if mqtt.username:  # always, from load_settings
            users = [(mqtt.username, mqtt.password.get_secret_value()), *sensor_credentials(mqtt)]
            _write_private(password_file, "".join(f"{user}:{password}\n" for user, password in users))
            # hash in place so no password appears on a command line or stays in plain text
            subprocess.run(
                [
                    str(find_binary("mosquitto_passwd", ("/usr/bin",), "apt-get install -y mosquitto")),
                    "-U",
                    str(password_file),
                ],
                check=True,
                capture_output=True,
            )
            lines += [f"allow_anonymous {str(mqtt.anonymous).lower()}", f"password_file {password_file}"]
            if mqtt.acl:
                _write_private(acl_file, acl_text(mqtt))
                lines.append(f"acl_file {acl_file}")
        else:
            raise ServiceError("mqtt: the embedded broker needs the services' login (mqtt.username and mqtt.password)")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")


def tls_lines(mqtt: MqttSettings) -> list[str]:
    """The listener's TLS options; none without ``mqtt.tls``."""
    if not mqtt.tls:
        return []
    if not (mqtt.tls_cert_file and mqtt.tls_key_file):
        raise ServiceError(
            "mqtt: tls = true on the embedded broker needs tls_cert_file and tls_key_file (its certificate and key)"
        )
    files = {"certfile": mqtt.tls_cert_file, "keyfile": mqtt.tls_key_file, "cafile": mqtt.tls_ca_file}
    for option, name in files.items():
        if name and not Path(name).is_file():
            raise ServiceError(f"mqtt: {option} {name} is not a file")
    return [f"{option} {Path(name).resolve()}" for option, name in files.items() if name]


def sensor_credentials(mqtt: MqttSettings) -> list[tuple[str, str]]:
    """(sensor_id, password) from ``mqtt.sensor_passwords_file``: ``sensor_id:password`` lines, '#' comments.

    Errors name the file and line, never a password."""
    if not mqtt.sensor_passwords_file:
        return []
    path = Path(mqtt.sensor_passwords_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ServiceError(f"mqtt: cannot read sensor_passwords_file {path}: {error.strerror}") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        user = user.strip()
        problem = (
            "is not 'sensor_id:password'"
            if not sep or not user or not password
            else "has a sensor id with one of + # / : or a space"
            if FORBIDDEN_IN_USERNAME & set(user)
            else f"uses the services' user name {user!r}"
            if user == mqtt.username
            else f"repeats sensor {user!r}"
            if user in found
            else ""
        )
        if problem:
            raise ServiceError(f"mqtt: {path} line {number} {problem}")
        found[user] = password
    return list(found.items())


def acl_text(mqtt: MqttSettings) -> str:
    """Mosquitto ACL: each sensor (user name = sensor id) publishes to its own topic only; the services
    user reads every topic under the root and writes the status topics, and the readings too while
    no sensor logs in itself (the simulator publishes for them). Anything else is denied."""
    root = mqtt.topic_root
    anonymous = (
        ["# clients without a login (mqtt.anonymous: the demo)", f"topic readwrite {root}/#", ""]
        if mqtt.anonymous
        else []
    )
    services_write = f"{root}/status/#" if mqtt.sensor_passwords_file else f"{root}/#"
    return "\n".join(
        [
            "# written by Yuflow (pipeline/services/mqtt.py); regenerated at each start",
            *anonymous,
            f"user {mqtt.username}",
            f"topic read {root}/#",
            f"topic write {services_write}",
            "",
            "# every other user is a sensor logged in with its sensor id: <root>/<district>/<kind>/<sensor_id>",
            f"pattern write {root}/+/+/%u",
            "",
        ]
    )


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (no window in which it is world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
