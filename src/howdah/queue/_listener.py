"""One LISTEN connection per process (per event loop and database), shared by every consumer and queue in it;
one process per queue that reacts to the queue's notifications (its *leader*); and no listening at all while
messages stream in faster than they are read.

What a notification costs. PostgreSQL signals EVERY backend that listens on any channel in the database when a
transaction that notified commits, and each idle one reads the notification queue in a transaction of its own:
with four consumer processes listening, every single send costs five commits besides its own, heard or not.
Two things keep that down:

- **A leader per queue.** The processes of a queue elect a leader with a session-level advisory lock taken on
  their listener connections (:func:`leader_key`); it is released when the leader's connection ends, its process
  killed or not, and the others try to take it every ``poll_interval``, or at once when a leader hands over on
  stopping. Only the leader's consumers are woken by the queue's notifications; the others (followers) are woken
  when the leader asks for help on a channel of Howdah's own (:func:`help_channel`), and poll.
- **Streaming.** A process whose notifications come faster than it would read anyway (:data:`DENSE` of them
  less than a *tick* apart on average) stops listening on the queue (UNLISTEN: its backend is no longer
  signalled) and wakes one of its consumers every tick instead: the leader every ``read_interval``, a follower
  every :data:`FOLLOW_TICK`, twice as long after each read that found nothing (the leader keeps up), up to
  ``poll_interval``. After :data:`EMPTY_READS` empty reads in a row (a follower: at its slowest pace) it listens
  again, then wakes every waiting consumer once LISTEN is in place, so that a message committed meanwhile is read.

Inside a process a wake-up goes to ONE consumer of the queue that is waiting for messages, never all of them;
consumers that are busy handling are not woken at all (they read again when they have room anyway).

When does the leader ask for help? A wake-up is *covered* once a read that started after it came back short (it
saw every message committed before it). A wake-up that no read of the leader's process covered within
``read_interval`` plus :data:`HELP_SLACK` means that process is behind (its consumers are busy, or their reads keep
coming back full), so it wakes one more of its own consumers if one waits, or else NOTIFYs the help channel, at
most once per that interval and only when another process consumes the queue (holds :func:`member_key`); each
listening follower then wakes one of its waiting consumers. A consumer whose read came back full reads again
without waiting, so a process that joined in drains a backlog.

No wake-up is lost. Each channel counts its wake-ups (``seq``). A consumer notes the count before a read; if
that read comes back short it waits with :meth:`Listener.wait`, which returns at once when the count moved
meanwhile: a message committed after the read's snapshot was notified after it, so either the count has moved
or the notification is still to come and wakes a waiter (in a follower the same holds for the leader's calls for
help; while streaming the next tick comes within a tick). When a process starts listening, takes the lead, or
stops streaming, every waiting consumer of the queue is woken, as notifications may have gone unheard.
Followers also poll every ``poll_interval``: should the leader die, a message waits at most that long.

Throttled queues (``pgmq.enable_notify_insert(queue, throttle_interval_ms)``) notify at most once per interval:
a message sent inside the interval after a notification is not notified at all. So the leader wakes one
waiter again when the interval that a notification opened has passed, as if the suppressed notification had
come then; a message sent during the interval waits at most the interval, never the poll interval.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from howdah.backoff import Backoff

log = logging.getLogger("howdah.queue.listener")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

RECONNECT = Backoff(initial=0.1, cap=5.0)
READY_TIMEOUT = 5.0  # how long a new subscriber waits for its LISTEN before it relies on polling meanwhile
THROTTLE_SLACK = 0.001  # seconds after a throttle interval ends before the listener wakes a waiter
HELP_SLACK = 0.020  # a wake-up left uncovered for read_interval + this: the leader's process is behind
CLOSE_TIMEOUT = 2.0  # how long the last unsubscribe waits for the connection to hand over and close
HANDOVER = "handover"  # payload on the help channel: the leader stopped, followers try to take the lead now
MAX_CHANNEL_BYTES = 63  # Postgres's NAMEDATALEN - 1
DENSE = 8  # notifications less than a tick apart on average, in a row: a stream (stop listening)
EMPTY_READS = 3  # empty reads in a row while streaming: the stream has ended (listen again)
FOLLOW_TICK = 0.05  # seconds between a follower's wake-ups while the queue streams
MIN_TICK = 0.001  # the leader's tick when read_interval is 0


def leader_key(channel: str) -> int:
    """The advisory lock (one bigint) whose holder leads the queue notifying ``channel``, in one database."""
    return _key("leader", channel)


def member_key(channel: str) -> int:
    """The advisory lock every process consuming the queue notifying ``channel`` holds in shared mode: the
    leader asks for help only when some other process holds it."""
    return _key("member", channel)


def _key(kind: str, channel: str) -> int:
    digest = hashlib.blake2b(f"howdah.queue.{kind}:{channel}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_tag(key: int) -> tuple[int, int]:
    """How ``pg_locks`` shows a bigint advisory lock: (classid, objid), with objsubid 1."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def help_channel(channel: str) -> str:
    """Howdah's channel on which the leader of the queue notifying ``channel`` asks the other processes for help
    (``pgmq.q_orders.INSERT`` → ``howdah.q_orders.help``)."""
    inner = channel.removeprefix("pgmq.").removesuffix(".INSERT")
    name = f"howdah.{inner}.help"
    if inner == channel or len(name.encode()) > MAX_CHANNEL_BYTES:
        name = "howdah.help." + hashlib.blake2b(channel.encode(), digest_size=16).hexdigest()
    return name


@dataclass
class _Channel:
    name: str  # the queue's channel, as PGMQ's trigger notifies it
    help: str  # Howdah's channel for calls for help (help_channel(name))
    key: int  # the leader lock (leader_key(name))
    refs: int = 0
    seq: int = 0
    throttle: float = 0.0  # seconds
    retry: float = 1.0  # seconds between a follower's attempts to take the lead (the least poll_interval)
    read_interval: float = 0.0  # the largest of the subscribers'
    waiters: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)
    listening: asyncio.Event = field(default_factory=asyncio.Event)  # wake-ups come (notifications or ticks)
    tail: asyncio.TimerHandle | None = None
    leader: bool = False  # this listener's connection holds the leader lock
    promoted: bool = False  # took the lead; its waiters are to be woken once LISTEN is in place
    try_at: float = 0.0  # monotonic time of the next attempt to take the lead (followers)
    covered: int = 0  # the last wake-up (seq) known to be covered by a short read
    watch: asyncio.TimerHandle | None = None  # checks that the wake-ups up to watch_seq get covered
    watch_seq: int = 0
    ask_help: bool = False  # the session is to NOTIFY the help channel
    alone_until: float = 0.0  # monotonic time until which no other process is assumed to consume the queue
    helps: int = 0  # how many times this process asked for help (for tests and metrics)
    wants: int = 0  # how many times it found itself behind (a call for help goes out after, if anyone can help)
    arrivals: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=DENSE))
    streaming: bool = False  # not listening: woken every tick instead
    ticker: asyncio.TimerHandle | None = None
    empties: int = 0  # empty reads in a row while streaming
    slow: int = 1  # a streaming follower's tick is FOLLOW_TICK times this (doubled by each empty read)
    streams: int = 0  # how many times this process started streaming (for tests and metrics)

    @property
    def help_after(self) -> float:
        return self.read_interval + HELP_SLACK

    @property
    def tick(self) -> float:
        """Seconds between wake-ups while streaming (a notification less often than this is worth hearing)."""
        lead = max(self.read_interval, MIN_TICK)
        return lead if self.leader else max(lead, min(FOLLOW_TICK * self.slow, self.retry))

    def stream_read(self, found: int) -> bool:
        """Note a read while streaming; True when the stream has ended (listen again). A follower whose reads find
        nothing (the leader keeps up) reads ever less often, up to ``retry``, and listens again only after
        EMPTY_READS empty reads at that pace: each time it listens, every notification costs its backend a
        transaction, so a follower that re-listened after a few empty ticks would cost more than it saves."""
        if found:
            self.empties, self.slow = 0, 1
            return False
        self.empties += 1
        if self.leader:
            return self.empties >= EMPTY_READS
        if FOLLOW_TICK * self.slow < self.retry:
            self.empties, self.slow = 0, self.slow * 2
            return False
        return self.empties >= EMPTY_READS

    def wanted(self) -> set[str]:
        """The channels to LISTEN on now: none while streaming; a follower hears the queue's notifications only to
        tell a stream (they wake nobody), and the leader's calls for help."""
        if self.streaming:
            return set()
        return {self.name} if self.leader else {self.name, self.help}

    def stop_timers(self) -> None:
        for timer in (self.tail, self.watch, self.ticker):
            if timer is not None:
                timer.cancel()
        self.tail = self.watch = self.ticker = None


class Listener:
    """The shared LISTEN connection of one event loop to one database; get it with :meth:`shared`."""

    _shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Listener]] = weakref.WeakKeyDictionary()

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._channels: dict[str, _Channel] = {}
        self._by_help: dict[str, str] = {}  # help channel -> queue channel
        self._changed = asyncio.Event()  # the session has statements to run (LISTEN, lock, help)
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def shared(cls, conninfo: str) -> Listener:
        """The listener of the running event loop for ``conninfo`` (created on first use)."""
        listeners = cls._shared.setdefault(asyncio.get_running_loop(), {})
        listener = listeners.get(conninfo)
        if listener is None:
            listener = listeners[conninfo] = cls(conninfo)
        return listener

    # ------------------------------------------------------------------------------------------- consumers
    async def subscribe(
        self, channel: str, throttle_ms: int = 0, *, poll_interval: float = 1.0, read_interval: float = 0.0
    ) -> None:
        """Start listening on ``channel`` (counted: one call per consumer); returns once LISTEN is in place, or
        after a few seconds when the database cannot be reached (the consumer then polls until it can).

        ``poll_interval`` bounds how often this process tries to take the lead; ``read_interval`` is how often
        the leader's consumers read while the queue streams, and how long a wake-up may wait for a read (plus
        :data:`HELP_SLACK`) before the process counts as behind."""
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channels[channel] = _Channel(channel, help_channel(channel), leader_key(channel))
            ch.retry = poll_interval
            self._by_help[ch.help] = channel
        ch.refs += 1
        ch.throttle = throttle_ms / 1000
        ch.retry = min(ch.retry, poll_interval)
        ch.read_interval = max(ch.read_interval, read_interval)
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="howdah-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ch.listening.wait(), READY_TIMEOUT)

    async def unsubscribe(self, channel: str) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            return
        ch.refs -= 1
        if ch.refs > 0:
            return
        del self._channels[channel]
        self._by_help.pop(ch.help, None)
        ch.stop_timers()
        self._wake(ch, everyone=True)
        self._changed.set()  # the session gives up the lead (telling the others) and stops listening
        if not self._channels and self._task is not None:
            task = self._task
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)  # it closes the connection once nothing is left
            if self._channels:  # subscribed again meanwhile: the session (or a new one) carries on
                return
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self._task = None
            listeners = self._shared.get(asyncio.get_running_loop(), {})
            if listeners.get(self.conninfo) is self:
                del listeners[self.conninfo]

    def seq(self, channel: str) -> int:
        """How many wake-ups ``channel`` has had: note it before a read, pass it to :meth:`wait` after."""
        ch = self._channels.get(channel)
        return ch.seq if ch is not None else 0

    def read(self, channel: str, seen: int, found: int, short: bool) -> None:
        """A consumer's read that started after wake-up ``seen`` (see :meth:`seq`) found ``found`` messages;
        ``short``: fewer than it asked for, so it saw every message committed before it and covers the
        wake-ups up to ``seen``. Empty reads in a row end a stream."""
        ch = self._channels.get(channel)
        if ch is None:
            return
        if short and seen > ch.covered:
            ch.covered = seen
        if ch.streaming and ch.stream_read(found):
            self._stop_streaming(ch)

    def stats(self, channel: str) -> dict[str, Any]:
        """What this process's listener did for ``channel``: its role, calls for help sent, streams started, and
        ``settled``: False while it has yet to listen, or has just taken the lead and not yet woken its consumers
        to read what may have gone unheard."""
        ch = self._channels.get(channel)
        if ch is None:
            return {}
        settled = ch.listening.is_set() and not ch.promoted
        return {
            "leader": ch.leader,
            "helps": ch.helps,
            "wants": ch.wants,
            "streams": ch.streams,
            "streaming": ch.streaming,
            "settled": settled,
        }

    def waiting(self, channel: str) -> int:
        """How many consumers wait for a wake-up on ``channel`` now."""
        ch = self._channels.get(channel)
        return sum(1 for w in ch.waiters if not w.done()) if ch is not None else 0

    async def wait(self, channel: str, seen: int, timeout: float) -> bool:
        """Wait until a wake-up for ``channel`` comes to this waiter (True) or ``timeout`` passes (False).

        Returns True at once when the channel had a wake-up since ``seen`` (see the module docstring)."""
        ch = self._channels.get(channel)
        if ch is None or not ch.listening.is_set():
            await asyncio.sleep(timeout)  # not listening (yet, or any more): poll
            return False
        if ch.seq != seen:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ch.waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return True
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake(ch)  # woken and cancelled at once: the wake-up goes to another waiter
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    ch.waiters.remove(waiter)

    # ----------------------------------------------------------------------------------------- wake-ups
    @staticmethod
    def _wake(ch: _Channel, everyone: bool = False) -> bool:
        """Wake the longest-waiting consumer of ``ch`` (or all of them); False if none was waiting."""
        woken = False
        while ch.waiters:
            waiter = ch.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken = True
                if not everyone:
                    break
        return woken

    def _notified(self, channel: str, payload: str) -> None:
        ch = self._channels.get(channel)
        if ch is not None:  # the queue's own notification
            if self._dense(ch):
                self._start_streaming(ch)
            if not ch.leader:
                return  # a follower hears it only to tell a stream
            self._arrived(ch)
            if ch.throttle > 0:
                if ch.tail is not None:
                    ch.tail.cancel()
                ch.tail = asyncio.get_running_loop().call_later(ch.throttle + THROTTLE_SLACK, self._interval_ended, ch)
            return
        ch = self._channels.get(self._by_help.get(channel, ""))
        if ch is None:
            return
        if payload == HANDOVER:
            if not ch.leader:  # the leader stopped: try to take the lead now (the winner's consumers all read)
                ch.try_at = 0.0
                self._changed.set()
            return
        ch.seq += 1  # the leader asks for help: one consumer here reads
        self._wake(ch)

    def _interval_ended(self, ch: _Channel) -> None:
        ch.tail = None
        if not ch.streaming:
            self._arrived(ch)

    def _arrived(self, ch: _Channel) -> None:
        """A wake-up for the leader's process: one waiting consumer reads, and the watch checks it is covered."""
        ch.seq += 1
        self._wake(ch)
        self._watch(ch)

    def _watch(self, ch: _Channel) -> None:
        if ch.watch is None and ch.leader:
            ch.watch_seq = ch.seq
            ch.watch = asyncio.get_running_loop().call_later(ch.help_after, self._check, ch)

    def _check(self, ch: _Channel) -> None:
        """``help_after`` after a wake-up: covered, or this process is behind and gets help."""
        ch.watch = None
        if not ch.leader or self._channels.get(ch.name) is not ch:
            return
        if ch.covered >= ch.watch_seq:
            if ch.covered < ch.seq:
                self._watch(ch)  # later wake-ups are not covered yet
            return
        if self._wake(ch):  # a consumer of this process waits after all (it just finished): it reads
            self._watch(ch)
            return
        ch.covered = ch.seq  # the helpers' reads cover what came so far (or, alone, ours when we can)
        if time.monotonic() >= ch.alone_until:
            ch.ask_help = True
            ch.wants += 1
            self._changed.set()

    # ---------------------------------------------------------------------------------------- streaming
    @staticmethod
    def _dense(ch: _Channel) -> bool:
        """Whether the queue's last DENSE notifications came less than a tick apart on average."""
        now = time.monotonic()
        ch.arrivals.append(now)
        return len(ch.arrivals) == DENSE and now - ch.arrivals[0] < (DENSE - 1) * ch.tick

    def _start_streaming(self, ch: _Channel) -> None:
        if ch.streaming:
            return
        ch.streaming, ch.empties, ch.slow = True, 0, 1
        ch.streams += 1
        ch.arrivals.clear()
        ch.ticker = asyncio.get_running_loop().call_later(ch.tick, self._tick, ch)
        self._changed.set()  # the session UNLISTENs
        log.debug("%s streams: reading every %.3fs instead of listening", ch.name, ch.tick)

    def _stop_streaming(self, ch: _Channel) -> None:
        ch.streaming, ch.empties = False, 0
        if ch.ticker is not None:
            ch.ticker.cancel()
            ch.ticker = None
        self._changed.set()  # the session LISTENs, then wakes every waiting consumer
        log.debug("%s no longer streams: listening again", ch.name)

    def _tick(self, ch: _Channel) -> None:
        ch.ticker = None
        if not ch.streaming or self._channels.get(ch.name) is not ch:
            return
        ch.ticker = asyncio.get_running_loop().call_later(ch.tick, self._tick, ch)
        if ch.listening.is_set():
            self._arrived(ch)

    # --------------------------------------------------------------------------------------- connection
    async def _run(self) -> None:
        delays = RECONNECT.delays()
        delay = 0.0
        while self._channels:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    delays = RECONNECT.delays()
                    await self._session(conn)
            except psycopg.Error as exc:
                delay = next(delays)
                log.info("LISTEN connection lost (%s); consumers poll meanwhile; reconnecting in %.1fs", exc, delay)
            finally:
                for ch in self._channels.values():  # the lead went with the connection; start afresh
                    ch.listening.clear()
                    ch.stop_timers()
                    ch.leader = ch.promoted = ch.streaming = False
                    ch.try_at = 0.0
                    ch.arrivals.clear()
            if self._channels:
                await asyncio.sleep(delay)

    async def _session(self, conn: Conn) -> None:
        listened: dict[str, set[str]] = {}  # queue channel -> the channels LISTENed for it
        held: dict[str, int] = {}  # queue channel -> leader lock held by this session
        members: dict[str, int] = {}  # queue channel -> member lock held (shared) by this session
        while True:
            self._changed.clear()
            await self._sync(conn, listened, held, members)
            if not self._channels:
                return
            due = [ch.try_at for ch in self._channels.values() if not ch.leader]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            reader = asyncio.create_task(self._read(conn))
            changed = asyncio.create_task(self._changed.wait())
            try:
                await asyncio.wait({reader, changed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, changed):
                    task.cancel()
                await asyncio.gather(changed, return_exceptions=True)
                with contextlib.suppress(asyncio.CancelledError):
                    await reader  # a lost connection raises here

    async def _sync(
        self, conn: Conn, listened: dict[str, set[str]], held: dict[str, int], members: dict[str, int]
    ) -> None:
        """Bring the connection in line: leads given up (and handed over) for channels no longer wanted, calls
        for help sent, membership taken and the lead tried for where it is due, and each channel LISTENed as its
        role and streaming want."""
        for name in [n for n in listened if n not in self._channels]:
            if name in held:
                await conn.execute(
                    "SELECT pg_advisory_unlock(%s), pg_notify(%s, %s)", (held.pop(name), help_channel(name), HANDOVER)
                )
            if name in members:
                await conn.execute("SELECT pg_advisory_unlock_shared(%s)", (members.pop(name),))
            for channel in sorted(listened.pop(name)):
                await conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
        asked = [ch for ch in self._channels.values() if ch.ask_help]
        for ch in asked:
            ch.ask_help = False
        if asked := [ch for ch in asked if ch.leader]:
            await self._ask_help(conn, asked)
        if joining := [ch for ch in self._channels.values() if ch.name not in members]:
            await conn.execute(
                "SELECT pg_advisory_lock_shared(k) FROM unnest(%s::bigint[]) AS k",
                ([member_key(ch.name) for ch in joining],),
            )
            members.update((ch.name, member_key(ch.name)) for ch in joining)
        await self._take_lead(conn, held)
        for ch in self._channels.values():
            had, wanted = listened.get(ch.name, set()), ch.wanted()
            for channel in sorted(had - wanted):
                await conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
            for channel in sorted(wanted - had):
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            listened[ch.name] = wanted
            if (wanted and not had) or ch.promoted or not ch.listening.is_set():
                ch.promoted = False
                ch.listening.set()
                ch.seq += 1  # notifications may have gone unheard (connecting, following, streaming)
                self._wake(ch, everyone=True)
                self._watch(ch)

    async def _take_lead(self, conn: Conn, held: dict[str, int]) -> None:
        """Try the leader lock of each channel this process does not lead, where an attempt is due."""
        now = time.monotonic()
        for ch in self._channels.values():
            if ch.name in held and not ch.leader:  # unsubscribed and subscribed again before the session caught up
                ch.leader = ch.promoted = True
        due = [ch for ch in self._channels.values() if not ch.leader and ch.try_at <= now]
        if not due:
            return
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, i) ORDER BY i",
            ([ch.key for ch in due],),
        )
        for ch, (won,) in zip(due, await cur.fetchall(), strict=True):
            if won:
                ch.leader = ch.promoted = True
                held[ch.name] = ch.key
                log.debug("leading the queue of %s", ch.name)
            else:
                ch.try_at = now + ch.retry

    async def _ask_help(self, conn: Conn, asked: list[_Channel]) -> None:
        """NOTIFY the help channels of ``asked`` whose queue another process consumes (holds the member lock);
        the others are taken to have no other process for a poll interval."""
        tags = [lock_tag(member_key(ch.name)) for ch in asked]
        cur = await conn.execute(
            """SELECT a.help, pg_notify(a.help, '') IS NULL
                 FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS a(help, classid, objid)
                WHERE EXISTS (SELECT FROM pg_locks AS l
                               WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
                                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                                 AND l.classid = a.classid::oid AND l.objid = a.objid::oid AND l.objsubid = 1)""",
            ([ch.help for ch in asked], [t[0] for t in tags], [t[1] for t in tags]),
        )
        helped = {row[0] for row in await cur.fetchall()}
        now = time.monotonic()
        for ch in asked:
            if ch.help in helped:
                ch.helps += 1
            else:
                ch.alone_until = now + ch.retry

    async def _read(self, conn: Conn) -> None:
        async for notify in conn.notifies():
            self._notified(notify.channel, notify.payload)
