"""Issue #20's findings 3 and 6 on the session's real services: a forged cross-site POST to a running
`yuflow web` is refused (it used to be answered 202 without an operator token), and oversized MQTT
payloads cost the bridge neither a crash nor memory (1,000 x 1 MB used to add 530 MB to it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from bench.processes import rss_mb
from pipeline.processes import wait_until
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_forged_cross_site_post_to_the_running_page_is_refused_and_records_nothing(stack):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "web", "--port", str(port)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        wait_until(up, 30, what="the web page")
        action = json.dumps(
            {"id": "forged-1", "incident_id": "water:ruxi:1", "action": "close", "actor": "evil", "note": "x"}
        ).encode()
        # what a form on another site can send: a "simple" request, no preflight
        assert (
            post(base + "/api/actions", action, {"Content-Type": "text/plain", "Origin": "http://evil.example"}) == 403
        )
        assert (
            post(base + "/api/actions", action, {"Content-Type": "application/json", "Origin": "http://evil.example"})
            == 403
        )
        assert post(base + "/api/actions", action, {"Content-Type": "application/json", "Host": "evil.example"}) == 403
        assert post(base + "/api/actions", b"{" + b" " * 20_000 + b"}", {"Content-Type": "application/json"}) == 403
        # the same page's own request gets past the checks (and is judged on its content)
        assert post(base + "/api/actions", action, {"Content-Type": "application/json", "Origin": base}) != 403
    finally:
        server.terminate()
        server.wait(10)


def test_large_mqtt_payloads_are_refused_before_they_cost_the_bridge_memory(stack):
    settings = stack.settings
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"big-{time.monotonic_ns()}", protocol=mqtt.MQTTv311
    )
    client.username_pw_set(settings.mqtt.username, settings.mqtt.password.get_secret_value())
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    before = rss_mb(stack.bridge.pid)
    topic = f"{settings.mqtt.topic_root}/banan/water/wq-huaxi-nanquan"
    try:
        for _ in range(200):  # 200 MB offered
            client.publish(topic, b"[" + b"0," * 500_000 + b"0]", qos=1)
        time.sleep(5)
    finally:
        client.disconnect()
        client.loop_stop()
    assert stack.bridge.alive(), stack.bridge.log_tail(20)
    grown = rss_mb(stack.bridge.pid) - before
    assert grown < 30, f"the bridge grew by {grown:.0f} MB"
