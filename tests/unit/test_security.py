"""Secrets (environment, secrets directory, never printed), the embedded broker's password / ACL / TLS
configuration, and the web page's operator token."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys

import pytest

from pipeline import web
from pipeline.schemas import ActionResult
from pipeline.services.base import ServiceError
from pipeline.services.mqtt import MqttService, acl_text, sensor_credentials
from pipeline.settings import SECRETS, load_settings, masked_dict

SECRET_VALUES = {
    ("mqtt", "password"): "mqtt-pw-a1b2c3",
    ("influx", "password"): "influx-pw-d4e5f6",
    ("influx", "token"): "influx-token-g7h8i9",
    ("delivery", "webhook_token"): "webhook-token-j0k1l2",
    ("web", "operator_token"): "operator-token-m3n4o5",
}


def value(settings, section: str, key: str) -> str:
    return getattr(getattr(settings, section), key).get_secret_value()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No YUFLOW_* secrets from the caller's environment, no ./yuflow.toml."""
    for name in list(os.environ):
        if name.startswith("YUFLOW_") and name not in ("YUFLOW_CONFIG_DIR",):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_every_secret_setting_is_a_secret_str():
    assert set(SECRETS) == set(SECRET_VALUES)
    overrides: dict[str, dict[str, str]] = {}
    for section, key in SECRETS:
        overrides.setdefault(section, {})[key] = f"{section}-{key}-x"
    settings = load_settings(**overrides)
    assert all(value(settings, section, key) == f"{section}-{key}-x" for section, key in SECRETS)
    assert not any(f"{section}-{key}-x" in repr(settings) for section, key in SECRETS)


def test_secrets_come_from_the_secrets_directory(clean_env, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for (section, key), secret in SECRET_VALUES.items():
        (secrets / f"{section}__{key}").write_text(secret + "\n")  # a trailing newline, as editors leave it
    clean_env.setenv("YUFLOW_SECRETS_DIR", str(secrets))
    settings = load_settings()
    assert {(s, k): value(settings, s, k) for s, k in SECRETS} == SECRET_VALUES
    assert settings.mqtt.port == 1883 and settings.influx.database == "yuflow"  # the rest from the defaults


def test_environment_beats_secrets_directory_beats_user_file(clean_env, tmp_path, caplog):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "influx__token").write_text("from-dir")
    (secrets / "mqtt__password").write_text("from-dir")
    user = tmp_path / "mine.toml"
    user.write_text('[influx]\ntoken = "from-file-0000"\n[web]\noperator_token = "from-file-1111"\n')
    clean_env.setenv("YUFLOW_SECRETS_DIR", str(secrets))
    clean_env.setenv("YUFLOW_CONFIG", str(user))
    clean_env.setenv("YUFLOW_MQTT__PASSWORD", "from-env")
    with caplog.at_level(logging.WARNING, logger="pipeline.settings"):
        settings = load_settings()
    assert value(settings, "mqtt", "password") == "from-env"
    assert value(settings, "influx", "token") == "from-dir"
    assert value(settings, "web", "operator_token") == "from-file-1111"  # used, but ...
    warned = [r.getMessage() for r in caplog.records]
    assert any("influx.token" in m and str(user) in m for m in warned)  # ... a secret in a file is warned about
    assert any("web.operator_token" in m for m in warned)
    assert not any("from-file" in m for m in warned)  # by name, never by value


def test_a_missing_secrets_directory_is_an_error(clean_env, tmp_path):
    clean_env.setenv("YUFLOW_SECRETS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(Exception, match="does not exist"):
        load_settings()


@pytest.mark.parametrize("as_json", [False, True])
def test_config_show_never_prints_a_secret(tmp_path, as_json):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "influx__password").write_text(SECRET_VALUES[("influx", "password")])
    env = {name: v for name, v in os.environ.items() if not name.startswith("YUFLOW_") or name == "YUFLOW_CONFIG_DIR"}
    env |= {
        f"YUFLOW_{s.upper()}__{k.upper()}": v for (s, k), v in SECRET_VALUES.items() if (s, k) != ("influx", "password")
    }
    env |= {"YUFLOW_SECRETS_DIR": str(secrets), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "show", *(["--json"] if as_json else [])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    for secret in SECRET_VALUES.values():
        assert secret not in out.stdout + out.stderr
    if as_json:
        data = json.loads(out.stdout)
        assert all(data[section][key] == "***" for section, key in SECRETS)
    else:
        for section, key in SECRETS:
            assert any(f"{section}.{key}" in line and "***" in line for line in out.stdout.splitlines())
    assert masked_dict(load_settings(influx={"token": "t0k"}))["influx"]["token"] == "***"


def secure_settings(tmp_path, **mqtt):
    sensors = tmp_path / "sensors.passwd"
    sensors.write_text("# id:password\nwq-one:one-pw-1234\n\nwq-two : two-pw-5678\n")
    return load_settings(
        data_dir=tmp_path / "data",
        mqtt={
            "username": "services",
            "password": "svc-pw-9999",
            "acl": True,
            "sensor_passwords_file": str(sensors),
            "topic_root": "yf",
            **mqtt,
        },
    )


def prepared(settings) -> MqttService:
    service = MqttService(settings)
    service.dir.mkdir(parents=True, exist_ok=True)
    service.prepare()
    return service


def test_the_embedded_broker_gets_hashed_passwords_and_the_acl(tmp_path):
    service = prepared(secure_settings(tmp_path))
    config = (service.dir / "mosquitto.conf").read_text()
    passwd, acl = service.dir / "passwd", service.dir / "acl"
    assert "allow_anonymous false" in config
    assert f"password_file {passwd}" in config and f"acl_file {acl}" in config
    lines = passwd.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["services", "wq-one", "wq-two"]
    assert all(line.split(":", 1)[1].startswith("$") for line in lines)  # hashed by mosquitto_passwd -U
    assert not any(pw in passwd.read_text() + config for pw in ("svc-pw-9999", "one-pw-1234", "two-pw-5678"))
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600 and stat.S_IMODE(acl.stat().st_mode) == 0o600
    assert acl.read_text() == acl_text(service.settings.mqtt)
    rules = [line for line in acl.read_text().splitlines() if line and not line.startswith("#")]
    assert rules == ["user services", "topic read yf/#", "topic write yf/status/#", "pattern write yf/+/+/%u"]
    assert "certfile" not in config


def test_the_default_broker_takes_only_the_services_generated_login(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    secret = tmp_path / "secrets" / "mqtt__password"
    password = settings.mqtt.password.get_secret_value()
    assert settings.mqtt.username == "yuflow" and len(password) >= 24 and secret.read_text().strip() == password
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert load_settings(data_dir=tmp_path).mqtt.password == settings.mqtt.password  # every process of the data dir
    assert load_settings(data_dir=tmp_path / "other").mqtt.password != settings.mqtt.password
    service = prepared(settings)
    config = (service.dir / "mosquitto.conf").read_text()
    assert (
        "allow_anonymous false" in config
        and "password_file" in config
        and "acl_file" in config
        and "certfile" not in config
    )
    assert password not in config + (service.dir / "passwd").read_text()
    rules = [line for line in (service.dir / "acl").read_text().splitlines() if line and not line.startswith("#")]
    # no sensor logs in itself: the services (the simulator) publish the readings for them
    assert rules == ["user yuflow", "topic read yuflow/#", "topic write yuflow/#", "pattern write yuflow/+/+/%u"]


def test_only_the_demo_lets_clients_in_without_a_login(tmp_path):
    service = prepared(load_settings(data_dir=tmp_path, mqtt={"anonymous": True}))
    assert "allow_anonymous true" in (service.dir / "mosquitto.conf").read_text()
    rules = [line for line in (service.dir / "acl").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[:2] == ["topic readwrite yuflow/#", "user yuflow"]
    external = load_settings(data_dir=tmp_path / "ext", mqtt={"embedded": False})
    assert external.mqtt.username == "" and not (tmp_path / "ext").exists()  # an external broker's logins are its own


def test_tls_listener_options(tmp_path):
    files = {}
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("-")
        files[f"tls_{name}_file"] = str(tmp_path / f"{name}.pem")
    service = prepared(load_settings(data_dir=tmp_path / "data", mqtt={"tls": True, "port": 8883, **files}))
    config = (service.dir / "mosquitto.conf").read_text().splitlines()
    assert config[:4] == [
        "listener 8883 127.0.0.1",
        f"certfile {tmp_path}/cert.pem",
        f"keyfile {tmp_path}/key.pem",
        f"cafile {tmp_path}/ca.pem",
    ]
    assert service.address == "mqtts://127.0.0.1:8883"
    with pytest.raises(ServiceError, match="tls_cert_file and tls_key_file"):
        prepared(load_settings(data_dir=tmp_path / "d2", mqtt={"tls": True}))


@pytest.mark.parametrize(
    "line, problem",
    [
        ("wq-one", "is not 'sensor_id:password'"),
        ("wq-one:", "is not 'sensor_id:password'"),
        ("wq/+:p4ss-leak", "has a sensor id"),
        ("services:p4ss-leak", "uses the services' user name"),
    ],
)
def test_bad_sensor_password_lines_are_named_without_the_password(tmp_path, line, problem):
    sensors = tmp_path / "sensors"
    sensors.write_text(f"ok-1:pw\n{line}\n")
    settings = load_settings(mqtt={"username": "services", "sensor_passwords_file": str(sensors)})
    with pytest.raises(ServiceError, match=f"line 2 {problem}") as error:
        sensor_credentials(settings.mqtt)
    assert "p4ss-leak" not in str(error.value)


def call(
    app, path: str, body: dict, headers: dict[str, str], cookies: dict[str, str] | None = None
) -> tuple[int, dict]:
    """One HTTP POST through the ASGI app, without a server; ``cookies`` gets the cookies it sets."""
    sent: list[dict] = []
    request = {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    async def receive():
        return request

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "127.0.0.1:8080", **headers}.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    for name, value in start["headers"]:
        if name == b"set-cookie" and cookies is not None:
            key, _, rest = value.decode().partition("=")
            cookies[key] = rest.split(";", 1)[0]
    status = start["status"]
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def test_web_actions_need_the_operator_token_and_answer_the_warning_agents_verdict(monkeypatch):
    submitted = []

    async def submit_action(settings, event, timeout_s=15.0, client=None):
        submitted.append(event)
        known = event.incident_id == "water:x:1"
        return ActionResult(
            request_id=event.request_id,
            incident_id=event.incident_id,
            stage=event.stage,
            accepted=known,
            reason="" if known else f"no open incident {event.incident_id}",
        )

    monkeypatch.setattr(web, "submit_action", submit_action)
    app = web.create_app(load_settings(web={"operator_token": "op-secret"}))
    action = {"id": "water:x:1", "stage": "acknowledged", "by": "duty officer"}
    as_json = {"content-type": "application/json"}
    assert call(app, "/api/actions", action, as_json)[0] == 401
    assert call(app, "/api/actions", action, {**as_json, "authorization": "Bearer wrong"})[0] == 401
    assert submitted == []
    status, body = call(app, "/api/actions", action, {**as_json, "authorization": "Bearer op-secret"})
    assert status == 200 and body["accepted"]["stage"] == "acknowledged"
    assert len(submitted) == 1 and submitted[0].actor == "duty officer"
    status, body = call(
        app, "/api/actions", {**action, "id": "water:nonexistent:1"}, {**as_json, "authorization": "Bearer op-secret"}
    )
    assert status == 409 and "no open incident" in body["error"]
    assert (
        call(app, "/api/actions", {**action, "stage": "warned"}, {**as_json, "authorization": "Bearer op-secret"})[0]
        == 400
    )
    # without a token (the demo, on loopback) the page's actions are open
    assert call(web.create_app(load_settings(web={"operator_token": ""})), "/api/actions", action, as_json)[0] == 200


def test_the_page_logs_operators_in_with_a_cookie_and_refuses_forged_requests(monkeypatch):
    async def submit_action(settings, event, timeout_s=15.0, client=None):
        return ActionResult(
            request_id=event.request_id, incident_id=event.incident_id, stage=event.stage, accepted=True
        )

    monkeypatch.setattr(web, "submit_action", submit_action)
    app = web.create_app(load_settings(web={"operator_token": "op-secret"}))
    as_json = {"content-type": "application/json", "host": "127.0.0.1:8080"}
    cookies: dict[str, str] = {}
    assert call(app, "/login", {"token": "guess"}, as_json, cookies)[0] == 401 and not cookies
    assert call(app, "/login", {"token": "op-secret"}, as_json, cookies)[0] == 200
    assert "op-secret" not in cookies[web.SESSION_COOKIE]  # a derived session value, not the token
    session = {**as_json, "cookie": f"{web.SESSION_COOKIE}={cookies[web.SESSION_COOKIE]}"}
    action = {"id": "water:x:1", "stage": "acknowledged"}
    assert call(app, "/api/actions", action, session)[0] == 200
    # another site's form (text/plain) or script (its Origin) cannot act with the operator's cookie
    assert call(app, "/api/actions", action, {**session, "content-type": "text/plain"})[0] == 403
    assert call(app, "/api/actions", action, {**session, "origin": "http://evil.example"})[0] == 403
    assert call(app, "/api/actions", action, {**session, "origin": "http://127.0.0.1:8080"})[0] == 200
    # a name that rebinds to this host (its page's Origin matches its Host) is not one the page answers to
    assert (
        call(
            app, "/api/actions", action, {**session, "host": "evil.example:8080", "origin": "http://evil.example:8080"}
        )[0]
        == 403
    )
    assert call(app, "/api/actions", {**action, "note": "x" * 20_000}, {**session, "content-length": "20100"})[0] == 403


def test_the_page_will_not_listen_beyond_loopback_without_an_operator_token():
    with pytest.raises(SystemExit, match="OPERATOR_TOKEN"):
        web.serve(load_settings(web={"operator_token": ""}), "0.0.0.0", 8080)
