"""Several consumer processes on one queue: one leader reacts to the queue's notifications, the others help only
when it cannot keep up, and no wake-up is lost when it leaves.

Each "process" here is an event loop in its own thread with its own ``AsyncQueue``, so it has its own listener
and LISTEN connection, exactly as a process would (the test of a leader killed with SIGKILL, which needs a real
process, is in ``test_reliability.py``). Every member polls only once a minute (``poll_interval=60``), so what
is delivered within a test's few seconds was delivered by a wake-up.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from howdah.queue import AsyncQueue, Consumer, Message, Queue
from howdah.queue._listener import Listener

from ._helpers import scalar, wait_until

T = TypeVar("T")
NEVER_POLL: dict[str, Any] = {"maintenance_interval": 3600, "poll_interval": 60}


class Member:
    """One consumer process: its own event loop (in a thread), client, listener and ``work()`` loop."""

    def __init__(self, name: str, db_url: str, queue: str, handled: list[tuple[str, int]], **options: Any) -> None:
        self.name, self.db_url, self.queue, self.handled = name, db_url, queue, handled
        self.concurrency = options.pop("concurrency", 1)
        self.options = {**NEVER_POLL, **options}
        self.blocked = False  # while True, handlers wait for `release` (a saturated process)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"member-{name}", daemon=True)
        self.thread.start()
        self.consumer: Consumer | None = None
        self.channel = ""
        self._aqueue: AsyncQueue | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._release: asyncio.Event | None = None

    def call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    def ask(self, what: Callable[[], T]) -> T:
        """Evaluate ``what`` on the member's loop (its listener's state is only touched there)."""

        async def run() -> T:
            return what()

        return self.call(run)

    # -------------------------------------------------------------------------------- lifecycle
    def start(self) -> Member:
        self.call(self._start)
        wait_until(lambda: self.ask(self._idle), timeout=15, what=f"{self.name} started and waiting")
        return self

    async def _start(self) -> None:
        self._aqueue = AsyncQueue(self.db_url, pool_size=2)
        await self._aqueue.open()
        self.channel = await self._aqueue.listen_channel(self.queue)
        self.consumer = self._aqueue.consume(self.queue, **self.options)
        self._stop, self._release = asyncio.Event(), asyncio.Event()
        run = self.consumer.run(self._handle, concurrency=self.concurrency, stop=self._stop, handle_signals=False)
        self._task = asyncio.create_task(run)

    async def _handle(self, message: Message) -> None:
        if self.blocked:
            assert self._release is not None
            await asyncio.wait_for(self._release.wait(), 30)
        self.handled.append((self.name, message.msg_id))

    def stop(self) -> None:
        if self._task is not None:
            self.call(self._stop_now)
            self._task = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _stop_now(self) -> None:
        assert self._stop is not None and self._release is not None and self._task is not None
        self._stop.set()
        self._release.set()
        await asyncio.wait_for(self._task, 20)
        if self._aqueue is not None:
            await self._aqueue.close()

    def release(self) -> None:
        self.blocked = False
        assert self._release is not None
        self.loop.call_soon_threadsafe(self._release.set)

    # --------------------------------------------------------------------------------- state
    def _listener(self) -> Listener:
        assert self.consumer is not None and self.consumer._listener is not None
        return self.consumer._listener

    def _idle(self) -> bool:
        started = self.consumer is not None and self.consumer._listener is not None
        if not started or not self._listener().stats(self.channel).get("settled"):
            return False  # a new leader wakes its consumers once more (the lead is taken before that)
        return self._listener().waiting(self.channel) == 1

    def idle(self) -> bool:
        return self.ask(self._idle)

    def leads(self) -> bool:
        return bool(self.stats().get("leader"))

    def helps(self) -> int:
        return int(self.stats().get("helps", 0))

    def stats(self) -> dict[str, Any]:
        return self.ask(lambda: self._listener().stats(self.channel))

    @property
    def reads(self) -> tuple[int, int]:
        """(reads, empty reads) so far."""
        assert self.consumer is not None
        return self.ask(lambda: (self.consumer.reads, self.consumer.empty_reads))  # type: ignore[union-attr]


class Herd:
    def __init__(self, db_url: str, queue: str) -> None:
        self.db_url, self.queue = db_url, queue
        self.handled: list[tuple[str, int]] = []
        self.members: list[Member] = []

    def add(self, name: str, **options: Any) -> Member:
        member = Member(name, self.db_url, self.queue, self.handled, **options)
        self.members.append(member)
        return member.start()

    def leader(self) -> Member:
        leaders = wait_until(lambda: [m for m in self.members if m.leads()], timeout=15, what="a leader")
        assert len(leaders) == 1, [m.name for m in leaders]
        return leaders[0]

    def reads(self) -> dict[str, tuple[int, int]]:
        return {m.name: m.reads for m in self.members}

    def helps(self) -> int:
        """Times a process found itself behind so far: on a slow machine a leader may ask for help when a read of
        its own is late (counted when it decides, as its call may be answered before its NOTIFY returns)."""
        return sum(int(m.stats().get("wants", 0)) for m in self.members)

    def handled_ids(self) -> list[int]:
        return [msg_id for _, msg_id in self.handled]

    def close(self) -> None:
        for member in self.members:
            member.stop()


@pytest.fixture
def herd(db_url: str, queue: str) -> Iterator[Herd]:
    group = Herd(db_url, queue)
    try:
        yield group
    finally:
        group.close()


def read_deltas(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {name: (after[name][0] - before[name][0], after[name][1] - before[name][1]) for name in before}


def all_waiting(herd: Herd) -> bool:
    return all(m.idle() for m in herd.members)


# ------------------------------------------------------------------------------------------------- wake-ups
def test_one_process_leads_a_queue(herd: Herd) -> None:
    for i in range(4):
        herd.add(f"p{i}")
    herd.leader()  # exactly one of the four


def test_a_message_wakes_exactly_one_consumer_across_processes(herd: Herd, sync_queue: Queue, queue: str) -> None:
    for i in range(4):
        herd.add(f"p{i}")
    leader = herd.leader()
    wait_until(lambda: all_waiting(herd), what="all four waiting")
    before, helps = herd.reads(), herd.helps()
    msg_id = sync_queue.send(queue, "one")
    wait_until(lambda: herd.handled_ids() == [msg_id], what="the message handled")
    wait_until(lambda: all_waiting(herd), what="all four waiting again")
    time.sleep(0.3)  # a herd, if any, would have read by now
    deltas = read_deltas(before, herd.reads())
    if herd.helps() == helps:  # (unless the leader's read was so late that it asked the others for help)
        assert sum(d[0] for d in deltas.values()) == 1, deltas  # one read in all four processes
        assert sum(d[1] for d in deltas.values()) == 0, deltas  # and it found the message
    assert herd.handled == [(leader.name, msg_id)]


def test_a_stream_of_single_sends_to_four_processes_costs_little_more_than_the_sends(
    pg_cluster: Any, template_db: str
) -> None:
    """Messages sent one at a time, back to back, to four consumer processes: the database commits barely more
    transactions than the sends themselves. Before: every process read on every notification, and every one of
    their listening connections committed a transaction per notification (Postgres signals every listener of
    the database), about six commits per message. Counted in a database of its own, every connection closed
    (a backend reports its counts when it ends), start-up and shutdown included."""
    dbname = f"herd_{uuid.uuid4().hex[:10]}"
    url = pg_cluster.create_database(dbname, template=template_db)
    try:
        with Queue(url, pool_size=1) as sender:
            sender.create("stream")
        before = commits(pg_cluster, dbname)
        herd = Herd(url, "stream")
        try:
            for i in range(4):
                herd.add(f"p{i}")
            herd.leader()
            with Queue(url, pool_size=1) as sender:
                sent = [sender.send("stream", {"i": i}) for i in range(1000)]
            wait_until(lambda: len(herd.handled) >= len(sent), what="every message handled")
            stats = {m.name: (m.reads, m.stats()) for m in herd.members}
        finally:
            herd.close()
        assert sorted(herd.handled_ids()) == sent
        per_message = (commits(pg_cluster, dbname) - before) / len(sent)
        assert per_message < 2.0, (per_message, stats)  # before: about 6
    finally:
        pg_cluster.drop_database(dbname)


def commits(pg_cluster: Any, dbname: str) -> int:
    """The database's committed transactions, once every backend that ended has reported them."""
    with pg_cluster.admin() as conn:
        time.sleep(0.5)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(scalar(conn, "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)))


# ------------------------------------------------------------------------------------------------ saturation
def test_a_saturated_leader_gets_help_from_the_other_processes(herd: Herd, sync_queue: Queue, queue: str) -> None:
    """The leader's only handler slot is taken by a message that does not finish: each message sent after it is
    handled by another process, woken by the leader's call for help (nobody polls)."""
    first = herd.add("p0", batch_size=1)
    herd.leader()
    assert first.leads()
    for i in range(1, 4):
        herd.add(f"p{i}", batch_size=1)
    wait_until(lambda: all_waiting(herd), what="all four waiting")
    first.blocked = True
    stuck = sync_queue.send(queue, "takes the leader's only slot")
    wait_until(lambda: not first.idle(), what="the leader busy")
    helped = []
    for i in range(6):
        msg_id = sync_queue.send(queue, {"i": i})
        wait_until(lambda m=msg_id: m in herd.handled_ids(), timeout=10, what=f"message {i} handled by a helper")
        helped.append(msg_id)
    assert {name for name, msg_id in herd.handled if msg_id in helped} <= {"p1", "p2", "p3"}
    assert 1 <= first.helps() <= 7  # at most one call per message (batch_size=1: each read comes back full)
    first.release()
    wait_until(lambda: stuck in herd.handled_ids(), what="the leader's message handled")


def test_a_process_alone_does_not_ask_for_help(herd: Herd, sync_queue: Queue, queue: str) -> None:
    """Nobody else consumes the queue: a saturated leader sends no call for help (a NOTIFY is a commit)."""
    only = herd.add("p0", batch_size=1)
    assert herd.leader() is only
    only.blocked = True
    stuck = sync_queue.send(queue, "takes the only slot")
    wait_until(lambda: not only.idle(), what="the process busy")
    for i in range(3):
        sync_queue.send(queue, {"i": i})
        time.sleep(0.05)  # each one left uncovered long enough to want help
    assert only.helps() == 0
    only.release()
    wait_until(lambda: len(herd.handled) == 4 and stuck in herd.handled_ids(), what="all four handled")


def test_a_follower_with_a_backlog_keeps_reading_without_waiting(herd: Herd, sync_queue: Queue, queue: str) -> None:
    """A read that came back full is followed by the next one at once, wake-up or not: a process that got help
    (or polled) while a backlog is there drains it."""
    leader = herd.add("p0", batch_size=1)
    herd.leader()
    follower = herd.add("p1", batch_size=2)
    wait_until(lambda: all_waiting(herd), what="both waiting")
    leader.blocked = True
    stuck = sync_queue.send(queue, "takes the leader's only slot")
    wait_until(lambda: not leader.idle(), what="the leader busy")
    backlog = sync_queue.send_batch(queue, list(range(20)))  # one notification (one statement): one help
    wait_until(lambda: set(backlog) <= set(herd.handled_ids()), timeout=10, what="the backlog handled")
    assert {name for name, msg_id in herd.handled if msg_id in backlog} == {follower.name}
    leader.release()
    wait_until(lambda: stuck in herd.handled_ids(), what="the leader's message handled")


# ------------------------------------------------------------------------------------------------ handover
def test_when_the_leader_stops_another_process_takes_over_at_once(herd: Herd, sync_queue: Queue, queue: str) -> None:
    for i in range(3):
        herd.add(f"p{i}")
    leader = herd.leader()
    leader.stop()
    herd.members.remove(leader)
    successor = herd.leader()  # within seconds, though the others retry only every poll_interval (60 s)
    wait_until(lambda: all_waiting(herd), what="both waiting")
    before, helps = herd.reads(), herd.helps()
    msg_id = sync_queue.send(queue, "after the handover")
    wait_until(lambda: herd.handled_ids() == [msg_id], what="the message handled")
    assert herd.handled == [(successor.name, msg_id)]
    wait_until(lambda: all_waiting(herd), what="both waiting again")
    if herd.helps() == helps:  # (see above)
        assert sum(d[0] for d in read_deltas(before, herd.reads()).values()) == 1
