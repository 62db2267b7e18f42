"""A batch of readings of many sensors (rows) in rounds: array state steps a round at once, and a
round holds each row at most once, so a row's readings are stepped in their order."""

from __future__ import annotations

import numpy as np


def rounds(rows: np.ndarray) -> list[np.ndarray | slice]:
    """The batch's positions in rounds: the k-th reading of a row goes in round k, so a round holds
    each row at most once and a row's readings keep their order.

    >>> [np.arange(5)[r].tolist() for r in rounds(np.array([3, 1, 3, 3, 2]))]
    [[0, 1, 4], [2], [3]]
    """
    rows = np.asarray(rows, np.int64)
    n = len(rows)
    if n == 0:
        return []
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.r_[0, np.flatnonzero(sorted_rows[1:] != sorted_rows[:-1]) + 1]
    if len(starts) == n:
        return [slice(None)]  # every row once: one round
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    return [np.flatnonzero(rank == k) for k in range(int(rank.max()) + 1)]
