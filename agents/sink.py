"""InfluxDB sink agents: every reading, alert, warning and dead letter, written in batches.

``stream.take(n, within=s)`` gathers up to ``influx.batch_size`` records or ``flush_interval_s``
(a readings record is a batch of readings: one line each); the writer retries transient failures,
so offsets are not committed past unwritten data.
"""

from __future__ import annotations

from agents.app import (
    SETTINGS,
    alerts_topic,
    app,
    deadletter_topic,
    deliveries_topic,
    lifecycle_topic,
    readings_topics,
    silences_topic,
    suppressed_topic,
    warnings_topic,
)
from pipeline.influx import (
    InfluxWriter,
    alert_line,
    deadletter_line,
    delivery_line,
    lifecycle_line,
    reading_lines_json,
    silence_line,
    suppressed_line,
    warning_line,
)
from pipeline.schemas import Alert, DeadLetter, Delivery, LifecycleEvent, Silence, Stage, SuppressedAlert, Warning

BATCH = SETTINGS.influx.batch_size
WITHIN_S = SETTINGS.influx.flush_interval_s

writer = InfluxWriter(SETTINGS.influx)


@app.on_before_shutdown.connect
async def close_writer(sender, **kwargs) -> None:
    await writer.close()


async def _sink(stream, to_line) -> None:
    async for batch in stream.take(BATCH, within=WITHIN_S):
        await writer.write([text for raw in batch if (text := to_line(raw)) is not None])


@app.agent(
    app.topic(*(t.get_topic_name() for t in readings_topics.values()), value_serializer="raw", key_serializer="raw")
)
async def sink_readings(stream):
    async for batch in stream.take(BATCH, within=WITHIN_S):
        await writer.write([text for raw in batch for text in reading_lines_json(raw)])


@app.agent(alerts_topic, name="sink_alerts")
async def sink_alerts(stream):
    await _sink(stream, lambda raw: alert_line(Alert.model_validate_json(raw)))


@app.agent(warnings_topic, name="sink_warnings")
async def sink_warnings(stream):
    await _sink(stream, lambda raw: warning_line(Warning.model_validate_json(raw)))


def _lifecycle(raw: bytes) -> str | None:
    event = LifecycleEvent.model_validate_json(raw)
    return None if event.stage == Stage.check else lifecycle_line(event)


@app.agent(lifecycle_topic, name="sink_lifecycle")
async def sink_lifecycle(stream):
    await _sink(stream, _lifecycle)


@app.agent(silences_topic, name="sink_silences")
async def sink_silences(stream):
    await _sink(stream, lambda raw: silence_line(Silence.model_validate_json(raw)))


@app.agent(suppressed_topic, name="sink_suppressed")
async def sink_suppressed(stream):
    await _sink(stream, lambda raw: suppressed_line(SuppressedAlert.model_validate_json(raw)))


@app.agent(deliveries_topic, name="sink_deliveries")
async def sink_deliveries(stream):
    await _sink(stream, lambda raw: delivery_line(Delivery.model_validate_json(raw)))


@app.agent(deadletter_topic, name="sink_deadletter")
async def sink_deadletter(stream):
    await _sink(stream, lambda raw: deadletter_line(DeadLetter.model_validate_json(raw)))
