"""The bridge process outlives Kafka failures: it starts its bridge again after a backoff instead of
exiting (it used to exit with "Kafka did not accept a record" and stay down)."""

from __future__ import annotations

from pipeline import bridge as bridge_module
from pipeline.settings import load_settings


def test_run_bridge_starts_the_bridge_again_after_kafka_fails(monkeypatch):
    runs = []

    async def run(self) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("Kafka did not accept a record; stopping so MQTT redelivers it")

    monkeypatch.setattr(bridge_module.Bridge, "__init__", lambda self, settings, city=None: None)
    monkeypatch.setattr(bridge_module.Bridge, "run", run)
    monkeypatch.setattr(bridge_module, "streaming_gc", lambda: None)
    bridge_module.run_bridge(load_settings(), max_backoff_s=0.01)
    assert len(runs) == 3  # two failures, then a run that ends normally
