"""Where a client gets its connections: a DSN, a caller's pool, or a caller's connection and transaction."""

from __future__ import annotations

import inspect
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

import howdah.queue
from howdah.queue import AsyncQueue, InvalidArgument, Queue, _ops

from ._helpers import queue_rows


class Rollback(Exception):
    """Raised inside a caller's transaction to roll it back."""


# ------------------------------------------------------------------------------- bring your own transaction
@pytest.mark.parametrize("how", ["constructor", "bind"])
def test_sync_send_rolls_back_with_the_callers_transaction(
    how: str, db_url: str, sync_queue: Queue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url) as mine:
        with pytest.raises(Rollback), mine.transaction():
            q = Queue(mine) if how == "constructor" else sync_queue.bind(mine)
            q.send(queue, {"state": "rolled back"})
            q.send_batch(queue, [1, 2])
            assert len(q.read(queue, qty=10, vt=0)) == 3  # the caller's transaction sees its own messages
            assert queue_rows(conn, queue) == []  # nobody else does yet
            raise Rollback
        assert queue_rows(conn, queue) == []
        with mine.transaction():
            q = Queue(mine) if how == "constructor" else sync_queue.bind(mine)
            msg_id = q.send(queue, {"state": "committed"})
            assert queue_rows(conn, queue) == []
        assert [(row[0], row[3]) for row in queue_rows(conn, queue)] == [(msg_id, {"state": "committed"})]


@pytest.mark.parametrize("how", ["constructor", "bind"])
async def test_async_send_rolls_back_with_the_callers_transaction(
    how: str, db_url: str, async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as mine:
        with pytest.raises(Rollback):
            async with mine.transaction():
                q = AsyncQueue(mine) if how == "constructor" else async_queue.bind(mine)
                await q.send(queue, {"state": "rolled back"})
                assert queue_rows(conn, queue) == []
                raise Rollback
        assert queue_rows(conn, queue) == []
        async with mine.transaction():
            q = AsyncQueue(mine) if how == "constructor" else async_queue.bind(mine)
            msg_id = await q.send(queue, {"state": "committed"})
        assert [(row[0], row[3]) for row in queue_rows(conn, queue)] == [(msg_id, {"state": "committed"})]


def test_a_read_rolled_back_leaves_the_message_visible(db_url: str, sync_queue: Queue, queue: str) -> None:
    msg_id = sync_queue.send(queue, "work")
    with psycopg.connect(db_url) as mine, pytest.raises(Rollback), mine.transaction():
        [message] = Queue(mine).read(queue, vt=300)
        assert message.msg_id == msg_id
        raise Rollback
    [again] = sync_queue.read(queue, vt=300)
    assert (again.msg_id, again.read_ct) == (msg_id, 1)  # the rolled-back read never happened


def test_queue_work_refuses_a_single_connection(db_url: str, queue: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as mine, pytest.raises(InvalidArgument):
        Queue(mine).work(queue, lambda m: None, handle_signals=False)


# ------------------------------------------------------------------------------------------------- pools
def test_sync_client_on_a_callers_pool(db_url: str, queue: str) -> None:
    with ConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        with Queue(pool) as q:
            msg_id = q.send(queue, "pooled")
            [message] = q.read(queue)
            assert message.msg_id == msg_id
        # Closing the client leaves the caller's pool alone.
        assert not pool.closed
        with pool.connection() as c:
            assert c.execute("SELECT 1").fetchone() == (1,)


async def test_async_client_on_a_callers_pool(db_url: str, queue: str) -> None:
    async with AsyncConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        async with AsyncQueue(pool) as q:
            msg_id = await q.send(queue, "pooled")
            [message] = await q.read(queue)
            assert message.msg_id == msg_id
        assert not pool.closed


def test_a_non_autocommit_pool_still_commits(db_url: str, queue: str, conn: psycopg.Connection[Any]) -> None:
    with ConnectionPool(db_url, min_size=1, max_size=1) as pool:
        msg_id = Queue(pool).send(queue, "committed on return")
    assert [row[0] for row in queue_rows(conn, queue)] == [msg_id]


@pytest.mark.parametrize("cls", [Queue, AsyncQueue])
@pytest.mark.parametrize("source", [None, 42, b"postgresql://", object()], ids=repr)
def test_unusable_sources_are_refused(cls: type, source: object) -> None:
    with pytest.raises(InvalidArgument):
        cls(source)


def test_a_sync_connection_is_not_an_async_source(db_url: str) -> None:
    with psycopg.connect(db_url) as mine, pytest.raises(InvalidArgument):
        AsyncQueue(mine)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ API in step
def _public(cls: type) -> dict[str, Any]:
    return {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_")}


def test_queue_and_async_queue_offer_the_same_operations() -> None:
    sync_api, async_api = _public(Queue), _public(AsyncQueue)
    only_async = {"consume", "open"}  # streaming and lazy opening exist only in the async client
    assert set(sync_api) == set(async_api) - only_async
    plumbing = {"conninfo", "bind", "close", "execute", "work"}  # same names; shapes differ by design
    for name in sorted(set(sync_api) - plumbing):
        sync_sig, async_sig = inspect.signature(sync_api[name]), inspect.signature(async_api[name])
        assert sync_sig.parameters == async_sig.parameters, name
        assert not inspect.iscoroutinefunction(sync_api[name]), name
        assert inspect.iscoroutinefunction(async_api[name]), name
    for name in ("close", "execute", "work"):
        assert inspect.iscoroutinefunction(async_api[name]) and not inspect.iscoroutinefunction(sync_api[name])


def test_every_operation_builder_is_a_method() -> None:
    consumer_internals = {"release", "dead_letter", "notify_enabled", "notify_throttle", "settle_and_read"}
    builders = {
        name
        for name, fn in vars(_ops).items()
        if inspect.isfunction(fn)
        and not name.startswith("_")
        and fn.__module__ == _ops.__name__
        and "Op[" in str(inspect.signature(fn).return_annotation)
    }
    assert builders, "no operation builders found in _ops"
    for name in sorted(builders - consumer_internals):
        assert getattr(Queue, name).__wrapped__ is getattr(_ops, name), name
        assert getattr(AsyncQueue, name).__wrapped__ is getattr(_ops, name), name


def test_dunder_all_is_honest() -> None:
    exported = howdah.queue.__all__
    assert len(exported) == len(set(exported))
    for name in exported:
        assert hasattr(howdah.queue, name), name
    public = {name for name in dir(howdah.queue) if not name.startswith("_")}
    assert public == set(exported), "public names missing from (or extra in) __all__"
    # Every named error and every result type a caller can meet is exported.
    from howdah.queue import _errors, _types

    for module in (_errors, _types):
        for name, obj in vars(module).items():
            if isinstance(obj, type) and obj.__module__ == module.__name__ and not name.startswith("_"):
                assert name in exported, name
