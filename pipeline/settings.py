"""Typed settings: config/default.toml, then a user file, then YUFLOW_* environment variables.

Precedence (highest first): explicit overrides passed to ``load_settings``, environment variables
(``YUFLOW_MQTT__PORT=1884``; nested keys joined by ``__``), the user file (``YUFLOW_CONFIG`` or
``./yuflow.toml`` when present), ``config/default.toml``. Secrets are ``SecretStr`` so they never show
up in ``repr``, logs or ``yuflow config show``.

Secrets (passwords, tokens) also come from a secrets directory: with ``YUFLOW_SECRETS_DIR=/run/secrets``
the file ``/run/secrets/influx__token`` sets ``influx.token`` (one file per setting, named
``<section>__<key>``, trailing newline stripped). The directory ranks below environment variables and
above the TOML files. A secret found in a TOML file is used, with a warning naming the setting.
"""

from __future__ import annotations

import logging
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_DIR = Path(os.environ.get("YUFLOW_CONFIG_DIR", Path(__file__).resolve().parents[1] / "config"))
DEFAULT_FILE = CONFIG_DIR / "default.toml"
USER_FILE_NAME = "yuflow.toml"
SECRETS_DIR_ENV = "YUFLOW_SECRETS_DIR"
GENERATED_MQTT_USER = "yuflow"  # the services' login on the embedded broker when none is configured
# every secret setting, as (section, key): from the environment or the secrets directory, never a TOML file
SECRETS: tuple[tuple[str, str], ...] = (
    ("mqtt", "password"),
    ("influx", "password"),
    ("influx", "token"),
    ("delivery", "webhook_token"),
    ("web", "operator_token"),
)

log = logging.getLogger(__name__)


class MqttSettings(BaseModel):
    embedded: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    # The services' login. On the embedded broker, left empty, it is GENERATED_MQTT_USER with a password
    # generated once into <data_dir>/secrets/mqtt__password (mode 0600): clients always log in there.
    username: str = ""
    password: SecretStr = SecretStr("")
    anonymous: bool = False  # embedded broker: let clients in without a login as well (`yuflow demo` only)
    qos: Literal[0, 1, 2] = 1
    topic_root: str = "yuflow"
    client_id_prefix: str = "yuflow"
    keepalive_s: int = 30
    # TLS: the listener at host:port speaks TLS (conventionally port 8883); clients verify the broker's
    # certificate against tls_ca_file (empty: the system's CAs) and its host name.
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""  # embedded broker only: its certificate (PEM), signed by tls_ca_file's CA
    tls_key_file: str = ""  # embedded broker only: its private key (PEM)
    # Embedded broker only. Sensors log in with their sensor id as user name and the password given for
    # it in sensor_passwords_file ("sensor_id:password" lines, plain text; hashed into the broker's own
    # password file at start). With acl, a sensor may publish only to <root>/+/+/<its id>; the services
    # user reads <root>/# and writes <root>/status/# (and, while no sensor has a login of its own, the
    # readings: the simulator publishes for the sensors).
    acl: bool = True
    sensor_passwords_file: str = ""


class KafkaSettings(BaseModel):
    embedded: bool = True
    bootstrap: str = "127.0.0.1:9092"
    partitions: int = Field(4, ge=1)
    replication: int = Field(1, ge=1)
    session_timeout_s: float = 10
    rebalance_timeout_s: float = 10
    heartbeat_interval_s: float = 1
    fetch_max_wait_ms: int = Field(
        100, ge=1
    )  # agents' fetch long-poll: bounds the per-hop latency on brokers that do not wake it
    fetch_min_bytes: int = Field(
        65536, ge=1
    )  # agents' fetches: how much data the broker gathers before answering (up to the wait)

    @property
    def port(self) -> int:
        return int(self.bootstrap.split(",")[0].rsplit(":", 1)[1])

    @property
    def host(self) -> str:
        return self.bootstrap.split(",")[0].rsplit(":", 1)[0]


class InfluxSettings(BaseModel):
    embedded: bool = True
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "yuflow"
    username: str = ""
    password: SecretStr = SecretStr("")
    org: str = "yuflow"
    bucket: str = "yuflow"
    token: SecretStr = SecretStr("")
    batch_size: int = Field(5000, ge=1)
    flush_interval_s: float = Field(1.0, gt=0)

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])


class BridgeSettings(BaseModel):
    max_payload_bytes: int = 65536
    max_record_bytes: int = Field(262144, ge=4096)  # of a readings batch record on Kafka
    linger_ms: float = Field(100, ge=0)  # a pass gathers what arrives this long after its first message at most,
    linger_gap_ms: float = Field(20, ge=0)  # and ends sooner when nothing arrives for this long
    max_future_s: float = 300
    dedup_window: int = 100_000
    share_group: str = Field(
        "yuflow-bridges", pattern=r"^[A-Za-z0-9_.-]*$"
    )  # bridges of a group split the feed ("": no sharing)
    instance: str = Field(
        "1", pattern=r"^[A-Za-z0-9_.-]{1,32}$"
    )  # names the bridge's MQTT session: keep it across restarts
    health_port: int = Field(0, ge=0, le=65535)  # GET /health on loopback (0: none; --instances N: this port, +1, ...)


class WorkerSettings(BaseModel):
    app_id: str = "yuflow"
    web_port: int = 6066
    store: str = "memory://"


class DeadmanSettings(BaseModel):
    """How long a live sensor of each kind may be silent before it is reported offline (0: not watched)."""

    water_s: float = Field(1800, ge=0)
    rain_s: float = Field(1800, ge=0)
    crowd_s: float = Field(900, ge=0)
    camera_s: float = Field(0, ge=0)  # edge cameras may send only when they detect something
    check_interval_s: float = Field(30, gt=0)

    def silence_s(self) -> dict[str, float]:
        return {
            kind: limit
            for kind, limit in (
                ("water", self.water_s),
                ("rain", self.rain_s),
                ("crowd", self.crowd_s),
                ("camera", self.camera_s),
            )
            if limit > 0
        }


class WebSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    operator_token: SecretStr = SecretStr("")  # when set, the page's acknowledge / close need it; from the environment
    allowed_hosts: list[
        str
    ] = []  # host names (besides loopback and host) the page takes actions for, e.g. behind a proxy


class DeliverySettings(BaseModel):
    channels: list[Literal["topic", "webhook", "log"]] = ["topic", "webhook", "log"]
    webhooks: dict[str, str] = {}  # department -> URL that receives each warning as a JSON POST
    webhook_token: SecretStr = SecretStr("")  # sent as "Authorization: Bearer ..."; never printed
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(3, ge=1)


class CitySettings(BaseModel):
    file: str = "city.toml"  # in config/
    scale: int = Field(1, ge=1)


class WaterSettings(BaseModel):
    persistence_readings: int = Field(3, ge=1)
    default_class: Literal["I", "II", "III", "IV", "V"] = "III"
    checkpoint_s: float = Field(10.0, ge=0)  # a sensor's state is written to its table at most this often
    screen: dict[str, float] = {}  # models.water_screen.ScreenSettings; unknown keys fail at start


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="YUFLOW_", env_nested_delimiter="__", extra="ignore", toml_file=str(DEFAULT_FILE)
    )

    data_dir: Path = Path(".yuflow")
    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    influx: InfluxSettings = InfluxSettings()
    bridge: BridgeSettings = BridgeSettings()
    worker: WorkerSettings = WorkerSettings()
    city: CitySettings = CitySettings()
    delivery: DeliverySettings = DeliverySettings()
    web: WebSettings = WebSettings()
    water: WaterSettings = WaterSettings()
    deadman: DeadmanSettings = DeadmanSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        secrets_dir = os.environ.get(SECRETS_DIR_ENV)
        if secrets_dir:
            sources.append(
                NestedSecretsSettingsSource(
                    file_secret_settings,
                    secrets_dir=secrets_dir,
                    secrets_dir_missing="error",
                    secrets_prefix="",
                    secrets_nested_delimiter="__",
                )
            )
        user_file = user_config_file()
        if user_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=user_file))
        sources.append(TomlConfigSettingsSource(settings_cls, toml_file=DEFAULT_FILE))
        return tuple(sources)

    @property
    def data_path(self) -> Path:
        return self.data_dir.resolve()


def user_config_file() -> Path | None:
    explicit = os.environ.get("YUFLOW_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"YUFLOW_CONFIG points at {path}, which is not a file")
        return path
    local = Path.cwd() / USER_FILE_NAME
    return local if local.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    for path in (user_config_file(), DEFAULT_FILE):
        if path is not None:
            warn_secrets_in_file(path)
    return with_embedded_login(Settings(**overrides))


def with_embedded_login(settings: Settings) -> Settings:
    """The embedded broker never runs without logins (an anonymous client could take a session
    over): without a configured password, the services log in as GENERATED_MQTT_USER with a password
    generated once into the data directory, which every process of this data directory reads."""
    mqtt = settings.mqtt
    if not mqtt.embedded or mqtt.password.get_secret_value():
        return settings
    password = generated_secret(settings.data_path / "secrets" / "mqtt__password")
    login = {"username": mqtt.username or GENERATED_MQTT_USER, "password": SecretStr(password)}
    return settings.model_copy(update={"mqtt": mqtt.model_copy(update=login)})


def generated_secret(path: Path) -> str:
    """The secret in ``path``; created (mode 0600, 32 random characters) when there is none yet. Two
    processes starting together get the same one: the file appears whole or not at all (a link)."""
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(24) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process was first: use its secret
    finally:
        draft.unlink()
    return path.read_text(encoding="utf-8").strip()


def secrets_in_file(path: Path) -> list[str]:
    """The secret settings (``section.key``) that a TOML file sets to a non-empty value."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []  # the settings sources report a broken file themselves
    return [f"{section}.{key}" for section, key in SECRETS if (data.get(section) or {}).get(key)]


def warn_secrets_in_file(path: Path) -> None:
    for name in secrets_in_file(path):
        log.warning(
            "%s is set in %s; keep secrets in the environment or %s, not in a config file", name, path, SECRETS_DIR_ENV
        )


def masked_dict(settings: Settings) -> dict[str, Any]:
    """Effective settings as plain data, secrets shown as '***' (or '' when unset)."""

    def mask(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "***" if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {k: mask(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, Path):
            return str(value)
        return value

    return mask(settings)
