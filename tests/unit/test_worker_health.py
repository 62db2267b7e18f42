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


def test_a_consumer_stuck_ahead_of_what_it_read_is_reset_once_neither_has_moved():
    # seen after Tansu came back empty: the consumer at 6 = the log's end with nothing read, the records it
    # fetched dropped by Faust at the generation change; a minute of nothing read
    for position, read in [(79, None), (6, None), (40, 12)]:
        first = health.stuck_ahead(position, read, None)
        assert (first, health.stuck_ahead(position, read, (position, read))) == ("watch", "reset")
    # a consumer that moves on (fetching and reading what exists) is watched, never reset
    assert health.stuck_ahead(12, 3, (9, 3)) == "watch" and health.stuck_ahead(12, 10, (12, 3)) == "watch"
    # right after what it read: fine, however far that is past the log's reported end
    assert health.stuck_ahead(9, 8, (9, 8)) == "ok" and health.stuck_ahead(0, None, (0, None)) == "ok"
