"""Drive the running pipeline: publish the load over MQTT (flat out or at a rate), sample progress
every 10 s, wait for it to drain, and sum up the throughput."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.counters import bridge_counts, committed_offsets, points_written, readings_in_influx
from bench.processes import ProcessMeter


def log_progress(sample: dict) -> None:
    print(" ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in sample.items()), flush=True)


@dataclass
class _Sampler:
    """Readings published, forwarded by the bridge and in InfluxDB, and records the agents have
    committed, sampled since ``started``."""

    settings: object
    topics: list[str]
    meter: ProcessMeter
    bridge_log: Path
    readings_per_sample: float
    readings_before: np.ndarray  # readings in the messages before message i: exact counts
    started: float
    points_before: int
    progress: Callable[[dict], None]
    samples: list[dict] = field(default_factory=list)

    def sample(self, sent: int, exact: bool = False) -> None:
        """``exact``: count the readings in InfluxDB; else estimate them from the points written."""
        settings = self.settings
        records, committed = asyncio.run(
            committed_offsets(settings.kafka.bootstrap, self.topics, settings.worker.app_id)
        )
        self.meter.sample()
        published = int(self.readings_before[sent])
        stored = (
            readings_in_influx(settings)
            if exact
            else round((points_written(settings) - self.points_before) * self.readings_per_sample)
        )
        forwarded, dead = (round(n * self.readings_per_sample) for n in bridge_counts(self.bridge_log))
        self.samples.append(
            {
                "t_s": round(time.monotonic() - self.started, 1),
                "published": published,
                "forwarded": forwarded,
                "dead_lettered": dead,
                "records": records,
                "records_committed": committed,
                "record_lag": records - committed,
                "in_influx": stored,
                "exact": exact,
                "backlog": published - stored - dead,
            }
        )
        self.progress(self.samples[-1])
        log_progress(self.samples[-1])


def drive(
    settings,
    messages: list[tuple[int, str, bytes]],
    readings_per_msg: float,
    readings_per_sample: float,
    rate: float | None,
    duration_s: float,
    meter: ProcessMeter,
    bridge_log: Path,
    progress,
) -> dict:
    """Publish over MQTT (flat out, or at ``rate`` readings/s) for ``duration_s``; sample every 10 s:
    readings published, forwarded by the bridge, in InfluxDB; records the agents have committed."""
    from pipeline.mqtt import make_client
    from pipeline.topics import READINGS

    client = make_client(settings.mqtt, f"bench-load-{uuid.uuid4().hex[:6]}")
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    msg_rate = None if rate is None else rate / readings_per_msg
    readings_before = np.concatenate([[0], np.cumsum([payload.count(b'"value"') for _, _, payload in messages])])
    started = time.monotonic()
    sampler = _Sampler(
        settings,
        list(READINGS.values()),
        meter,
        bridge_log,
        readings_per_sample,
        readings_before,
        started,
        points_written(settings),
        progress,
    )
    sent = _publish(client, messages, msg_rate, duration_s, sampler)
    publish_s = time.monotonic() - started
    sent -= _disconnect(client)
    published = int(readings_before[sent])
    _drain(sampler, sent)
    return _summary(sampler.samples, sent, published, publish_s)


def _publish(client, messages: list[tuple[int, str, bytes]], msg_rate: float | None, duration_s: float, sampler) -> int:
    """Messages published before ``duration_s`` is up or the load runs out; a sample every 10 s."""
    started = sampler.started
    sent = 0
    next_sample = started + 10
    stop = started + duration_s
    while time.monotonic() < stop and sent < len(messages):
        if msg_rate is not None:
            ahead = sent / msg_rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(min(ahead, 0.05))
                continue
        elif len(client._out_messages) > 5000:
            time.sleep(0.001)
            continue
        _, topic, payload = messages[sent]
        client.publish(topic, payload, qos=1)
        sent += 1
        if time.monotonic() >= next_sample:
            sampler.sample(sent)
            next_sample += 10
    return sent


def _disconnect(client) -> int:
    """Wait (up to 120 s) for the broker to acknowledge what is queued, then disconnect; the messages
    still unacknowledged (paho drops what it still queues when it disconnects)."""
    acked_by = time.monotonic() + 120
    while client._out_messages and time.monotonic() < acked_by:
        time.sleep(0.05)
    unacked = len(client._out_messages)
    client.disconnect()
    client.loop_stop()
    return unacked


def _drain(sampler: _Sampler, sent: int) -> None:
    """Sample until every published reading is in InfluxDB or dead-lettered, or nothing has moved for
    20 s (or 180 s)."""
    samples = sampler.samples
    sampler.sample(sent, exact=True)
    drain_deadline = time.monotonic() + 180
    while time.monotonic() < drain_deadline and samples[-1]["backlog"] > 0:
        time.sleep(2)
        sampler.sample(sent, exact=True)
        if len(samples) > 10 and samples[-1]["in_influx"] == samples[-11]["in_influx"]:
            break


def _summary(samples: list[dict], sent: int, published: int, publish_s: float) -> dict:
    """Throughput published, sustained while loaded and end to end; the backlog and lag while steady."""
    drained_s = next(s["t_s"] for s in samples if s["exact"] and s["in_influx"] == samples[-1]["in_influx"])
    loaded = [s for s in samples if s["t_s"] <= publish_s]
    steady = loaded[len(loaded) // 3 :]  # the first third is the pipeline filling up
    sustained = (
        (steady[-1]["in_influx"] - steady[0]["in_influx"]) / (steady[-1]["t_s"] - steady[0]["t_s"])
        if len(steady) >= 2
        else None
    )
    return {
        "messages_published": sent,
        "publish_s": round(publish_s, 1),
        "to_drained_s": drained_s,
        "published_readings_per_s": round(published / publish_s),
        "sustained_readings_per_s": None if sustained is None else round(sustained),
        "end_to_end_readings_per_s": round(samples[-1]["in_influx"] / drained_s),
        "readings_in_influx": samples[-1]["in_influx"],
        "readings_dead_lettered": samples[-1]["dead_lettered"],
        "readings_published": published,
        "samples": samples,
        "backlog_first_last": [steady[0]["backlog"], steady[-1]["backlog"]] if steady else None,
        "record_lag_first_last": [steady[0]["record_lag"], steady[-1]["record_lag"]] if steady else None,
    }
