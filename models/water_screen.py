"""The water screen: one water-quality station's parameters, reading by reading, as many stations at once.

Every parameter of a station is compared with what it normally reads: a daily profile (24 knots,
linear between them) on top of two levels, a fast one that follows the day's wander and a slow one
that a broad plume cannot drag along. The residual over a robust scale (an EWMA of absolute
residuals, never below the sensor's resolution: real sensors repeat quantised values) is the
parameter's z. A z past ``z_outlier`` in the parameter's pollution direction (up, down or both;
"none" for context such as flow) is an outlier.

Station events come from the evidence across parameters over a short window, the job CANARY's
binomial event discriminator does: each outlier adds its excess over ``z_outlier`` (at most
``z_cap`` from one parameter on one reading), summed across the station's parameters, and the sum
decays with time constant ``window_s``, or one of the sensor's cadences if that is longer (so any
cadence and missing samples work, and a 10-minute station's readings still add up). An event is
raised when the evidence reaches ``raise_evidence``; it clears when every parameter has been back
for ``clear_s``. As ``z_cap`` < ``raise_evidence``, one reading of one parameter never raises an
event alone: it takes parameters together, or one parameter off on readings close in time.

Learning never stops: during an event, and for outlying readings, it goes on at ``alarm_weight``
(so a plume is not learned as normal within the event), and a parameter that has stayed outlying
for ``accept_after_s`` is taken as its new normal (its levels jump to its recent mean), so a lasting
shift (a recalibration, a new source of water) is learned in that time and its alarm clears.

Sensor faults are labelled per reading: ``stuck`` (every parameter read repeats the previous reading
exactly for ``stuck_s``), ``spike`` (one parameter far off both its neighbours on one reading:
labelled on the next reading), ``dropout`` (a gap longer than ``dropout_factor`` x the sensor's
cadence). A sensor silent for ``restart_after_s`` (or a reading that far before its last: another
time line, as a replay) starts learning afresh. Stuck readings are neither scored nor learned.

``WaterScreen.step_many`` takes a batch of readings of many sensors (rows) and runs it in rounds,
each round holding a row at most once, in arrival order; ``step_one`` is ``step_many`` with one
reading: the same code path. Times are seconds (epoch), never reading counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.batch_rounds import rounds
from models.water_screen_round import Columns, step_round
from models.water_screen_settings import ParameterSpec, ScreenSettings
from models.water_screen_state import ROW_ARRAYS, ScreenState
from models.water_verdicts import Verdict, Verdicts


class WaterScreen:
    """Many water stations (sensors) screened at once; see the module's docstring.

    >>> specs = [ParameterSpec("do", "down", 0.01), ParameterSpec("nh3n", "up", 0.01), ParameterSpec("cod", "up", 0.1)]
    >>> screen = WaterScreen(specs, ScreenSettings(window_s=1800))
    >>> rng = np.random.default_rng(3)
    >>> changes = []
    >>> for i in range(6 * 24 * 2 + 12):  # two quiet days at 10-minute readings, then DO down, NH3-N and COD up
    ...     ts = i * 600.0
    ...     bump = 1.0 if 6 * 24 * 2 <= i < 6 * 24 * 2 + 6 else 0.0
    ...     hour = (ts / 3600) % 24
    ...     v = {"do": 8 + 0.5 * np.sin(hour / 24 * 2 * np.pi) - 2 * bump + rng.normal(0, 0.08),
    ...          "nh3n": 0.3 + 1.0 * bump + rng.normal(0, 0.02), "cod": 12 + 6 * bump + rng.normal(0, 0.6)}
    ...     changes.append(screen.step_one("s1", v, ts).change)
    >>> [(i - 6 * 24 * 2, c) for i, c in enumerate(changes) if c]
    [(0, 'raised'), (4, 'cleared')]
    """

    def __init__(
        self, parameters: Sequence[ParameterSpec], settings: ScreenSettings = ScreenSettings(), capacity: int = 64
    ):
        self.specs = list(parameters)
        self.parameters = [p.name for p in self.specs]
        self.column = {p: j for j, p in enumerate(self.parameters)}
        self.settings = settings
        self.traits = Columns.of(self.specs)
        self.rows: dict[str, int] = {}
        self._state = ScreenState(capacity, len(self.specs))

    # --- rows -------------------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def add(self, key: str, parameters: Sequence[str]) -> int:
        """A new row for a sensor that screens ``parameters`` (those of its first reading)."""
        if len(self.rows) == self._state.rows:
            self._state = self._state.grown(2 * self._state.rows)
        i = self.rows[key] = len(self.rows)
        self._state.own[i] = [p in set(parameters) for p in self.parameters]
        return i

    def row(self, key: str, parameters: Sequence[str]) -> int:
        return self.rows[key] if key in self.rows else self.add(key, parameters)

    def forget(self) -> None:
        """Drop every row (partitions moved: rows are loaded again from their checkpoints)."""
        self.rows = {}
        self._state = ScreenState(self._state.rows, len(self.specs))

    def _row_views(self, i: int):
        """Each state array's view of row ``i`` (levels and scales: both levels), by name."""
        s = self._state
        for name in ROW_ARRAYS[1:]:
            a = getattr(s, name)
            yield name, (a[:, i] if name in ("level", "abs_dev") else a[i] if a.ndim > 1 else a[i : i + 1])

    def state(self, key: str) -> dict:
        """The row as plain data over its own parameters (for a Faust table); ``load`` restores it."""
        i = self.rows[key]
        cols = np.flatnonzero(self._state.own[i])
        out: dict = {"parameters": [self.parameters[j] for j in cols]}
        for name, view in self._row_views(i):
            v = view[..., cols] if view.shape[-1] == len(self.parameters) else view if view.ndim > 1 else view[0]
            out[name] = np.where(np.isnan(v), None, v).tolist() if v.dtype.kind == "f" else v.tolist()
        return out

    def load(self, key: str, state: Mapping | None, parameters: Sequence[str]) -> int:
        """A row from ``state`` (None: a new sensor that screens ``parameters``)."""
        i = self.add(key, state["parameters"] if state else parameters)
        if state:
            cols = np.flatnonzero(self._state.own[i])
            for name, view in self._row_views(i):
                v = np.array(state[name], dtype=float if view.dtype.kind == "f" else view.dtype)
                if view.shape[-1] == len(self.parameters):
                    view[..., cols] = v
                else:
                    view[...] = v
        return i

    # --- readings ---------------------------------------------------------------------------------
    def step_one(self, key: str, values: Mapping[str, float], ts_s: float) -> Verdict:
        """One reading ``{parameter: value}`` of sensor ``key`` at ``ts_s`` (epoch seconds)."""
        x = np.full((1, len(self.parameters)), np.nan)
        for p, v in values.items():
            x[0, self.column[p]] = v
        i = self.row(key, sorted(values))
        return Verdict.of(self.step_many(np.array([i]), x, np.array([float(ts_s)])), 0, self.parameters)

    def step_many(self, rows: np.ndarray, values: np.ndarray, ts_s: np.ndarray) -> Verdicts:
        """Step ``rows`` (n,) with ``values`` (n, P; NaN = not in the reading) at ``ts_s`` (n,)."""
        rows, values, ts_s = np.asarray(rows, np.int64), np.asarray(values, float), np.asarray(ts_s, float)
        n, P = len(rows), len(self.parameters)
        out = Verdicts(
            np.zeros(n, np.int8),
            np.zeros(n, bool),
            np.zeros(n),
            np.full((n, P), np.nan),
            np.zeros((n, P), bool),
            np.full(n, -1),
            np.zeros(n, np.int8),
            np.full(n, -1),
        )
        if not n:
            return out
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN marks what is unknown
            for at in rounds(rows):
                step_round(self._state, self.settings, self.traits, rows[at], values[at], ts_s[at], out, at)
        return out
