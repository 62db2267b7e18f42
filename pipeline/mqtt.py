"""paho-mqtt 2.x client construction shared by the bridge, the simulator's publisher and the demo."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from pipeline.settings import MqttSettings


def make_client(
    settings: MqttSettings, client_id: str, persistent: bool = False, manual_ack: bool = False
) -> mqtt.Client:
    """A v3.1.1 client; ``persistent`` keeps the broker-side session (subscriptions, queued QoS 1).

    Logs in with ``settings.username``/``password`` when a user name is set; with ``settings.tls`` it
    speaks TLS and verifies the broker's certificate (and host name) against ``tls_ca_file``, or the
    system's CAs when that is empty."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=not persistent,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.password.get_secret_value())
    if settings.tls:
        client.tls_set(ca_certs=settings.tls_ca_file or None)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client
