"""Embedded local services on loopback: Mosquitto (MQTT), Tansu (Kafka protocol), InfluxDB.

``yuflow services up|down|status``. Data, logs and pid files live under ``<data_dir>/`` (``.yuflow/``
in the working directory). Starting is idempotent (a healthy service we started is left alone) and
stopping only touches processes whose pid file we wrote and whose command line is still ours. A
service with ``embedded = false`` in the settings is external (production): we only check its health.
"""

from __future__ import annotations

from pipeline.services.base import MissingBinary, Service, ServiceError, ServiceStatus
from pipeline.services.influxdb import InfluxService
from pipeline.services.kafka import KafkaService
from pipeline.services.mqtt import MqttService
from pipeline.settings import Settings

__all__ = ["MissingBinary", "Service", "ServiceError", "ServiceStatus", "all_services", "up", "down", "status"]


def all_services(settings: Settings) -> list[Service]:
    return [MqttService(settings), KafkaService(settings), InfluxService(settings)]


def up(settings: Settings) -> list[ServiceStatus]:
    """Start (or check, when external) every service; raises ServiceError naming what failed."""
    return [service.start() for service in all_services(settings)]


def down(settings: Settings) -> list[ServiceStatus]:
    return [service.stop() for service in reversed(all_services(settings))]


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in all_services(settings)]
