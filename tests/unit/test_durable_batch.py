"""Natural batching (howdah.durable._batch): what goes out together, and who gets which answer."""

from __future__ import annotations

import asyncio

import pytest

from howdah.durable._batch import Batcher


class Recorder:
    """A ``send`` that records its batches; answers ``item * 10``, or the item's own error for negative items.
    While ``hold`` is clear, a batch waits before answering."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.fail_next: Exception | None = None

    async def send(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.hold.wait()
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_a_lone_item_goes_out_at_once_alone() -> None:
    sent = Recorder()
    batcher = Batcher(sent.send)
    assert await batcher.submit(3) == 30
    assert sent.batches == [[3]]


async def test_items_that_wait_while_a_batch_is_out_go_together_next() -> None:
    sent = Recorder()
    sent.hold.clear()
    batcher = Batcher(sent.send)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)  # let the first batch go out (it waits on hold)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    assert sent.batches == [[1]]
    sent.hold.set()
    assert await asyncio.wait_for(asyncio.gather(first, *later), timeout=5) == [10, 20, 30, 40]
    assert sent.batches == [[1], [2, 3, 4]]


async def test_an_items_own_error_reaches_only_its_caller() -> None:
    batcher = Batcher(Recorder().send)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in (1, -2, 3)), return_exceptions=True)
    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad -2"


async def test_a_failed_batch_fails_its_items_and_the_next_batch_still_goes() -> None:
    sent = Recorder()
    sent.fail_next = ConnectionError("gone")
    batcher = Batcher(sent.send)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in (1, 2)), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert await batcher.submit(5) == 50


@pytest.mark.parametrize("count", [1, 3, 10])
async def test_no_batch_is_larger_than_max_batch(count: int) -> None:
    sent = Recorder()
    batcher = Batcher(sent.send, max_batch=3)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(count))) == [i * 10 for i in range(count)]
    assert all(len(batch) <= 3 for batch in sent.batches)
    assert sorted(i for batch in sent.batches for i in batch) == list(range(count))


async def test_a_send_answering_the_wrong_number_of_results_fails_the_batch() -> None:
    async def short(items: list[int]) -> list[int | BaseException]:
        return items[:-1]

    batcher = Batcher(short)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in (1, 2)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
