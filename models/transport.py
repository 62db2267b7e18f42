"""1-D advection-dispersion of a release along a river, in travel-time coordinates.

A release of ``mass_kg`` spread evenly over ``duration_s`` passes a section ``travel_s`` downstream.
Dispersion spreads it into a Gaussian in time with ``sigma_s = sqrt(2 D t) / u``; the box-shaped
release convolved with that Gaussian gives a closed form. Mass is conserved through the section
(``∫ C Q dt = M``, minus first-order decay), so dilution at confluences follows from the larger
discharge downstream.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr


def dispersion_sigma_s(
    travel_s: float | np.ndarray, distance_km: float | np.ndarray, dispersion_m2s: float
) -> np.ndarray:
    """Spread (s) of a plume in time after travelling ``distance_km`` in ``travel_s``.

    >>> round(float(dispersion_sigma_s(3600.0, 1.8, 10.0)), 1)  # 1.8 km in 1 h: u = 0.5 m/s
    536.7
    """
    travel_s = np.asarray(travel_s, dtype=float)
    velocity_mps = np.asarray(distance_km, dtype=float) * 1000 / np.maximum(travel_s, 1.0)
    return np.sqrt(2 * dispersion_m2s * np.maximum(travel_s, 1.0)) / np.maximum(velocity_mps, 1e-3)


def plume_mg_l(
    t_s: np.ndarray,
    travel_s: float | np.ndarray,
    sigma_s: float | np.ndarray,
    duration_s: float,
    mass_kg: float,
    discharge_m3s: float | np.ndarray,
    decay_per_day: float = 0.0,
) -> np.ndarray:
    """Concentration (mg/L) at a section for times ``t_s`` after the release started.

    >>> t = np.arange(0, 40_000, 60.0)
    >>> c = plume_mg_l(t, travel_s=7200, sigma_s=600, duration_s=1800, mass_kg=50, discharge_m3s=5)
    >>> round(float(t[c.argmax()]) / 3600, 2)  # peak at travel time + half the release duration
    2.25
    >>> round(float(np.sum(c) * 60 * 5 * 1000 / 1e6), 2)  # mass through the section, kg
    50.0
    """
    duration_s = max(duration_s, 1.0)
    sigma_s = np.maximum(sigma_s, 1.0)  # scalars or arrays (one value per sample)
    mg = mass_kg * 1e6 * np.exp(-decay_per_day * travel_s / 86400)
    rate_mg_s = mg / duration_s
    flux_l_s = discharge_m3s * 1000
    t = np.asarray(t_s, dtype=float) - travel_s
    return rate_mg_s / flux_l_s * (ndtr(t / sigma_s) - ndtr((t - duration_s) / sigma_s))
