"""Anomaly detectors for water-quality series that know the station's daily cycle.

``SeasonalRobustZ`` scores one sensor parameter against what the station normally reads at that
hour of the day (dissolved oxygen and pH rise by day with photosynthesis, temperature follows the
sun). ``StationMultivariate`` scores all parameters of one station together. Both follow the
``models.base.Detector`` contract (score in [0, 1], high = anomalous, test-then-train) and have a
batch form, ``score_many``, that gives exactly the scores of the one-at-a-time loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from models.base import Detector

GAUSS_MAD = math.sqrt(math.pi / 2)  # mean absolute deviation x this = standard deviation, for Gaussian noise
UNSEEN_SPREAD = 3.0  # an hour of the day not seen yet may be this many sd of the learned profile off


def score_from_z(z: float | np.ndarray, z0: float = 3.0, k: float = 2.0) -> np.ndarray:
    """Map a robust z to [0, 1]: 0 while ``|z| <= z0``, then ``1 - exp(-(|z| - z0) / k)``; NaN gives 0.

    >>> score_from_z(np.array([0.0, -3.0, 4.0, 7.0, -12.0, np.nan])).round(3)
    array([0.   , 0.   , 0.393, 0.865, 0.989, 0.   ])
    """
    excess = np.abs(np.asarray(z, dtype=float)) - z0
    excess = np.where(excess > 0, excess, 0.0)  # NaN > 0 is False
    return 1.0 - np.exp(-excess / k)


class SeasonalRobustZ(Detector):
    """Robust z of one sensor parameter against its learned daily profile.

    The normal reading at local hour ``h`` is ``level + profile(h)``. ``level`` is a running mean,
    then an EWMA over ``level_window`` readings, of the readings net of the profile: it follows
    day-to-day wander. The daily ``profile`` lives on ``n_bins`` knots round the clock, linearly
    interpolated; each knot is a running mean (then an EWMA over ``season_window`` effective
    readings) of the readings net of the level near its hour, so the first day gives a first
    profile and later days refine it. The scale is an EWMA of absolute residuals times
    sqrt(pi/2) (a standard deviation for Gaussian noise), widened at hours of the day not seen yet
    by 3 x the spread of the profile learned so far. The score maps ``z = residual / scale`` to
    [0, 1] with ``1 - exp(-max(0, |z| - z0) / k)``.

    It returns 0 for the first ``grace_period`` learned readings: before that the scale is not
    known and every reading would look anomalous. With ``protect`` it does not learn readings that
    score above ``protect_threshold``, so an anomaly is not learned as normal.

    When it fails: on the first day the profile comes from the last hour seen, so an anomaly that
    builds up slowly that day is partly learned; slow changes (a drift over days, a broad plume
    far downstream) are absorbed by ``level`` and never score high; with ``protect``, a lasting
    step (a recalibration) keeps scoring high until ``reset``; a daily cycle whose shape changes
    from day to day (weather) widens the scale.

    Every column of a 2-D ``score_many`` input is an independent series sharing the clock (for
    example the ten parameters of one station); the state then holds one model per column.

    Parameters
    ----------
    n_bins
        Knots of the daily profile (24 = one per hour).
    level_window
        Span of the level EWMA, in readings (36 = 6 h at 10-minute readings).
    season_window
        Memory of each profile knot, in effective readings: a knot gains about
        ``24 / n_bins * 3600 / step_s`` per day (6 with 24 knots and 10-minute readings).
    season_prior
        Effective readings of "no daily cycle" each knot starts with (0: the first day counts fully).
    scale_window
        Span of the EWMA of absolute residuals, in readings.
    grace_period
        Readings to learn before scoring (score 0 until then).
    z0, k
        Score mapping: no score up to ``|z| = z0``, then it approaches 1 with scale ``k``.
    protect
        Skip learning readings whose score is above ``protect_threshold``.
    protect_threshold
        Score in [0, 1] above which a reading is not learned (0.5 is ``|z| = z0 + k ln 2``).
    min_scale
        Smallest scale in the parameter's unit, so a series that never varies cannot divide by 0.

    Examples
    --------
    Dissolved oxygen at one station, one reading every 10 minutes; the last reading drops 1 mg/L.

    >>> det = SeasonalRobustZ(grace_period=5)
    >>> readings = [8.10, 8.14, 8.07, 8.12, 8.09, 8.13, 8.08, 7.10]
    >>> scores = []
    >>> for i, do_mg_l in enumerate(readings):
    ...     x = {"value": do_mg_l, "hour": 10 + i / 6}
    ...     scores.append(det.score_one(x))
    ...     det.learn_one(x)
    >>> [round(s, 2) for s in scores]
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]

    The batch form gives the same scores, and also runs over whole arrays (seeded noise here):

    >>> SeasonalRobustZ(grace_period=5).score_many(np.array(readings), 10 + np.arange(8) / 6).round(2)
    array([0., 0., 0., 0., 0., 0., 0., 1.])
    >>> rng = np.random.default_rng(7)
    >>> hours = (np.arange(6 * 24 * 3) / 6) % 24
    >>> do = 8 + 0.6 * np.sin((hours - 9) / 24 * 2 * np.pi) + rng.normal(0, 0.08, hours.size)
    >>> do[300] -= 1.0
    >>> s = SeasonalRobustZ().score_many(do, hours)
    >>> int(np.argmax(s)), round(float(s[300]), 2), int((s > 0.5).sum())
    (300, 0.98, 1)
    """

    def __init__(
        self,
        n_bins: int = 24,
        level_window: int = 36,
        season_window: float = 36.0,
        season_prior: float = 0.0,
        scale_window: int = 72,
        grace_period: int = 12,
        z0: float = 3.0,
        k: float = 2.0,
        protect: bool = True,
        protect_threshold: float = 0.5,
        min_scale: float = 1e-9,
    ):
        for name, value in (("n_bins", n_bins), ("level_window", level_window), ("season_window", season_window),
                            ("scale_window", scale_window), ("k", k), ("min_scale", min_scale)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if grace_period < 1:
            raise ValueError(f"grace_period must be >= 1, got {grace_period!r}")
        if season_prior < 0:
            raise ValueError(f"season_prior must be >= 0, got {season_prior!r}")
        if not 0.0 <= protect_threshold <= 1.0:
            raise ValueError(f"protect_threshold must be in [0, 1], got {protect_threshold!r}")
        self.n_bins = int(n_bins)
        self.level_window = level_window
        self.season_window = float(season_window)
        self.season_prior = float(season_prior)
        self.scale_window = scale_window
        self.grace_period = int(grace_period)
        self.z0 = z0
        self.k = k
        self.protect = protect
        self.protect_threshold = protect_threshold
        self.min_scale = min_scale
        self.reset()

    def reset(self) -> None:
        """Forget everything learned (for example after the sensor is recalibrated)."""
        self._shape: tuple[int, ...] | None = None
        self._profile = self._weight = self._level = self._abs_dev = self._n_dev = self.n_seen = None

    # --- state ------------------------------------------------------------------------------
    def _ensure_state(self, shape: tuple[int, ...]) -> None:
        if self._shape is None:
            self._shape = shape
            self._profile = np.zeros((self.n_bins, *shape))
            self._weight = np.zeros((self.n_bins, *shape))
            self._level = np.zeros(shape)
            self._abs_dev = np.zeros(shape)
            self._n_dev = np.zeros(shape)
            self.n_seen = np.zeros(shape, dtype=np.int64)
        elif shape != self._shape:
            raise ValueError(f"this detector holds series of shape {self._shape}, got readings of shape {shape}")

    def state(self) -> dict:
        """What it has learned, as plain data (for a Faust table); ``load_state`` restores it."""
        if self._shape is None:
            return {}
        return {"shape": list(self._shape), "profile": self._profile.tolist(), "weight": self._weight.tolist(),
                "level": self._level.tolist(), "abs_dev": self._abs_dev.tolist(), "n_dev": self._n_dev.tolist(),
                "n_seen": self.n_seen.tolist()}

    def load_state(self, state: Mapping) -> "SeasonalRobustZ":
        """Restore what ``state`` returned (an empty state: nothing learned yet).

        >>> a = SeasonalRobustZ(grace_period=2)
        >>> for v in (8.0, 8.1, 7.9): a.learn_one({"value": v, "hour": 10.0})
        >>> b = SeasonalRobustZ(grace_period=2).load_state(a.state())
        >>> b.z_one({"value": 7.0, "hour": 10.0}) == a.z_one({"value": 7.0, "hour": 10.0})
        True
        """
        self.reset()
        if state:
            self._shape = tuple(state["shape"])
            self._profile, self._weight = np.array(state["profile"], float), np.array(state["weight"], float)
            self._level, self._abs_dev = np.array(state["level"], float), np.array(state["abs_dev"], float)
            self._n_dev, self.n_seen = np.array(state["n_dev"], float), np.array(state["n_seen"], np.int64)
        return self

    def _knots(self, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.asarray(hours, dtype=float) % 24.0) / 24.0 * self.n_bins
        low = np.floor(pos)
        k1 = low.astype(np.int64) % self.n_bins
        return k1, (k1 + 1) % self.n_bins, pos - low

    def _residual(self, x: np.ndarray, k1: int, k2: int, w: float) -> tuple[np.ndarray, np.ndarray]:
        """Residual of ``x`` (NaN before the first reading) and its robust z (NaN while warming up)."""
        profile = (1.0 - w) * self._profile[k1] + w * self._profile[k2]
        scale = np.maximum(GAUSS_MAD * self._abs_dev, self.min_scale)
        # an hour of the day not seen yet may be anywhere within the daily cycle seen so far
        unknown = 1.0 - ((1.0 - w) * np.minimum(self._weight[k1], 1.0) + w * np.minimum(self._weight[k2], 1.0))
        if np.any(unknown > 0):
            seen = self._weight > 0
            count = np.maximum(seen.sum(axis=0), 1)
            mean = (self._profile * seen).sum(axis=0) / count
            spread = np.sqrt((((self._profile - mean) ** 2) * seen).sum(axis=0) / count)
            scale = np.hypot(scale, UNSEEN_SPREAD * unknown * spread)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(self.n_seen > 0, x - (self._level + profile), np.nan)
            z = np.where(self.n_seen >= self.grace_period, r / scale, np.nan)
        return r, z

    def _learn(self, x: np.ndarray, r: np.ndarray, k1: int, k2: int, w: float, mask: np.ndarray) -> None:
        mask = mask & np.isfinite(x)
        has_r = mask & np.isfinite(r)
        x0 = np.where(mask, x, 0.0)
        self.n_seen = self.n_seen + mask
        self._n_dev = self._n_dev + has_r
        a_scale = np.maximum(2.0 / (self.scale_window + 1), 1.0 / np.maximum(self._n_dev, 1.0))
        self._abs_dev = self._abs_dev + has_r * a_scale * (np.abs(np.where(has_r, r, 0.0)) - self._abs_dev)
        # the level is a running mean of the readings net of the profile, then an EWMA; the profile
        # knots learn what the level leaves (0 = no daily cycle until one is seen)
        profile = (1.0 - w) * self._profile[k1] + w * self._profile[k2]
        a_level = np.maximum(2.0 / (self.level_window + 1), 1.0 / np.maximum(self.n_seen, 1))
        self._level = self._level + mask * a_level * (x0 - profile - self._level)
        deviation = x0 - self._level
        for knot, weight in ((k1, 1.0 - w), (k2, w)):
            if weight <= 0:
                continue
            self._weight[knot] = self._weight[knot] + mask * weight
            rate = weight / np.minimum(np.maximum(self._weight[knot] + self.season_prior, weight), self.season_window)
            self._profile[knot] = self._profile[knot] + mask * rate * (deviation - self._profile[knot])

    def _allowed(self, z: np.ndarray) -> np.ndarray:
        if not self.protect or self.protect_threshold >= 1.0:
            return np.ones(np.shape(z), dtype=bool)
        z_protect = self.z0 - self.k * math.log1p(-self.protect_threshold)  # the |z| that scores protect_threshold
        with np.errstate(invalid="ignore"):
            return ~(np.abs(z) > z_protect)

    # --- one reading ----------------------------------------------------------------------------
    def z_row(self, values: float | np.ndarray, hour: float) -> np.ndarray:
        """Signed robust z of one reading of each series held (NaN while warming up); no learning."""
        values = np.asarray(values, dtype=float)
        if self._shape is None:
            return np.full(values.shape, np.nan)
        k1, k2, w = self._knots(hour)
        return self._residual(values, int(k1), int(k2), float(w))[1]

    def learn_row(self, values: float | np.ndarray, hour: float, learn: bool | np.ndarray = True) -> None:
        """Learn one reading of each series held, except where ``learn`` is False or it is protected."""
        values = np.asarray(values, dtype=float)
        self._ensure_state(values.shape)
        k1, k2, w = self._knots(hour)
        r, z = self._residual(values, int(k1), int(k2), float(w))
        self._learn(values, r, int(k1), int(k2), float(w), np.asarray(learn, dtype=bool) & self._allowed(z))

    def z_one(self, x: Mapping[str, float]) -> float:
        """Signed robust z of ``x["value"]`` at ``x["hour"]`` (NaN while warming up)."""
        return float(self.z_row(float(x["value"]), x["hour"]))

    def score_one(self, x: Mapping[str, float]) -> float:
        """Score of ``x = {"value": reading, "hour": local hour 0-24}`` in [0, 1]; high = anomalous."""
        return float(score_from_z(self.z_one(x), self.z0, self.k))

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn ``x = {"value": reading, "hour": local hour 0-24}`` (skipped if protected)."""
        self.learn_row(float(x["value"]), x["hour"])

    # --- a whole series -------------------------------------------------------------------------
    def z_many(self, values: np.ndarray, hours: np.ndarray, learn: np.ndarray | None = None) -> np.ndarray:
        """Signed robust z of each reading, test-then-train, learning as it goes (state is updated).

        ``values`` is (T,) or (T, K) (K series sharing the clock); ``hours`` is (T,) local hours;
        ``learn`` (same shape as ``values``, optional) is False where a reading must not be learned
        (a known fault). NaN values are neither scored nor learned. Returns NaN while warming up.
        """
        values = np.asarray(values, dtype=float)
        hours = np.asarray(hours, dtype=float)
        if values.ndim not in (1, 2) or hours.shape != values.shape[:1]:
            raise ValueError(f"values must be (T,) or (T, K) and hours (T,); got {values.shape} and {hours.shape}")
        learn = np.ones(values.shape, dtype=bool) if learn is None else np.asarray(learn, dtype=bool)
        if learn.shape != values.shape:
            raise ValueError(f"learn must have the shape of values {values.shape}, got {learn.shape}")
        self._ensure_state(values.shape[1:])
        k1s, k2s, ws = self._knots(hours)
        out = np.empty(values.shape)
        for t in range(len(values)):  # the state feeds back through `protect`: a loop over time, vectorised over series
            k1, k2, w = int(k1s[t]), int(k2s[t]), float(ws[t])
            r, z = self._residual(values[t], k1, k2, w)
            out[t] = z
            self._learn(values[t], r, k1, k2, w, learn[t] & self._allowed(z))
        return out

    def score_many(self, values: np.ndarray, hours: np.ndarray, learn: np.ndarray | None = None) -> np.ndarray:
        """Scores in [0, 1] of each reading, test-then-train (see ``z_many``); same shape as ``values``."""
        return score_from_z(self.z_many(values, hours, learn), self.z0, self.k)


class StationMultivariate(Detector):
    """Robust Mahalanobis distance of one station's standardised residuals, all parameters at once.

    Each parameter is first standardised by a ``SeasonalRobustZ`` (its daily profile and robust
    scale); the z vector, clipped to ``±clip_z``, is compared with an EWMA mean and covariance of
    the z vectors of normal readings. The squared distance is chi-square with K degrees of freedom
    when the residuals are Gaussian; its tail probability is turned back into an equivalent
    two-sided normal z and scored like ``SeasonalRobustZ``. So a reading where several parameters
    are moderately off together (COD and ammonia up, oxygen down) scores higher than any single
    parameter, and a correlation that breaks (one of two usually linked parameters moves) shows up.

    When it fails: one wildly wrong parameter (a spike) dominates the distance just as it would a
    univariate detector, so use ``models.sensor_faults`` to tell sensor faults from pollution; it
    needs ``grace_period`` readings plus those of the inner detectors before it scores; missing
    parameters count as z = 0 (unremarkable). A reading identical to the previous one in every
    parameter (a frozen instrument) is scored but not learned.

    Parameters
    ----------
    parameters
        Names of the parameters read from ``x`` (the other keys are ignored, except ``hour``).
    grace_period
        Readings (after the inner detectors' own warm-up) before the covariance is used.
    cov_window
        Span of the EWMA mean and covariance of the z vectors, in readings.
    clip_z
        Residual z values are clipped to ``±clip_z`` before the distance (robustness).
    ridge
        Added to the covariance diagonal so it is always invertible.
    z0, k, protect, protect_threshold
        As in ``SeasonalRobustZ``.
    residual_options
        Keyword arguments for the inner ``SeasonalRobustZ`` (which never protects on its own).

    Examples
    --------
    Oxygen down and ammonia up, each about 4 sd: alone each is mild, together they are not.

    >>> rng = np.random.default_rng(3)
    >>> det = StationMultivariate(["do", "nh3n"], grace_period=10, residual_options={"grace_period": 10})
    >>> do_alone = SeasonalRobustZ(grace_period=10)
    >>> for i in range(39):
    ...     x = {"do": 7.0 + rng.normal(0, 0.1), "nh3n": 0.30 + rng.normal(0, 0.02), "hour": 8 + i / 6}
    ...     det.learn_one(x)
    ...     do_alone.learn_one({"value": x["do"], "hour": x["hour"]})
    >>> x = {"do": 6.6, "nh3n": 0.38, "hour": 14.5}
    >>> round(det.score_one(x), 2), round(do_alone.score_one({"value": x["do"], "hour": 14.5}), 2)
    (0.62, 0.26)
    """

    def __init__(
        self,
        parameters: Sequence[str],
        grace_period: int = 36,
        cov_window: int = 288,
        clip_z: float = 8.0,
        ridge: float = 0.1,
        z0: float = 3.0,
        k: float = 2.0,
        protect: bool = True,
        protect_threshold: float = 0.5,
        residual_options: Mapping[str, float] | None = None,
    ):
        if not parameters:
            raise ValueError("parameters must name at least one parameter")
        if grace_period < 1 or cov_window < 1 or not clip_z > 0 or not ridge > 0:
            raise ValueError("grace_period and cov_window must be >= 1, clip_z and ridge > 0")
        self.parameters = tuple(parameters)
        self.grace_period = int(grace_period)
        self.cov_window = cov_window
        self.clip_z = clip_z
        self.ridge = ridge
        self.z0 = z0
        self.k = k
        self.protect = protect
        self.protect_threshold = protect_threshold
        self.residual_options = dict(residual_options or {})
        self._residuals = SeasonalRobustZ(**{**self.residual_options, "protect": False})
        K = len(self.parameters)
        self._mean = np.zeros(K)
        self._cov = np.eye(K)
        self._last_row: np.ndarray | None = None
        self.n_seen = 0

    def _row(self, x: Mapping[str, float]) -> np.ndarray:
        return np.array([float(x.get(p, math.nan)) for p in self.parameters])

    def _z_equivalent(self, z: np.ndarray) -> float:
        """Equivalent normal |z| of the residual vector (NaN while warming up)."""
        if self.n_seen < self.grace_period or np.isnan(z).all():
            return math.nan
        d = np.clip(np.nan_to_num(z, nan=0.0), -self.clip_z, self.clip_z) - self._mean
        d2 = float(d @ np.linalg.solve(self._cov + self.ridge * np.eye(len(d)), d))
        tail = float(stats.chi2.sf(d2, df=len(d)))
        return float(stats.norm.isf(tail / 2)) if tail > 0 else math.inf

    def _step(self, row: np.ndarray, hour: float) -> float:
        """Score one reading of the station, then learn it unless protected or frozen."""
        z = self._residuals.z_row(row, hour)
        z_eq = self._z_equivalent(z)
        score = float(score_from_z(z_eq, self.z0, self.k))
        frozen = self._last_row is not None and np.array_equal(row, self._last_row, equal_nan=True)
        self._last_row = row
        if not frozen and not (self.protect and score > self.protect_threshold):
            self._residuals.learn_row(row, hour)
            if np.isfinite(z).any():
                self.n_seen += 1
                a = max(2.0 / (self.cov_window + 1), 1.0 / self.n_seen)
                d = np.clip(np.nan_to_num(z, nan=0.0), -self.clip_z, self.clip_z) - self._mean
                self._mean = self._mean + a * d
                self._cov = (1 - a) * (self._cov + a * np.outer(d, d))
        return z_eq

    def score_one(self, x: Mapping[str, float]) -> float:
        """Score of ``x = {parameter: reading, ..., "hour": local hour}`` in [0, 1]; high = anomalous."""
        return float(score_from_z(self._z_equivalent(self._residuals.z_row(self._row(x), x["hour"])), self.z0, self.k))

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn one reading of the station (skipped if protected, or identical to the previous one)."""
        self._step(self._row(x), x["hour"])

    def score_many(self, values: Mapping[str, np.ndarray], hours: np.ndarray) -> np.ndarray:
        """Scores (T,) of a station's series ``{parameter: (T,) array}``, test-then-train (state updated)."""
        hours = np.asarray(hours, dtype=float)
        X = np.column_stack([np.asarray(values[p], dtype=float) if p in values else np.full(len(hours), np.nan)
                             for p in self.parameters])
        if X.shape[0] != len(hours):
            raise ValueError(f"every series must have one value per hour: {X.shape[0]} != {len(hours)}")
        z_eq = np.array([self._step(X[t], float(hours[t])) for t in range(len(hours))])
        return score_from_z(z_eq, self.z0, self.k)
