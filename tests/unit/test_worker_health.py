"""The worker's health check, without a broker: which partitions a broker lost, the lag, and the
read offsets that skip nothing while a lost partition is read again."""

from __future__ import annotations

import doctest

from faust.types import TP

from agents import health


def test_the_doctests_hold():
    assert doctest.testmod(health).failed == 0


def test_a_partition_is_lost_when_its_log_is_shorter_than_it_was_and_the_lag_counts_what_waits():
    a, b, c, d = (TP("readings.water", k) for k in range(4))
    highwaters = {a: 42, b: 3, c: 0, d: 7}
    assert health.lost_partitions(highwaters, {a: 40, b: 41, c: 28}) == [b, c]
    # Tansu's end of a log can be below the last offset read (the last batch's first offset + 1): not lost
    assert health.lost_partitions({a: 101}, {a: 101}) == []
    assert health.lag_by_topic({a: 41, b: 41, c: None, d: None}, highwaters) == {"readings.water": 0 + 0 + 0 + 7}


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
