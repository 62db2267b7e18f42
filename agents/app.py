"""The Faust app and its topics. Start a worker with ``yuflow worker``.

The topology, topics -> agent (module: the engine it calls) -> topics:

    readings.water  -> water (water.py: pipeline/water_watch)        -> alerts, water.trace
    water.trace     -> trace (tracing.py: pipeline/water_tracing)    -> tracing
    readings.rain   -> rain  (rain.py: pipeline/rain_tiles)          -> rain.tiles
    rain.tiles      -> rain  (rain.py: pipeline/rain_tiles)          -> rain.districts
    rain.districts  -> rain  (rain.py: pipeline/rain_districts)      -> alerts
    readings.crowd, crowd.camera -> crowd (crowd.py: pipeline/crowd_watch) -> alerts
    readings.camera -> camera (camera.py: route by detection)        -> crowd.camera, rain.districts, water.trace
    readings.*      -> deadman (deadman.py: models/liveness)         -> alerts
    alerts, tracing, lifecycle, actions (+ silences, read whole)
                    -> warnings (warnings.py: pipeline/incidents)
                    -> warnings, lifecycle, alerts.suppressed, action_results
    warnings        -> deliver (delivery.py: pipeline/delivery)      -> deliveries, lifecycle
    readings.*, alerts, warnings, lifecycle, silences, alerts.suppressed, deliveries, deadletter
                    -> sink_* (sink.py: pipeline/influx)             -> InfluxDB
    (every agent: a record it cannot process -> deadletter, with why)

Every topic is created with the same partition count (``kafka.partitions``): Faust crashes when a
source topic and its table's changelog disagree. The group-join timings come from the settings; the
defaults suit the embedded Tansu broker, where Kafka's defaults make joins take 30-80 s.
"""

from __future__ import annotations

import logging
import sys

import faust

from pipeline.schemas import DeadLetter, Kind
from pipeline.settings import load_settings
from pipeline.topics import (
    ACTION_RESULTS,
    ACTIONS,
    ALERTS,
    CROWD_CAMERA,
    DEADLETTER,
    DELIVERIES,
    LIFECYCLE,
    RAIN_DISTRICTS,
    RAIN_TILES,
    READINGS,
    SILENCES,
    SUPPRESSED,
    TRACING,
    WARNINGS,
    WATER_TRACE,
)

SETTINGS = load_settings()
log = logging.getLogger("yuflow.agents")


def _short_fetch_wait() -> None:
    """Faust hard-codes its consumer's fetch_max_wait_ms at 1500. A broker that does not answer a
    waiting fetch when data arrives (the embedded Tansu does not: measured, a record waits out the
    rest of the 1.5 s) then adds up to 1.5 s per agent hop; ``kafka.fetch_max_wait_ms`` bounds it."""
    from faust.transport.drivers import aiokafka as faust_kafka

    create = faust_kafka.AIOKafkaConsumerThread._create_worker_consumer

    def create_worker_consumer(self, transport):
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = SETTINGS.kafka.fetch_max_wait_ms  # read when the consumer starts its fetcher
        consumer._fetch_min_bytes = SETTINGS.kafka.fetch_min_bytes
        return consumer

    faust_kafka.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer


app = faust.App(
    SETTINGS.worker.app_id,
    broker=[f"kafka://{address}" for address in SETTINGS.kafka.bootstrap.split(",")],
    store=SETTINGS.worker.store,
    topic_partitions=SETTINGS.kafka.partitions,
    topic_replication_factor=SETTINGS.kafka.replication,
    broker_session_timeout=SETTINGS.kafka.session_timeout_s,
    broker_rebalance_timeout=SETTINGS.kafka.rebalance_timeout_s,
    broker_heartbeat_interval=SETTINGS.kafka.heartbeat_interval_s,
    consumer_auto_offset_reset="earliest",
    # The check guards RocksDB files older than their changelog; our tables are in memory. It crashed
    # every worker of a group at scale on Tansu, which reports a log's end as its last batch's first
    # offset + 1 (a standby had read to 1,211 of a changelog "ending" at 1,210).
    recovery_consistency_check=False,
    web_host="127.0.0.1",
    web_bind="127.0.0.1",  # loopback only; the default binds every interface
    web_port=SETTINGS.worker.web_port,
    autodiscover=False,
)


def _topic(name: str) -> faust.TopicT:
    # Messages are pydantic models serialised by us (pipeline/schemas.py): raw bytes on the Faust side.
    return app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")


readings_topics = {kind: _topic(READINGS[kind]) for kind in Kind}
alerts_topic = _topic(ALERTS)
warnings_topic = _topic(WARNINGS)
tracing_topic = _topic(TRACING)
deadletter_topic = _topic(DEADLETTER)
rain_tiles_topic = _topic(RAIN_TILES)
rain_districts_topic = _topic(RAIN_DISTRICTS)
crowd_camera_topic = _topic(CROWD_CAMERA)
lifecycle_topic = _topic(LIFECYCLE)
actions_topic = _topic(ACTIONS)
action_results_topic = _topic(ACTION_RESULTS)
silences_topic = _topic(SILENCES)
suppressed_topic = _topic(SUPPRESSED)
deliveries_topic = _topic(DELIVERIES)
water_trace_topic = _topic(WATER_TRACE)


async def dead_letter(
    stage: str, source: faust.TopicT, raw: bytes, error: Exception, code: str = "agent_error"
) -> None:
    """Record a message an agent could not process, with why, instead of crashing the agent
    (``code``: agent_error, a failure, logged with its traceback; or a finding such as no_trace)."""
    if code == "agent_error":
        log.exception("%s agent could not process a record from %s", stage, source.get_topic_name())
    elif code == "rejected_action":  # a user's mistake, not ours: one line, no traceback
        log.warning("%s: rejected an operator's action: %s", stage, error)
    record = DeadLetter.of(code, f"{type(error).__name__}: {error}"[:1000], source.get_topic_name(), raw, stage=stage)
    await deadletter_topic.send(value=record.to_json())


def register_agents() -> faust.App:
    """Import the agent modules (they register on ``app``) and return the app."""
    from agents import camera, crowd, deadman, delivery, health, rain, sink, tracing, warnings, water  # noqa: F401

    return app


def run_worker(loglevel: str = "info") -> None:
    """Run a Faust worker in this process until SIGINT/SIGTERM (Faust's own command line)."""
    from pipeline.processes import streaming_gc
    from pipeline.rules import rules_or_exit

    rules_or_exit("yuflow worker")  # a wrong rule file stops the worker here, naming the file and key
    register_agents()
    from agents.health import consumer_with_read_offsets

    # Faust's consumer adjusted for this worker (not at import: importing the app changes nothing)
    _short_fetch_wait()
    consumer_with_read_offsets()
    streaming_gc()

    @app.task
    async def keep_log_level() -> None:
        # At WARN and above Faust's progress spinner sets the root logger to DEBUG (it spins on every
        # record) and leaves it there: every debug line of aiokafka was then built and dropped, 2-3 %
        # of a loaded worker's CPU. Started once logging is set up.
        logging.getLogger().setLevel(loglevel.upper())

    sys.argv = ["yuflow worker", "worker", "--loglevel", loglevel, "--web-port", str(SETTINGS.worker.web_port)]
    app.main()
