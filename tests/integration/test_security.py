"""MQTT security on a real mosquitto started by the project's own MqttService (not the session stack's):
passwords, the per-sensor ACL, TLS with a throwaway CA; and no secret in a running bridge's log."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from pipeline.mqtt import make_client
from pipeline.services.mqtt import MqttService
from pipeline.settings import Settings, load_settings
from pipeline.status import bridge_online
from pipeline.topics import bridge_status_topic
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

ROOT = "sec"
SERVICES_USER, SERVICES_PASSWORD = "yuflow-services", "svc-pw-7f3a91"
SENSORS = {"wq-alpha": "alpha-pw-1c9e", "wq-beta": "beta-pw-55d2"}
NOT_AUTHORIZED = 135  # MQTT v5 reason code


def make_ca(directory: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make test certificates (apt-get install -y openssl)")
    d = directory
    ext = d / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    for args in (
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=Yuflow test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        [
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            str(ext),
        ],
    ):
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)
    return {
        "tls_ca_file": str(d / "ca.crt"),
        "tls_cert_file": str(d / "server.crt"),
        "tls_key_file": str(d / "server.key"),
    }


def broker_settings(directory: Path, **mqtt_overrides) -> Settings:
    passwords = directory / "sensors.passwd"
    passwords.write_text("# sensor_id:password\n" + "".join(f"{s}:{p}\n" for s, p in SENSORS.items()))
    passwords.chmod(0o600)
    mqtt_settings = {
        "port": free_port(),
        "username": SERVICES_USER,
        "password": SERVICES_PASSWORD,
        "acl": True,
        "sensor_passwords_file": str(passwords),
        "topic_root": ROOT,
        "client_id_prefix": "sec",
        **mqtt_overrides,
    }
    return load_settings(data_dir=directory / "data", mqtt=mqtt_settings)


def running(settings: Settings) -> Iterator[Settings]:
    service = MqttService(settings)
    service.start()
    try:
        yield settings
    finally:
        service.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[Settings]:
    yield from running(broker_settings(tmp_path_factory.mktemp("mqtt-acl")))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory) -> Iterator[Settings]:
    directory = tmp_path_factory.mktemp("mqtt-tls")
    yield from running(broker_settings(directory, tls=True, **make_ca(directory)))


class Session:
    """A connected MQTT v5 test client that records its CONNACK, PUBACKs and messages."""

    def __init__(
        self,
        settings: Settings,
        username: str | None,
        password: str | None,
        tls: dict | None = None,
        client: mqtt.Client | None = None,
    ):
        self.connected = threading.Event()
        self.connack: mqtt.ReasonCode | None = None
        self.pubacks: dict[int, int] = {}
        self.messages: list[tuple[str, bytes]] = []
        if client is None:
            client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=f"test-{username}-{time.monotonic_ns()}",
                protocol=mqtt.MQTTv5,
            )
            if username is not None:
                client.username_pw_set(username, password)
            if tls is not None:
                client.tls_set(**tls)
        self.client = client
        client.on_connect = self._on_connect
        client.on_publish = lambda c, u, mid, rc, props: self.pubacks.__setitem__(mid, rc.value)
        client.on_message = lambda c, u, msg: self.messages.append((msg.topic, msg.payload))
        client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=10)
        client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = reason_code
        self.connected.set()

    def accepted(self, timeout_s: float = 5) -> bool:
        """True once the broker accepted the login; False when it refused it or never answered."""
        self.connected.wait(timeout_s)
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(5), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code (v5: 135 when the ACL denies it)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert info.mid in self.pubacks, f"no PUBACK for {topic}"
        return self.pubacks[info.mid]

    def wait_for(self, payload: bytes, timeout_s: float = 5) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p == payload for _, p in self.messages):
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    opened: list[Session] = []
    yield opened
    for s in opened:
        s.close()


def open_session(sessions: list[Session], *args, **kwargs) -> Session:
    session = Session(*args, **kwargs)
    sessions.append(session)
    return session


def services_listener(settings: Settings, sessions: list[Session]) -> Session:
    """The services user, logged in by the project's own make_client, subscribed to everything under the root."""
    client = make_client(settings.mqtt, f"sec-listener-{time.monotonic_ns()}")
    listener = open_session(sessions, settings, None, None, client=client)
    assert listener.accepted(), listener.connack
    listener.subscribe(f"{ROOT}/#")
    return listener


def test_anonymous_clients_and_wrong_passwords_are_refused(broker, sessions):
    assert not open_session(sessions, broker, None, None).accepted()
    assert not open_session(sessions, broker, "wq-alpha", "not-its-password").accepted()
    assert not open_session(sessions, broker, SERVICES_USER, SENSORS["wq-alpha"]).accepted()
    assert not open_session(sessions, broker, "wq-unknown", "anything").accepted()
    assert open_session(sessions, broker, "wq-alpha", SENSORS["wq-alpha"]).accepted()
    config = (broker.data_path / "mqtt" / "mosquitto.conf").read_text()
    passwd = (broker.data_path / "mqtt" / "passwd").read_text()
    assert "allow_anonymous false" in config and "acl_file" in config
    assert not any(secret in config + passwd for secret in (SERVICES_PASSWORD, *SENSORS.values()))  # hashed


def test_a_sensor_publishes_only_to_its_own_topic(broker, sessions):
    listener = services_listener(broker, sessions)
    alpha = open_session(sessions, broker, "wq-alpha", SENSORS["wq-alpha"])
    assert alpha.accepted()

    assert alpha.publish(f"{ROOT}/shapingba/water/wq-beta", b"forged: beta's topic") == NOT_AUTHORIZED
    assert alpha.publish(f"{ROOT}/status/bridge", b"forged: bridge status") == NOT_AUTHORIZED
    assert alpha.publish(f"{ROOT}/shapingba/water/wq-alpha/extra", b"forged: deeper topic") == NOT_AUTHORIZED
    assert alpha.publish(f"{ROOT}/shapingba/water/wq-alpha", b"own topic") == 0
    assert alpha.publish(f"{ROOT}/yubei/water/wq-alpha", b"own id, other district") == 0
    # the broker keeps one publisher's order: once the later, allowed message is in, the forged ones would be too
    assert listener.wait_for(b"own topic") and listener.wait_for(b"own id, other district")
    time.sleep(0.3)
    assert not [p for _, p in listener.messages if p.startswith(b"forged")]


def test_sensors_read_nothing_and_the_services_user_writes_only_status(broker, sessions):
    alpha = open_session(sessions, broker, "wq-alpha", SENSORS["wq-alpha"])
    beta = open_session(sessions, broker, "wq-beta", SENSORS["wq-beta"])
    assert alpha.accepted() and beta.accepted()
    alpha.subscribe(f"{ROOT}/#")
    listener = services_listener(broker, sessions)

    services = open_session(sessions, broker, SERVICES_USER, SERVICES_PASSWORD)
    assert services.accepted()
    assert services.publish(f"{ROOT}/shapingba/water/wq-beta", b"forged: services as a sensor") == NOT_AUTHORIZED
    assert services.publish(bridge_status_topic(ROOT, "1"), b"online pid=1") == 0
    assert beta.publish(f"{ROOT}/shapingba/water/wq-beta", b"beta reading") == 0
    assert listener.wait_for(b"online pid=1") and listener.wait_for(b"beta reading")
    time.sleep(0.3)
    assert alpha.messages == []  # a sensor cannot read other sensors' readings, nor the status
    assert not [p for _, p in listener.messages if p.startswith(b"forged")]
    services.publish(bridge_status_topic(ROOT, "1"), b"", retain=True)


def test_tls_with_the_ca_works_and_plain_or_unverified_connections_fail(tls_broker, sessions):
    config = (tls_broker.data_path / "mqtt" / "mosquitto.conf").read_text()
    assert "certfile" in config and "keyfile" in config and "cafile" in config
    listener = services_listener(tls_broker, sessions)  # make_client: TLS with tls_ca_file, and the password
    sensor = open_session(
        sessions, tls_broker, "wq-beta", SENSORS["wq-beta"], tls={"ca_certs": tls_broker.mqtt.tls_ca_file}
    )
    assert sensor.accepted()
    assert sensor.publish(f"{ROOT}/shapingba/water/wq-beta", b"over tls") == 0
    assert listener.wait_for(b"over tls")

    plain = open_session(sessions, tls_broker, "wq-beta", SENSORS["wq-beta"])
    assert not plain.accepted(timeout_s=3)  # a plain MQTT CONNECT on the TLS port gets no CONNACK
    with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs do not know the test CA
        open_session(sessions, tls_broker, "wq-beta", SENSORS["wq-beta"], tls={})


def test_a_running_bridge_logs_no_secret(broker, stack, tmp_path):
    """`yuflow bridge` with every secret set (env and secrets directory), at DEBUG, against the password +
    ACL broker and the session's Kafka: it comes online, and its output holds none of the secret values."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "influx__password").write_text("influx-pw-from-file-4b1e\n")
    (secrets_dir / "mqtt__password").write_text(SERVICES_PASSWORD + "\n")
    secrets = {
        "YUFLOW_INFLUX__TOKEN": "influx-token-9d0c2e",
        "YUFLOW_WEB__OPERATOR_TOKEN": "operator-token-61af",
        "YUFLOW_DELIVERY__WEBHOOK_TOKEN": "webhook-token-e7b3",
    }
    env = {
        **os.environ,
        **secrets,
        "YUFLOW_SECRETS_DIR": str(secrets_dir),
        "YUFLOW_DATA_DIR": str(tmp_path / "data"),
        "YUFLOW_MQTT__PORT": str(broker.mqtt.port),
        "YUFLOW_MQTT__USERNAME": SERVICES_USER,
        "YUFLOW_MQTT__TOPIC_ROOT": ROOT,
        "YUFLOW_MQTT__CLIENT_ID_PREFIX": "sec-logged",
        "YUFLOW_KAFKA__BOOTSTRAP": stack.settings.kafka.bootstrap,
    }
    env.pop("YUFLOW_MQTT__PASSWORD", None)  # from the secrets directory only
    log_file = tmp_path / "bridge.log"
    with open(log_file, "wb") as log:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "bridge", "--log-level", "DEBUG"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )
    try:
        bridge_online(broker, bridge.pid, timeout_s=60)  # logged in with the password from the secrets directory
    finally:
        bridge.send_signal(signal.SIGINT)
        try:
            bridge.wait(20)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait(5)
    output = log_file.read_text(errors="replace")
    assert "connected to MQTT" in output
    for secret in (*secrets.values(), "influx-pw-from-file-4b1e", SERVICES_PASSWORD):
        assert secret not in output


def test_a_worker_logs_no_secret_starting_or_failing(tmp_path):
    """`yuflow worker` at debug with every secret set, against a Kafka that is not there: its banner, its
    start-up and its failure (a traceback) hold none of the secret values."""
    secrets = {
        f"YUFLOW_{name}": f"{name.lower()}-value-3c8d"
        for name in (
            "MQTT__PASSWORD",
            "INFLUX__PASSWORD",
            "INFLUX__TOKEN",
            "DELIVERY__WEBHOOK_TOKEN",
            "WEB__OPERATOR_TOKEN",
        )
    }
    env = {
        **os.environ,
        **secrets,
        "YUFLOW_DATA_DIR": str(tmp_path / "data"),
        "YUFLOW_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "YUFLOW_WORKER__WEB_PORT": str(free_port()),
    }
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "worker", "--log-level", "debug"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = out.stdout + out.stderr
    assert out.returncode != 0 and "transport" in output and "Unable to bootstrap" in output
    assert not [secret for secret in secrets.values() if secret in output]
