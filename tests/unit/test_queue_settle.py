"""The pure parts of the consumer's batched settling and its options."""

from __future__ import annotations

import pytest

from howdah.queue import ConsumeOptions, InvalidArgument, _ops
from howdah.queue._settle import Pending


def test_pending_takes_everything_and_puts_a_failed_batch_back_in_front() -> None:
    pending = Pending()
    pending.done += [1, 2]
    pending.released.append((3, 60, "boom"))
    assert len(pending) == 3
    taken = pending.take()
    assert (taken.done, taken.released, len(pending)) == ([1, 2], [(3, 60, "boom")], 0)
    pending.done.append(4)
    pending.put_back(taken)  # the write failed: written again, first, with the next statement
    assert (pending.done, pending.released) == ([1, 2, 4], [(3, 60, "boom")])


def test_settle_options_have_batching_defaults_and_are_checked() -> None:
    opts = ConsumeOptions.build("q")
    assert (opts.settle_batch_size, opts.settle_linger, opts.read_interval) == (100, 0.005, 0.002)
    assert ConsumeOptions.build("q", settle_linger=0).settle_linger == 0  # settle each message at once
    for bad in ({"settle_batch_size": 0}, {"settle_batch_size": 1.5}, {"settle_linger": -1}, {"read_interval": -0.1}):
        with pytest.raises(InvalidArgument):
            ConsumeOptions.build("q", **bad)


def test_settle_and_read_passes_ids_delays_and_errors_as_parallel_arrays() -> None:
    op = _ops.settle_and_read("Orders", [1, 2], True, [(3, 60, "boom"), (4, 0, None)], 30, 5)
    assert op.params == ("Orders", [1, 2], True, [3, 4], [60, 0], ["boom", None], 30, 5)
    assert "Orders" not in op.query and op.queue == "Orders"
    with pytest.raises(InvalidArgument):
        _ops.settle_and_read("q", [1], False, [(3, -1, None)], 30, 5)
    with pytest.raises(InvalidArgument):
        _ops.settle_and_read("q", ["1"], False, [], 30, 5)  # type: ignore[list-item]
