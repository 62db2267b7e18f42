"""Typed settings: config/default.toml, then a user file, then YUFLOW_* environment variables.

Precedence (highest first): explicit overrides passed to ``load_settings``, environment variables
(``YUFLOW_MQTT__PORT=1884``; nested keys joined by ``__``), the user file (``YUFLOW_CONFIG`` or
``./yuflow.toml`` when present), ``config/default.toml``. Secrets are ``SecretStr`` so they never show
up in ``repr``, logs or ``yuflow config show``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_DIR = Path(os.environ.get("YUFLOW_CONFIG_DIR", Path(__file__).resolve().parents[1] / "config"))
DEFAULT_FILE = CONFIG_DIR / "default.toml"
USER_FILE_NAME = "yuflow.toml"


class MqttSettings(BaseModel):
    embedded: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: SecretStr = SecretStr("")
    qos: Literal[0, 1, 2] = 1
    topic_root: str = "yuflow"
    client_id_prefix: str = "yuflow"
    keepalive_s: int = 30


class KafkaSettings(BaseModel):
    embedded: bool = True
    bootstrap: str = "127.0.0.1:9092"
    partitions: int = Field(4, ge=1)
    replication: int = Field(1, ge=1)
    session_timeout_s: float = 10
    rebalance_timeout_s: float = 10
    heartbeat_interval_s: float = 1
    fetch_max_wait_ms: int = Field(100, ge=1)  # agents' fetch long-poll: bounds the per-hop latency on brokers that do not wake it

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
    max_future_s: float = 300
    dedup_window: int = 100_000


class WorkerSettings(BaseModel):
    app_id: str = "yuflow"
    web_port: int = 6066
    store: str = "memory://"


class WebSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    operator_token: SecretStr = SecretStr("")  # when set, the page's acknowledge / close need it; from the environment


class DeliverySettings(BaseModel):
    channels: list[Literal["topic", "webhook", "log"]] = ["topic", "webhook", "log"]
    webhooks: dict[str, str] = {}          # department -> URL that receives each warning as a JSON POST
    webhook_token: SecretStr = SecretStr("")  # sent as "Authorization: Bearer ..."; never printed
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(3, ge=1)


class CitySettings(BaseModel):
    file: str = "city.toml"  # in config/
    scale: int = Field(1, ge=1)


class WaterSettings(BaseModel):
    persistence_readings: int = Field(3, ge=1)
    default_class: Literal["I", "II", "III", "IV", "V"] = "III"


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
    return Settings(**overrides)


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
