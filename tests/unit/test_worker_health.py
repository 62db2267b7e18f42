"""The worker's health check, without a broker: which partitions a broker lost, the lag, and the
read offsets that skip nothing while a lost partition is read again."""

from __future__ import annotations

import doctest

from faust.types import TP

from agents import health


def test_the_doctests_hold():
    assert doctest.testmod(health).failed == 0


def test_a_partition_is_lost_when_its_log_ends_before_what_was_read_or_where_the_consumer_fetches():
    a, b, c, d = (TP("readings.water", k) for k in range(4))
    read = {a: 41, b: 41, c: None, d: None}
    positions = {a: 42, b: 42, c: 90, d: 0}
    highwaters = {a: 42, b: 3, c: 28, d: 0}
    assert health.lost_partitions(read, positions, highwaters) == [b, c]
    assert health.lag_by_topic(read, highwaters) == {"readings.water": 0 + 0 + 28 + 0}


def test_read_offsets_skip_nothing_for_a_partition_being_read_again():
    offsets = health.ReadOffsets()
    a, b = TP("readings.water", 0), TP("readings.water", 1)
    offsets[a], offsets[b] = 22, 7
    offsets.rereading[a] = 22
    get = offsets.__getitem__  # as Faust's fetch loop binds it
    assert get(a) is None and get(b) == 7 and offsets.get(a) == 22  # Faust skips below get(); the check reads get()
    assert get(TP("alerts", 0)) is None
    del offsets.rereading[a]
    assert get(a) == 22
