"""`yuflow services` on real binaries: idempotent start, status, and refusing foreign processes."""

from __future__ import annotations

import socket

import pytest

from pipeline import services
from pipeline.services import ServiceError
from pipeline.settings import load_settings

pytestmark = pytest.mark.integration


def test_up_is_idempotent_and_status_reports_running(stack):
    again = services.up(stack.settings)
    assert [s.state for s in again] == ["running"] * 3
    assert all(s.detail == "already running" for s in again)
    assert [s.state for s in services.status(stack.settings)] == ["running"] * 3


def test_a_port_held_by_someone_else_is_reported_not_taken_over(tmp_path):
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        settings = load_settings(data_dir=tmp_path, mqtt={"port": port})
        mqtt = services.all_services(settings)[0]
        with pytest.raises(ServiceError, match="did not start"):
            mqtt.start()
        assert mqtt.stop().detail == "was not running"  # nothing of ours to stop


def test_external_service_is_checked_not_started(stack, tmp_path):
    settings = load_settings(data_dir=tmp_path, kafka={"embedded": False, "bootstrap": stack.settings.kafka.bootstrap})
    kafka = services.all_services(settings)[1]
    assert kafka.start().state == "external"
    assert kafka.stop().detail == "not ours to stop"
    assert not (tmp_path / "run" / "kafka.pid").exists()
