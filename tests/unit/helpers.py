"""Builders for valid wire messages, so each test changes only what it is about."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TOPIC = "yuflow/qijiang/water/wq-puhe-zhaixi-bridge"


def water_payload(minutes: int = 0, **changes) -> dict:
    payload = {
        "sensor_id": "wq-puhe-zhaixi-bridge",
        "kind": "water",
        "station": "puhe-zhaixi-bridge",
        "district": "qijiang",
        "ts": (NOW - timedelta(hours=1) + timedelta(minutes=minutes)).isoformat(),
        "values": {"do": {"value": 6.5, "unit": "mg/L"}, "ph": {"value": 7.2, "unit": "pH"}},
    }
    payload.update(changes)
    return payload


def encode(payload: dict) -> bytes:
    return json.dumps(payload).encode()
