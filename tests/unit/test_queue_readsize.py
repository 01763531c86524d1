"""The consumer's hold limit follows the backlog: while reads come back full it grows with the rate messages are
finished, up to a cap, and a read that comes back short drops it back to the base."""

from __future__ import annotations

from howdah.queue._readsize import ReadSize


def test_without_a_backlog_the_limit_is_the_larger_of_batch_size_and_concurrency() -> None:
    size = ReadSize(base=10, cap=100, read_ahead=0.05)
    assert size.limit() == 10
    size.concurrency = 16
    assert size.limit() == 16


def test_full_reads_grow_the_limit_to_what_is_finished_in_read_ahead_seconds() -> None:
    size = ReadSize(base=10, cap=100, read_ahead=0.05)
    size.after_read(now=1.000, finished=0, asked=10, got=10)
    assert size.limit() == 10  # one full read says nothing about the rate yet
    size.after_read(now=1.010, finished=10, asked=10, got=10)  # 1,000 finished per second
    assert size.limit() == 50
    size.after_read(now=1.020, finished=60, asked=50, got=50)  # 5,000 a second: (1,000 + 5,000) / 2 → 150, capped
    assert size.limit() == 100


def test_a_slow_handler_never_holds_more_than_it_finishes_in_read_ahead() -> None:
    size = ReadSize(base=10, cap=100, read_ahead=0.05)
    size.after_read(now=0.0, finished=0, asked=10, got=10)
    size.after_read(now=0.05, finished=10, asked=10, got=10)  # 200 a second: 10 in 50 ms
    assert size.limit() == 10


def test_a_short_read_drops_the_limit_back_to_the_base() -> None:
    size = ReadSize(base=10, cap=100, read_ahead=0.05)
    size.after_read(now=0.0, finished=0, asked=10, got=10)
    size.after_read(now=0.001, finished=10, asked=10, got=10)
    assert size.limit() == 100
    size.after_read(now=0.002, finished=110, asked=100, got=3)
    assert size.limit() == 10
    size.after_read(now=0.003, finished=113, asked=10, got=10)  # a new backlog measures its rate afresh
    assert size.limit() == 10


def test_read_ahead_zero_keeps_the_base() -> None:
    size = ReadSize(base=1, cap=100, read_ahead=0.0, concurrency=16)
    for i in range(5):
        size.after_read(now=i * 0.001, finished=i * 16, asked=16, got=16)
    assert size.limit() == 16
