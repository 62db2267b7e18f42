"""City-scale benchmark: every feed of a cloned city at its real cadence (or ``speedup`` x), streamed.

``python -m bench city --scale 500 [--speedup 10] [--workers 2] [--bridges 2] [--duration 300]``

The load is one simulated day of the default city (``quiet_week``, first 24 h), replayed for every
sensor of the city at ``--scale``: a clone sends what the sensor it was cloned from sent, in the same
rhythm (water every 10 min, rain every 5 min, counters and cameras every minute), from a phase of
its own, stamped with the time it is sent, one sample per MQTT message (as stations send). Gauges
of the widened grid take the series of the gauge at the same place in the original grid. Only a
pointer and a next-send time per sensor are kept: the load never holds the span in memory.

Measured: messages and readings per second offered and stored, the agents' consumer lag every 10 s
(flat or growing), reading -> warning latency from probe stations while the load runs, CPU and
peak RSS per process, and the restore time after a worker is killed (kill -9, a new worker started:
until the group's lag is back to where it was).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

from bench.counters import bridge_counts, committed_offsets, points_written
from bench.latency import latency_probes, probe_stations
from bench.processes import ProcessMeter, free_port

DAY_S = 86400.0


class CityLoad:
    """Who sends what next: a pointer into its base sensor's day and a next-send time per sensor."""

    def __init__(
        self, city, base_city, feeds: list[str], speedup: float, start_s: float, skip: set[str], seed: int = 7
    ):
        from sensors_sim.scenario import load_scenario
        from sensors_sim.simulation import simulate

        recording = simulate(load_scenario("quiet_week", city=base_city, duration_h=24.0), base_city)
        frame = recording.frame[~recording.frame["malformed"] & recording.frame["kind"].isin(feeds)]
        frame = frame.drop_duplicates(["sensor_id", "ts_ms", "parameter"])
        t0_ms = int(frame["ts_ms"].min())
        self.base: dict[
            str, tuple[np.ndarray, list[dict]]
        ] = {}  # base sensor -> (offsets in the day, s; payload parts)
        for sensor_id, rows in frame.groupby("sensor_id", observed=True, sort=False):
            times, parts = [], []
            for ts_ms, sample in rows.groupby("ts_ms", sort=True):
                first = sample.iloc[0]
                part = {
                    "values": {
                        p: {"value": float(v), "unit": u}
                        for p, v, u in zip(sample["parameter"], sample["value"], sample["unit"])
                    }
                }
                if first["detection"]:
                    part |= {"detection": first["detection"], "confidence": float(first["confidence"])}
                times.append((ts_ms - t0_ms) / 1000)
                parts.append(part)
            self.base[str(sensor_id)] = (np.array(times), parts)
        gx, gy = _grid_size(base_city)
        self.sensors = []  # (topic, head of the payload, base sensor id)
        for s in city.sensors.values():
            if s.kind.value not in feeds or s.id in skip:
                continue
            if s.kind.value == "rain":  # rg-CC-RR of the wide grid: the gauge at the same place in the original grid
                _, col, row = s.id.split("-")
                base_id = f"rg-{int(col) % gx:02d}-{int(row) % gy:02d}"
            else:
                base_id = s.id.split(".", 1)[0]
            if base_id in self.base:
                head = {"sensor_id": s.id, "kind": s.kind.value, "station": s.site, "district": s.district}
                self.sensors.append((f"yuflow/{s.district}/{s.kind.value}/{s.id}", head, base_id))
        rng = np.random.default_rng(seed)
        self.speedup = speedup
        self.phase_s = rng.uniform(0, DAY_S, len(self.sensors))  # where in the base day each sensor starts
        self.k = np.array(
            [int(np.searchsorted(self.base[b][0], p)) for (_, _, b), p in zip(self.sensors, self.phase_s)]
        )
        self.laps = np.zeros(len(self.sensors), int)
        self.start_s = start_s
        self.next_at = np.array([self._when(i) for i in range(len(self.sensors))])

    def _when(self, i: int) -> float:
        times = self.base[self.sensors[i][2]][0]
        k = self.k[i]
        if k >= len(times):
            self.k[i], self.laps[i] = 0, self.laps[i] + 1
            k = 0
        return self.start_s + (times[k] + self.laps[i] * DAY_S - self.phase_s[i]) / self.speedup

    def per_day(self) -> tuple[float, float]:
        """(messages, readings) the city sends per day at 1x."""
        messages = sum(len(self.base[b][1]) for _, _, b in self.sensors)
        readings = sum(sum(len(p["values"]) for p in self.base[b][1]) for _, _, b in self.sensors)
        return messages, readings

    def due(self, now_s: float) -> list[tuple[str, bytes, int]]:
        """(topic, payload, readings) of every sensor whose time has come."""
        out = []
        stamp = datetime.fromtimestamp(now_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for i in np.flatnonzero(self.next_at <= now_s):
            topic, head, base_id = self.sensors[i]
            part = self.base[base_id][1][self.k[i]]
            out.append((topic, orjson.dumps({**head, "ts": stamp, **part}), len(part["values"])))
            self.k[i] += 1
            self.next_at[i] = self._when(i)
        return out


def _grid_size(city) -> tuple[int, int]:
    cols = {int(g.split("-")[1]) for g in city.gauges}
    rows = {int(g.split("-")[2]) for g in city.gauges}
    return len(cols), len(rows)


def _lag(settings) -> tuple[int, int]:
    from pipeline.topics import READINGS

    records, committed = asyncio.run(
        committed_offsets(settings.kafka.bootstrap, list(READINGS.values()), settings.worker.app_id)
    )
    return records, records - committed


def city_bench(
    scale: int,
    feeds: list[str],
    speedup: float,
    duration_s: float,
    workers: int,
    bridges: int,
    probes: int,
    console,
    restore: bool = True,
) -> dict:
    from pipeline import services
    from pipeline.city import load_city
    from pipeline.mqtt import make_client
    from pipeline.processes import Background
    from pipeline.settings import load_settings
    from pipeline.status import bridge_online

    data_dir = Path(tempfile.mkdtemp(prefix="yuflow-city-bench-"))
    os.environ.update(
        {
            "YUFLOW_DATA_DIR": str(data_dir),
            "YUFLOW_MQTT__PORT": str(free_port()),
            "YUFLOW_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "YUFLOW_INFLUX__URL": f"http://127.0.0.1:{free_port()}",
            "YUFLOW_WORKER__WEB_PORT": str(free_port()),
            "YUFLOW_CITY__SCALE": str(scale),
        }
    )
    settings = load_settings()
    city = load_city(scale=scale)
    skip = {f"wq-{st.id}" for st in probe_stations(city, probes)}  # the probes' stations send only the probes
    with console.status("building the load (one simulated day of the default city)..."):
        load = CityLoad(city, load_city(), feeds, speedup, 0.0, skip)
    per_day_msgs, per_day_readings = load.per_day()
    result = {
        "scale": scale,
        "feeds": feeds,
        "speedup": speedup,
        "workers": workers,
        "bridges": bridges,
        "cpus": os.cpu_count(),
        "sensors": len(load.sensors),
        "stations": len(city.stations),
        "gauges": len(city.gauges),
        "offered_messages_per_s": round(per_day_msgs / DAY_S * speedup, 1),
        "offered_readings_per_s": round(per_day_readings / DAY_S * speedup, 1),
    }
    console.print(
        f"load: {len(load.sensors):,} sensors at scale {scale} "
        f"({len(city.stations):,} water stations, {len(city.gauges):,} gauges), "
        f"{result['offered_messages_per_s']:,} messages/s, "
        f"{result['offered_readings_per_s']:,} readings/s at {speedup:g}x"
    )
    processes: list[Background] = []
    try:
        with console.status("starting services, workers and bridges..."):
            services.up(settings)
            processes += [
                Background(
                    f"worker-{k}",
                    ["worker", "--log-level", "warn"],
                    settings,
                    env={"YUFLOW_WORKER__WEB_PORT": str(free_port())},
                )
                for k in range(1, workers + 1)
            ]
            processes += [
                Background(f"bridge-{k}", ["bridge", "--instance", f"bench-{k}"], settings)
                for k in range(1, bridges + 1)
            ]
            bridge_online(settings, None, timeout_s=120, instances=bridges)
            time.sleep(20 + 10 * workers)  # the workers join their group and start their agents
            dead = [p.name for p in processes if not p.alive()]
            if dead:
                raise RuntimeError(f"{dead} exited: {processes[0].log_tail(30)}")
        pids = {p.name: p.pid for p in processes} | {"load generator (this process)": os.getpid()}
        for service in services.all_services(settings):
            if (pid := service.our_pid()) is not None:
                pids[service.name] = pid
        meter = ProcessMeter(pids)
        client = make_client(settings.mqtt, f"bench-city-{uuid.uuid4().hex[:6]}")
        client.connect(settings.mqtt.host, settings.mqtt.port)
        client.loop_start()
        latencies: list[float] = []
        prober = threading.Timer(duration_s / 2, lambda: latencies.extend(latency_probes(settings, probes, 0.2)))
        sent_msgs = sent_readings = 0
        samples = []
        points_before = points_written(settings)
        started = time.time()
        load.start_s = started
        load.next_at = load.next_at + started
        meter.start()
        prober.start()
        next_sample = started + 10
        while (now := time.time()) < started + duration_s:
            for topic, payload, readings in load.due(now):
                client.publish(topic, payload, qos=1)
                sent_msgs += 1
                sent_readings += readings
            if now >= next_sample:
                meter.sample()
                records, lag = _lag(settings)
                forwarded = sum(bridge_counts(p.log_file)[0] for p in processes if p.name.startswith("bridge"))
                samples.append(
                    {
                        "t_s": round(now - started, 1),
                        "messages": sent_msgs,
                        "readings": sent_readings,
                        "forwarded": forwarded,
                        "records": records,
                        "lag": lag,
                        "points": points_written(settings) - points_before,
                    }
                )
                console.print(" ".join(f"{k}={v:,}" for k, v in samples[-1].items()))
                next_sample += 10
            time.sleep(0.02)
        elapsed = time.time() - started
        prober.join()
        result["processes"] = meter.result()
        client.loop_stop()
        client.disconnect()
        steady = samples[len(samples) // 3 :]
        result |= {
            "duration_s": round(elapsed),
            "messages_per_s": round(sent_msgs / elapsed, 1),
            "readings_per_s": round(sent_readings / elapsed, 1),
            "forwarded_messages_per_s_steady": round(
                (steady[-1]["forwarded"] - steady[0]["forwarded"]) / (steady[-1]["t_s"] - steady[0]["t_s"]), 1
            ),
            "influx_points_per_s_steady": round(
                (steady[-1]["points"] - steady[0]["points"]) / (steady[-1]["t_s"] - steady[0]["t_s"]), 1
            ),
            "lag_records": [s["lag"] for s in samples],
            "lag_first_last_max_steady": [steady[0]["lag"], steady[-1]["lag"], max(s["lag"] for s in steady)],
            "latency_s": _percentiles(latencies),
        }
        if restore:
            result["restore"] = _restore(settings, processes, load, console)
    finally:
        for process in reversed(processes):
            process.stop()
        services.down(settings)
    return result


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        **{f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 95, 99)},
        "max": round(max(values), 3),
    }


def _restore(settings, processes, load: CityLoad, console) -> dict:
    """kill -9 the first worker while the load goes on, start a new one: seconds until the group has
    caught up again (the lag back under twice its level before the kill, and at least 100 records);
    None when it has not within 180 s."""
    from pipeline.mqtt import make_client
    from pipeline.processes import Background

    client = make_client(settings.mqtt, f"bench-city-{uuid.uuid4().hex[:6]}")
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    try:

        def pump(seconds: float) -> None:
            until = time.time() + seconds
            while (now := time.time()) < until:
                for topic, payload, _ in load.due(now):
                    client.publish(topic, payload, qos=1)
                time.sleep(0.02)

        pump(10)
        _, before = _lag(settings)
        victim = processes[0]
        victim.kill()
        killed = time.time()
        processes.append(
            Background(
                "worker-restarted",
                ["worker", "--log-level", "info"],
                settings,
                env={"YUFLOW_WORKER__WEB_PORT": str(free_port())},
            )
        )
        history = []
        while time.time() - killed < 180:
            pump(5)
            _, lag = _lag(settings)
            history.append((round(time.time() - killed, 1), lag))
            console.print(f"restore: t={history[-1][0]} s lag={lag:,}")
            if time.time() - killed > 20 and lag <= max(2 * before, 100):
                break
        log = processes[-1].log_file.read_text(errors="replace")
        caught_up = history[-1][1] <= max(2 * before, 100)
        return {
            "lag_before": before,
            "caught_up_s": history[-1][0] if caught_up else None,
            "lag_history": history,
            "recovery_logged": "Recovery complete" in log or "recovery complete" in log.lower(),
        }
    finally:
        client.loop_stop()
        client.disconnect()
