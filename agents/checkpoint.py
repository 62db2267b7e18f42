"""Per-key agent state kept as live objects in memory and checkpointed to a Faust table.

Writing a detector's whole state to its table (and so to the changelog) with every reading costs
more than the detector itself, and a replay sends a sensor many readings a second. Here the live
objects stay in memory; each key's state is written at most every ``every_s`` seconds. Live, a
sensor reports every few minutes, so every reading is still written. In a replay faster than
``every_s`` per reading, a crash loses what a sensor learned since its last checkpoint (Faust
commits offsets every 2.8 s, so those readings are not read again): a baseline that learns over
days loses a few seconds of learning, and a persistence counter may miss a few readings, delaying
an alert by as many. A change that raised or cleared an alert is written at once. The cache is
dropped whenever partitions move, so a key always restarts from its table on the worker that owns
it (``on_forget`` drops what the live states hold, such as a bank's rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

import faust

T = TypeVar("T")


class CheckpointedTable(Generic[T]):
    def __init__(
        self,
        app: faust.App,
        table: faust.Table,
        load: Callable[..., T],
        dump: Callable[[str, T], object],
        every_s: float,
        on_forget: Callable[[], None] | None = None,
    ):
        """``load(key, checkpoint or None, *args)`` makes a live state, ``dump(key, live)`` its checkpoint."""
        self.table, self.load, self.dump, self.every_s, self.on_forget = table, load, dump, every_s, on_forget
        self._live: dict[str, T] = {}
        self._written_s: dict[str, float] = {}
        app.on_partitions_revoked.connect(self._forget)
        app.on_partitions_assigned.connect(self._forget)

    def _forget(self, *args, **kwargs) -> None:  # a signal: (sender, partitions, signal=...)
        self._live.clear()
        self._written_s.clear()
        if self.on_forget is not None:
            self.on_forget()

    def get(self, key: str, *args) -> T:
        """The key's live state (restored from the table, or new when the table has none; ``args`` go to ``load``)."""
        if key not in self._live:
            self._live[key] = self.load(key, self.table.get(key), *args)
        return self._live[key]

    def changed(self, key: str, now_s: float | None = None, force: bool = False) -> None:
        """The key's live state changed: checkpoint it if its last checkpoint is ``every_s`` old, or
        at once when ``force`` (a change that must survive a crash, such as an alert raised)."""
        now_s = time.monotonic() if now_s is None else now_s
        if force or now_s - self._written_s.get(key, -1e18) >= self.every_s:
            self.table[key] = self.dump(key, self._live[key])
            self._written_s[key] = now_s
