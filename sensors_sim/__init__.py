"""Seeded city simulator, scenarios with ground truth, MQTT publisher, record/replay."""
