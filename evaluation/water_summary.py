"""``yuflow eval water``'s summaries: per group of runs (seed scenarios, random releases, quiet weeks)
the detection, tracing and fault-labelling scores; tracing by time after the first detection; and the
seed scenarios' own acceptance lines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation.water import RunSummary
from pipeline.city import City


def summarise_tracing(results: list[RunSummary]) -> pd.DataFrame:
    """Tracing of the detected events (seed scenarios and random releases) by time after detection:
    top-1, top-3, the mean probability given to the top-1 (calibrated: about the top-1 rate), how
    often a wrong top-1 was given 0.8 or more, the probability a wrong top-1
    was given (median), the arrival error."""
    events = [e for r in results if not r.name.startswith("quiet_week") for e in r.events if e.detected and e.looks]
    rows = []
    for h in sorted({h for e in events for h in e.looks}):
        looks = [e.looks[h] for e in events if h in e.looks]
        wrong = [x.top1_probability for x in looks if x.rank_of_truth != 1 and x.top1_probability is not None]
        errors = [x.arrival_error for x in looks if x.arrival_error is not None]
        rows.append(
            {
                "after": f"{h * 60:.0f} min" if h < 1 else f"{h:g} h",
                "events": len(looks),
                "top-1": np.mean([x.rank_of_truth == 1 for x in looks]),
                "top-3": np.mean([x.rank_of_truth is not None and x.rank_of_truth <= 3 for x in looks]),
                "mean p top-1": np.mean([x.top1_probability or 0.0 for x in looks]),  # beside top-1: calibration
                "wrong at p≥0.8": sum(p >= 0.8 for p in wrong) / len(looks),
                "p of wrong (median)": np.median(wrong) if wrong else np.nan,
                "arrival error": np.median(errors) if errors else np.nan,
                "arrival error p90": np.percentile(errors, 90) if errors else np.nan,
            }
        )
    return pd.DataFrame(rows)


def summarise(results: list[RunSummary]) -> pd.DataFrame:
    rows = []
    groups = {
        "seed scenarios": [r for r in results if r.name in ("ruxi_oil_spill", "puhe_do_sag")],
        "random releases": [r for r in results if r.name.startswith("random-")],
        "quiet weeks": [r for r in results if r.name.startswith("quiet_week")],
    }
    for group, runs in groups.items():
        events = [e for r in runs for e in r.events if e.observable]
        detected = [e for e in events if e.detected]
        delays = [e.delay_min for e in detected if e.delay_min is not None]
        ranks = [e.rank_of_truth for e in detected]
        arrival = [e.arrival_error for e in detected if e.arrival_error is not None]
        ms = [e.compute_ms for e in detected if e.compute_ms is not None]
        sensor_days = sum(r.sensor_days for r in runs)
        rows.append(
            {
                "runs": group,
                "events": len(events),
                "unobservable": sum(not e.observable for r in runs for e in r.events),
                "recall": len(detected) / len(events) if events else np.nan,
                "false alarms / sensor-day": sum(r.false_alarms for r in runs) / sensor_days if sensor_days else np.nan,
                "delay median min": np.median(delays) if delays else np.nan,
                "delay p95 min": np.percentile(delays, 95) if delays else np.nan,
                "top-1": np.mean([r == 1 for r in ranks]) if ranks else np.nan,
                "top-3": np.mean([r is not None and r <= 3 for r in ranks]) if ranks else np.nan,
                "arrival error median": np.median(arrival) if arrival else np.nan,
                "trace ms median": np.median(ms) if ms else np.nan,
                "trace ms p95": np.percentile(ms, 95) if ms else np.nan,
                **{
                    f"{kind} faults labelled": (
                        sum(r.faults.get(kind, (0, 0))[0] for r in runs) / n
                        if (n := sum(r.faults.get(kind, (0, 0))[1] for r in runs))
                        else np.nan
                    )
                    for kind in ("spike", "stuck", "drift")
                },
                "false drift labels / sensor-week": sum(r.false_drift for r in runs) / sensor_days * 7
                if sensor_days
                else np.nan,
                "false spike labels / sensor-week": sum(r.false_spikes for r in runs) / sensor_days * 7
                if sensor_days
                else np.nan,
            }
        )
    return pd.DataFrame(rows)


def seed_checks(results: list[RunSummary], city: City) -> list[str]:
    """The seed cases' own acceptance lines: who was named, in which order, and the intake arrival."""
    lines = []
    for r in results:
        for e in r.events:
            if r.name == "ruxi_oil_spill":
                predicted, true = e.arrivals.get("ruxi-intake", (float("nan"), float("nan")))
                lines.append(
                    f"ruxi_oil_spill: top-1 {e.top1} (truth ruxi-food-factory) "
                    f"{'OK' if e.top1 == 'ruxi-food-factory' else 'MISS'}; "
                    f"intake arrival predicted {predicted:.2f} h after release vs simulated {true:.2f} h "
                    f"({abs(predicted - true) / true:.1%} error) "
                    f"{'OK' if abs(predicted - true) / true <= 0.1 else 'MISS'}"
                )
            if r.name == "puhe_do_sag":
                lines.append(
                    f"puhe_do_sag: ranking {e.ranking[:3]}; "
                    f"{'OK' if e.ranking[:2] == ['puhe-sewage-gunan', 'puhe-sewage-sanjiao'] else 'MISS'} "
                    "(truth: gunan, then sanjiao)"
                )
    return lines
