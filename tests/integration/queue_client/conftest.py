"""Fixtures of the queue client tests: sync and async clients on the module's database, and a fresh queue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from howdah.queue import AsyncQueue, Queue


@pytest.fixture(scope="module")
def sync_queue(db_url: str) -> Iterator[Queue]:
    with Queue(db_url, pool_size=4) as queue:
        yield queue


@pytest.fixture
async def async_queue(db_url: str) -> AsyncIterator[AsyncQueue]:
    async with AsyncQueue(db_url, pool_size=4) as queue:
        yield queue


@pytest.fixture(params=["sync", "async"])
def client(request: pytest.FixtureRequest) -> Queue | AsyncQueue:
    """Each test using it runs twice: with ``Queue`` and with ``AsyncQueue`` (drive calls through ``maybe``)."""
    name = "sync_queue" if request.param == "sync" else "async_queue"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def queue(sync_queue: Queue, queue_name: str) -> str:
    """A freshly created, empty queue (its name)."""
    sync_queue.create(queue_name)
    return queue_name
