"""``yuflow eval water``: the water models judged on simulated ground truth (no brokers).

For each run: detect (GB 3838 limits with persistence, and the statistical detectors when present),
group findings into incidents, trace the source, predict arrival at intakes, and compare with the
truth: event recall, false alarms per sensor-day, detection delay, tracing top-1/top-3, arrival error,
compute time per incident. The runs are summarised in ``evaluation/water_summary.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import timedelta

import numpy as np

from models.sensor_faults import Finding, station_findings
from models.standards import class_limits
from pipeline.city import City, load_toml
from pipeline.settings import load_settings
from pipeline.water_screen import new_screen
from pipeline.water_tracing import History, trace_incident
from sensors_sim.recording import Recording
from sensors_sim.scenario import Scenario, load_scenario, random_release_event
from sensors_sim.simulation import simulate

POLLUTION_TYPES = ("release", "oil_spill", "do_sag")
PERSISTENCE = 3
LOOKS_H = (5 / 60, 0.25, 1.0, 2.0)  # tracing is judged this long after the first detection too


@dataclass
class Detection:
    station_id: str
    t_s: float
    parameter: str


@dataclass
class Look:
    """One trace of an event, with data up to some time after its first detection."""

    rank_of_truth: int | None  # 1 = top-1; None = not in the list
    top1: str | None
    top1_probability: float | None
    arrival_error: float | None  # relative to the true travel time
    compute_ms: float
    explanation: str = ""
    ranking: list[str] = field(default_factory=list)
    arrivals: dict[str, tuple[float, float]] = field(
        default_factory=dict
    )  # intake: (predicted h, true h) after release


@dataclass
class EventResult:  # one pollution event of one run
    run: str
    event_id: str
    event_type: str
    detected: bool
    observable: bool = True  # some affected station read while the plume passed it
    delay_min: float | None = None
    looks: dict[float, Look] = field(default_factory=dict)  # by hours after the first detection
    main: Look | None = None  # the look at ``--observe``, which the summary reports

    # the main look's findings (None / empty when the event was not detected)
    @property
    def rank_of_truth(self) -> int | None:
        return self.main.rank_of_truth if self.main else None

    @property
    def top1(self) -> str | None:
        return self.main.top1 if self.main else None

    @property
    def arrival_error(self) -> float | None:
        return self.main.arrival_error if self.main else None

    @property
    def compute_ms(self) -> float | None:
        return self.main.compute_ms if self.main else None

    @property
    def explanation(self) -> str:
        return self.main.explanation if self.main else ""

    @property
    def ranking(self) -> list[str]:
        return self.main.ranking if self.main else []

    @property
    def arrivals(self) -> dict[str, tuple[float, float]]:
        return self.main.arrivals if self.main else {}


@dataclass
class RunSummary:
    name: str
    events: list[EventResult] = field(default_factory=list)
    false_alarms: int = 0
    sensor_days: float = 0.0
    faults: dict[str, tuple[int, int]] = field(default_factory=dict)  # type: (labelled correctly, injected)
    false_drift: int = 0  # drift labels on a station and parameter that never drifted
    false_spikes: int = 0  # spike labels where no spike was injected


def station_data(rec: Recording) -> dict[str, History]:
    """Per station: deduplicated, time-ordered values of every water parameter."""
    water = rec.frame[(rec.frame["kind"] == "water") & ~rec.frame["malformed"]]
    start_ms = int(rec.truth.start.timestamp() * 1000)
    wide = water.drop_duplicates(["sensor_id", "ts_ms", "parameter"]).pivot_table(
        index=["site", "ts_ms"], columns="parameter", values="value", observed=True
    )
    out = {}
    for site, block in wide.groupby(level=0, observed=True):
        t = (block.index.get_level_values(1).to_numpy() - start_ms) / 1000
        out[str(site)] = History(t, {p: block[p].to_numpy() for p in block.columns})
    return out


def gb3838_detections(city: City, data: dict[str, History], persistence: int = PERSISTENCE) -> list[Detection]:
    """Every start of ``persistence`` consecutive exceedances (one per station, parameter and episode)."""
    gb = load_toml("gb3838")
    found = []
    for sid, d in data.items():
        limits = class_limits(gb, city.stations[sid].target_class)
        for p, values in d.values.items():
            if p not in limits:
                continue
            bad = ~np.isnan(limits[p].severity_many(values))
            run = np.convolve(bad.astype(int), np.ones(persistence, int), mode="full")[: len(bad)] >= persistence
            starts = np.flatnonzero(run & ~np.concatenate([[False], run[:-1]]))
            found += [Detection(sid, float(d.t_s[i]), p) for i in starts]
    return found


def statistical_findings(
    rec: Recording, data: dict[str, History], city: City, screen_settings: dict[str, float] | None = None
) -> dict[str, list[Finding]]:
    """Per station: the water screen's findings (pollution or sensor fault), streamed in time order:
    the screen the water agent runs, with the configured settings, all stations at once."""
    start_s = rec.truth.start.timestamp()
    step_s = float(rec.truth.steps_s["water"])
    parameters = sorted({p for h in data.values() for p in h.values})
    values = screen_settings if screen_settings is not None else load_settings().water.screen
    screen = new_screen(values, parameters, utc_offset_h=city.utc_offset_h)
    rows, ts, blocks = [], [], []
    for sid, h in data.items():
        i = screen.add(sid, sorted(h.values))
        rows.append(np.full(len(h.t_s), i))
        ts.append(start_s + h.t_s)
        blocks.append(
            np.column_stack([h.values[p] if p in h.values else np.full(len(h.t_s), np.nan) for p in parameters])
        )
    rows_all, ts_all, X_all = np.concatenate(rows), np.concatenate(ts), np.vstack(blocks)
    order = np.argsort(ts_all, kind="stable")  # arrival order: by time, station by station
    verdicts = screen.step_many(rows_all[order], X_all[order], ts_all[order])
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    out, at = {}, 0
    for sid, h in data.items():
        n = len(h.t_s)
        mine = back[at : at + n]
        out[sid] = station_findings(h.t_s, parameters, X_all[at : at + n], verdicts.take(mine), step_s)
        at += n
    return out


def evaluate_run(name: str, rec: Recording, city: City, observe_h: float = 1.0) -> RunSummary:
    data = station_data(rec)
    findings = statistical_findings(rec, data, city)
    # the standard's rule and the statistical detectors, whichever sees it first
    detections = gb3838_detections(city, data) + [
        Detection(sid, f.start_s, f.parameter or "multi")
        for sid, fs in findings.items()
        for f in fs
        if f.kind == "pollution"
    ]
    start = rec.truth.start
    events = [e for e in rec.truth.events if e.type in POLLUTION_TYPES]
    summary = RunSummary(name=name, sensor_days=len(data) * (rec.truth.end - start).total_seconds() / 86400)
    matched: set[int] = set()
    for e in events:
        t0, t1 = (e.start - start).total_seconds(), (e.end - start).total_seconds()
        affected = {s.removeprefix("wq-") for s in e.affected_sensors}
        hits = [(i, d) for i, d in enumerate(detections) if d.station_id in affected and t0 <= d.t_s <= t1]
        matched |= {i for i, _ in hits}
        result = EventResult(name, e.id, e.type, detected=bool(hits), observable=read_while_passing(e, data, t0))
        if hits:
            first = min((d for _, d in hits), key=lambda d: d.t_s)
            if e.expected_detection is not None:
                result.delay_min = (first.t_s - (e.expected_detection - start).total_seconds()) / 60
            result.looks = {h: look(city, data, first, h, e, t0) for h in sorted({*LOOKS_H, observe_h})}
            result.main = result.looks[observe_h]
        summary.events.append(result)

    # findings outside every event's affected stations and window are false alarms (one per episode)
    def in_event(d: Detection) -> bool:
        for e in events:
            if (
                f"wq-{d.station_id}" in e.affected_sensors
                and (e.start - start).total_seconds() - 3600 <= d.t_s <= (e.end - start).total_seconds()
            ):
                return True
        return False

    summary.false_alarms = sum(1 for i, d in enumerate(detections) if i not in matched and not in_event(d))
    summary.faults = fault_scores(rec, findings)
    summary.false_drift = false_drift_labels(rec, findings)
    summary.false_spikes = false_spike_labels(rec, findings)
    return summary


def read_while_passing(e, data: dict[str, History], t0: float) -> bool:
    """Whether some station the truth says the release reaches read while it passed (from 30 min
    before its arrival to an hour after the release's duration): a station in a dropout then
    cannot see it, and the event is counted as unobservable, not as missed."""
    if "arrival_h" not in e.details:
        return bool(e.affected_sensors)
    duration_s = float(e.details.get("release_duration_s", 0.0))
    for station, arrival_h in e.details["arrival_h"].items():
        h = data.get(station)
        arrive_s = t0 + arrival_h * 3600
        if h is not None and np.any((h.t_s >= arrive_s - 1800) & (h.t_s <= arrive_s + duration_s + 3600)):
            return True
    return False


def look(city: City, data: dict[str, History], first: Detection, observe_h: float, e, t0: float) -> Look:
    """The event traced from its first detection with ``observe_h`` hours of data after it."""
    started = time.perf_counter()
    traced = trace_incident(city, data, first.station_id, first.t_s, first.t_s + observe_h * 3600)
    ms = (time.perf_counter() - started) * 1000
    ids = [s.source_id for s in traced.suspects]
    arrivals, errors = {}, []
    for a in traced.arrivals:
        true_h = e.details.get("intake_arrival_h", {}).get(a.target_id)
        if true_h is not None:
            errors.append(abs(a.arrival_s - (t0 + true_h * 3600)) / (true_h * 3600))
            arrivals[a.target_id] = ((a.arrival_s - t0) / 3600, true_h)
    return Look(
        ids.index(e.source_id) + 1 if e.source_id in ids else None,
        ids[0] if ids else None,
        traced.suspects[0].probability if traced.suspects else None,
        min(errors) if errors else None,
        ms,
        traced.suspects[0].explanation if traced.suspects else "",
        ids,
        arrivals,
    )


def fault_scores(rec: Recording, findings: dict[str, list[Finding]]) -> dict[str, tuple[int, int]]:
    """Per fault type: (injected faults labelled as that fault, injected faults) over water stations."""
    start = rec.truth.start
    scores: dict[str, list[int]] = {}
    for e in rec.truth.of_type("fault"):
        kind = e.details.get("fault")
        station = e.affected_sensors[0].removeprefix("wq-") if e.affected_sensors else ""
        if kind not in ("spike", "stuck", "drift") or station not in findings:
            continue
        t0, t1 = (e.start - start).total_seconds(), (e.end - start).total_seconds()
        hit = any(
            f.kind == "fault" and f.fault == kind and f.start_s <= t1 + 3600 and f.end_s >= t0 - 3600
            for f in findings[station]
        )
        tally = scores.setdefault(kind, [0, 0])
        tally[0] += hit
        tally[1] += 1
    return {k: (v[0], v[1]) for k, v in scores.items()}


def false_spike_labels(rec: Recording, findings: dict[str, list[Finding]]) -> int:
    """Spike findings with no injected spike of that station and parameter within one reading."""
    start, step_s = rec.truth.start, float(rec.truth.steps_s["water"])
    injected: dict[tuple[str, str], list[float]] = {}
    for e in rec.truth.of_type("fault"):
        if e.details.get("fault") == "spike" and e.affected_sensors:
            injected.setdefault((e.affected_sensors[0].removeprefix("wq-"), e.details.get("parameter")), []).append(
                (e.start - start).total_seconds()
            )
    return sum(
        1
        for station, found in findings.items()
        for f in found
        if f.fault == "spike"
        and not any(abs(f.start_s - t) <= step_s for t in injected.get((station, f.parameter), []))
    )


def false_drift_labels(rec: Recording, findings: dict[str, list[Finding]]) -> int:
    """Drift findings on a (station, parameter) with no injected drift (an injected one stays until recalibration)."""
    drifted = {
        (e.affected_sensors[0].removeprefix("wq-"), e.details.get("parameter"))
        for e in rec.truth.of_type("fault")
        if e.details.get("fault") == "drift" and e.affected_sensors
    }
    return sum(
        1
        for station, found in findings.items()
        for f in found
        if f.fault == "drift" and (station, f.parameter) not in drifted
    )


def random_release_scenario(city: City, seed: int, duration_h: float = 36.0) -> Scenario:
    base = load_scenario("quiet_week", city=city)
    rng = np.random.default_rng([seed, 5])
    kind = ("release", "oil_spill", "do_sag")[seed % 3]
    event = random_release_event(city, rng, duration_h, kind)
    return Scenario(
        name=f"release-{seed}",
        start=base.start + timedelta(days=int(rng.integers(0, 300))),
        duration_s=duration_h * 3600,
        feeds=("water",),
        steps_s=base.steps_s,
        faults=base.faults,
        events=(event,),
        seed=seed,
        flow_factor=float(rng.uniform(0.85, 1.15)),
    )  # the river is not exactly as the model says


def evaluate(
    city: City, runs: int, seed: int, progress=None, observe_h: float = 1.0, weeks: int = 3
) -> list[RunSummary]:
    """Seed scenarios, the quiet week and ``weeks`` more quiet weeks with other seeds (drift needs days
    of history to be told from the river's wander, so only week-long runs measure it), and ``runs``
    random releases."""
    quiet = load_scenario("quiet_week", city=city)
    plans = [
        ("ruxi_oil_spill", lambda: load_scenario("ruxi_oil_spill", city=city)),
        ("puhe_do_sag", lambda: load_scenario("puhe_do_sag", city=city)),
        ("quiet_week", lambda: quiet),
    ]
    plans += [
        (f"quiet_week-{quiet.seed + w}", lambda w=w: replace(quiet, seed=quiet.seed + w, feeds=("water",)))
        for w in range(1, weeks + 1)
    ]
    plans += [(f"random-{seed + i}", (lambda s=seed + i: random_release_scenario(city, s))) for i in range(runs)]
    out = []
    for name, make in plans:
        out.append(evaluate_run(name, simulate(make(), city), city, observe_h))
        if progress is not None:
            progress()
    return out
