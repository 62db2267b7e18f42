"""The rain step of a simulation: showers and storm cells over the gauges, and what they leave.

The gauges' amounts as the rain feed (a tipping bucket's 0.1 mm), the storms' ground truth (the
rainstorm tier each gauge and district reaches, and when) and the road cameras' flooding.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np

from pipeline.city import Gauge, load_toml
from sensors_sim import rain
from sensors_sim.run import Feed, Run, tier_rank
from sensors_sim.truth import TruthEvent


def simulate_rain(run: Run) -> None:
    """The rain feed and the storms (also when only the cameras are simulated: road flooding)."""
    scn = run.scn
    storms = [e for e in scn.events if e["type"] == "storm"]
    if not (run.simulates("rain") or (storms and run.simulates("camera"))):
        return
    gauges = list(run.city.gauges.values())
    step = scn.steps_s["rain"]
    t_r = np.arange(step, scn.duration_s + step, step, dtype=float)  # interval ends
    x = np.array([g.x_km for g in gauges])
    y = np.array([g.y_km for g in gauges])
    cells = [_storm_cell(e) for e in storms]
    hours = int(np.ceil(scn.duration_s / 3600)) + 1
    showers = rain.showers(hours, len(gauges), run.rng["rain"])
    amounts = rain.amounts_mm(t_r, step, x, y, cells, showers)
    if storms:
        run.truth.append(_storm_truth(run, gauges, storms, cells, amounts, t_r))
    if run.simulates("rain"):
        measured = np.round(amounts / 0.1) * 0.1  # tipping bucket: 0.1 mm resolution
        run.feeds.append(
            Feed(
                "rain",
                [g.id for g in gauges],
                [g.id for g in gauges],
                [g.district for g in gauges],
                t_r,
                {"rain": measured, "interval_s": np.full_like(measured, step)},
            )
        )
    if run.simulates("camera") and storms:
        _flood_detections(run, cells, showers)


def _storm_cell(e: Mapping) -> rain.StormCell:
    return rain.StormCell(
        e["at_h"] * 3600,
        e["duration_h"] * 3600,
        e["x_km"],
        e["y_km"],
        e["vx_kmh"],
        e["vy_kmh"],
        e["peak_mm_h"],
        e["radius_km"],
    )


def _rolling_sum(a: np.ndarray, window: int) -> np.ndarray:
    """Sums over the last ``window`` rows (fewer at the start), along the first axis."""
    c = np.cumsum(a, axis=0)
    out = c.copy()
    out[window:] = c[window:] - c[:-window]
    return out


def _gauge_tiers(
    run: Run, gauges: list[Gauge], amounts: np.ndarray, t_r: np.ndarray
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Per gauge: the highest rainstorm tier its accumulations reach, and when it reaches each tier."""
    step = run.scn.steps_s["rain"]
    gauge_tier: dict[str, str] = {}
    crossing: dict[str, dict[str, str]] = {}
    for rule in load_toml("rain")["tiers"]:
        acc = _rolling_sum(amounts, int(rule["window_h"] * 3600 / step))
        reached = acc >= rule["mm"]
        for j in np.flatnonzero(reached.any(axis=0)):
            g = gauges[j]
            crossing.setdefault(g.id, {})[rule["tier"]] = run.at(float(t_r[int(np.argmax(reached[:, j]))])).isoformat()
            if tier_rank(rule["tier"]) > tier_rank(gauge_tier.get(g.id)):
                gauge_tier[g.id] = rule["tier"]
    return gauge_tier, crossing


def _storm_truth(run: Run, gauges, storms, cells, amounts, t_r) -> TruthEvent:
    """The storms as one event: the tiers gauges and districts reach, and the first crossing."""
    gauge_tier, crossing = _gauge_tiers(run, gauges, amounts, t_r)
    district_tier: dict[str, str] = {}
    for g in gauges:
        if g.id in gauge_tier and tier_rank(gauge_tier[g.id]) > tier_rank(district_tier.get(g.district)):
            district_tier[g.district] = gauge_tier[g.id]
    first = min((t for c in crossing.values() for t in c.values()), default=None)
    start_s = min(c.start_s for c in cells)
    end_s = min(run.scn.duration_s, max(c.start_s + c.duration_s for c in cells) + 3600)
    return TruthEvent(
        id="storm-0",
        type="storm",
        start=run.at(start_s),
        end=run.at(end_s),
        affected_sensors=sorted(gauge_tier),
        expected_detection=datetime.fromisoformat(first) if first else None,
        expected_tier=max(gauge_tier.values(), key=tier_rank) if gauge_tier else None,
        details={
            "gauge_tier": gauge_tier,
            "district_tier": district_tier,
            "crossing": crossing,
            "total_mm": {
                g.id: round(float(amounts[:, j].sum()), 2) for j, g in enumerate(gauges) if g.id in gauge_tier
            },
            "cells": [dict(e) for e in storms],
        },
    )


def _flood_detections(run: Run, cells: list[rain.StormCell], showers: np.ndarray) -> None:
    """Road cameras report water depth where the last hour's rain overwhelms the drains."""
    t_cam, r = run.t_cam, run.rng["camera"]
    for cam in run.city.cameras.values():
        if cam.target != "road":
            continue
        road = run.city.roads[cam.site]
        per_step = rain.amounts_mm(
            t_cam + (t_cam[1] - t_cam[0]),
            t_cam[1] - t_cam[0],
            np.array([road.x_km]),
            np.array([road.y_km]),
            cells,
            showers[:, :1],
        )[:, 0]
        last_hour = _rolling_sum(per_step, int(3600 / (t_cam[1] - t_cam[0])))
        depth = np.clip(last_hour - 25.0, 0, None) * (0.008 if road.low_point else 0.003)
        seen = depth >= 0.05
        run.cams.add(
            run.camera_index[cam.id],
            t_cam[seen],
            "flood_depth",
            np.round(depth[seen], 3),
            "road_flooding",
            np.round(r.uniform(0.7, 0.95, int(seen.sum())), 3),
        )


__all__ = ["simulate_rain"]
