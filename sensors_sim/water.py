"""Water-quality feeds: baselines with daily cycles, and pollution events moved downstream.

Arrays are (time, station). Temperature follows a daily cycle; dissolved oxygen follows the
temperature-dependent saturation with photosynthesis by day and respiration by night; the other
parameters vary slowly around station levels. Events add concentrations computed by the
advection-dispersion model (models/transport.py) and take oxygen away where they add oxygen demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.river import RiverNetwork
from models.transport import dispersion_sigma_s, plume_mg_l

PARAMS = ("temperature", "do", "ph", "nh3n", "cod", "codmn", "total_phosphorus", "turbidity", "conductivity", "oil")
# sensor noise (1 sd), in canonical units
NOISE = {
    "temperature": 0.05,
    "do": 0.08,
    "ph": 0.02,
    "nh3n": 0.02,
    "cod": 0.6,
    "codmn": 0.1,
    "total_phosphorus": 0.005,
    "turbidity": 0.8,
    "conductivity": 4.0,
    "oil": 0.003,
}
# oxygen taken per mg/L of added load (mg O2 per mg): organic matter and nitrification
OXYGEN_DEMAND = {"cod": 0.25, "nh3n": 1.5}


def do_saturation_mg_l(temp_c: np.ndarray) -> np.ndarray:
    """Dissolved-oxygen saturation in fresh water at sea level (a cubic fit, within ~0.1 mg/L of the tables).

    >>> [round(float(do_saturation_mg_l(np.array(t))), 2) for t in (0.0, 20.0, 30.0)]
    [14.65, 9.02, 7.44]
    """
    return 14.652 - 0.41022 * temp_c + 0.007991 * temp_c**2 - 0.000077774 * temp_c**3


@dataclass(frozen=True)
class WaterSeries:
    clean: dict[str, np.ndarray]  # noise-free truth, (T, S)
    noise: dict[str, np.ndarray]


def baseline(
    local_hour: np.ndarray, day: np.ndarray, n_stations: int, month: int, classes: list[str], rng: np.random.Generator
) -> WaterSeries:
    """Noise-free baselines and sensor noise for every station."""
    T, S = len(local_hour), n_stations
    h = local_hour[:, None]
    seasonal_c = 17 + 10 * np.sin((month - 4.5) / 12 * 2 * np.pi)  # ~27 °C in August, ~8 °C in January
    temp = seasonal_c + rng.normal(0, 1.0, S) + 1.2 * np.sin((h - 9) / 24 * 2 * np.pi)
    # photosynthesis lifts DO after sunrise, respiration lowers it through the night
    light = np.clip(np.sin((h - 6) / 12 * np.pi), 0, None)
    saturation_ratio = rng.uniform(0.86, 0.95, S) + 0.12 * light - 0.04 * (1 - light)
    do = do_saturation_mg_l(temp) * saturation_ratio
    cleaner = np.array([{"I": 0.4, "II": 0.6, "III": 1.0, "IV": 1.3, "V": 1.6}.get(c, 1.0) for c in classes])
    slow = np.sin(day[:, None] / 3 * 2 * np.pi + rng.uniform(0, 2 * np.pi, S))  # multi-day wander
    clean = {
        "temperature": temp,
        "do": do,
        "ph": 7.5 + rng.normal(0, 0.15, S) + 0.2 * light,
        "nh3n": cleaner * rng.uniform(0.2, 0.35, S) * (1 + 0.1 * slow),
        "cod": cleaner * rng.uniform(9, 13, S) * (1 + 0.05 * slow),
        "codmn": cleaner * rng.uniform(2.5, 3.8, S) * (1 + 0.05 * slow),
        "total_phosphorus": cleaner * rng.uniform(0.05, 0.1, S) * (1 + 0.1 * slow),
        "turbidity": rng.uniform(8, 25, S) * (1 + 0.2 * slow),
        "conductivity": rng.uniform(280, 450, S) * (1 + 0.03 * slow),
        "oil": cleaner * rng.uniform(0.008, 0.02, S) * np.ones((T, 1)),
    }
    clean = {p: np.broadcast_to(v, (T, S)).astype(float) for p, v in clean.items()}
    noise = {p: rng.normal(0, NOISE[p], (T, S)) for p in PARAMS}
    return WaterSeries(clean=clean, noise=noise)


@dataclass(frozen=True)
class Plume:
    """What one release does at each station: added mg/L per pollutant, (T, S); arrival times."""

    added: dict[str, np.ndarray]
    travel_s: np.ndarray  # (S,), NaN where the station is not downstream
    peak_mg_l: dict[str, np.ndarray]


def release(
    network: RiverNetwork,
    source_point: tuple[str, float],
    station_points: list[tuple[str, float]],
    t_s: np.ndarray,
    start_s: float,
    duration_s: float,
    loads_kg: dict[str, float],
    decay_per_day: dict[str, float],
) -> Plume:
    """A release of ``loads_kg`` (per pollutant) over ``duration_s``, seen at every downstream station."""
    S = len(station_points)
    travel = np.full(S, np.nan)
    added = {p: np.zeros((len(t_s), S)) for p in loads_kg}
    for j, point in enumerate(station_points):
        tau = network.travel_time_s(source_point, point)
        if tau is None:
            continue
        travel[j] = tau
        sigma = float(dispersion_sigma_s(tau, network.distance_km(source_point, point), network.dispersion_m2s(point)))
        q = network.discharge_m3s(point)
        for pollutant, kg in loads_kg.items():
            added[pollutant][:, j] = plume_mg_l(
                t_s - start_s, tau, sigma, duration_s, kg, q, decay_per_day.get(pollutant, 0.0)
            )
    return Plume(added=added, travel_s=travel, peak_mg_l={p: a.max(axis=0) for p, a in added.items()})


def apply(clean: dict[str, np.ndarray], plume: Plume) -> None:
    """Add a plume's pollutants and the oxygen they consume, in place; DO stays >= 0.2 mg/L."""
    for pollutant, added in plume.added.items():
        target = "oil" if pollutant == "oil" else pollutant
        clean[target] += added
        if pollutant in OXYGEN_DEMAND:
            clean["do"] -= OXYGEN_DEMAND[pollutant] * added
    np.maximum(clean["do"], 0.2, out=clean["do"])
