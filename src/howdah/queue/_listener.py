"""One LISTEN connection per process (per event loop and database), shared by every consumer and queue in it.

A notification on a queue's channel wakes ONE consumer of that queue that is waiting for messages, never all of
them; consumers that are busy handling are not woken at all (they read again when they have room anyway).

No wake-up is lost. Each channel counts its notifications (``seq``). A consumer notes the count before a read;
if that read comes back short it waits with :meth:`Listener.wait`, which returns at once when the count moved
meanwhile: a message committed after the read's snapshot was notified after it, so either the count has moved
or the notification is still to come and wakes a waiter.

Throttled queues (``pgmq.enable_notify_insert(queue, throttle_interval_ms)``) notify at most once per interval:
a message sent inside the interval after a notification is not notified at all. So the listener wakes one
waiter again when the interval that a notification opened has passed, as if the suppressed notification had
come then; a message sent during the interval waits at most the interval, never the poll interval.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import weakref
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from howdah.backoff import Backoff

log = logging.getLogger("howdah.queue.listener")

RECONNECT = Backoff(initial=0.1, cap=5.0)
READY_TIMEOUT = 5.0  # how long a new subscriber waits for its LISTEN before it relies on polling meanwhile
THROTTLE_SLACK = 0.001  # seconds after a throttle interval ends before the listener wakes a waiter


@dataclass
class _Channel:
    refs: int = 0
    seq: int = 0
    throttle: float = 0.0  # seconds
    waiters: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    tail: asyncio.TimerHandle | None = None


class Listener:
    """The shared LISTEN connection of one event loop to one database; get it with :meth:`shared`."""

    _shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Listener]] = weakref.WeakKeyDictionary()

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._channels: dict[str, _Channel] = {}
        self._changed = asyncio.Event()
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
    async def subscribe(self, channel: str, throttle_ms: int = 0) -> None:
        """Start listening on ``channel`` (counted: one call per consumer); returns once LISTEN is in place, or
        after a few seconds when the database cannot be reached (the consumer then polls until it can)."""
        ch = self._channels.setdefault(channel, _Channel())
        ch.refs += 1
        ch.throttle = throttle_ms / 1000
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
        if ch.tail is not None:
            ch.tail.cancel()
        self._wake(ch, everyone=True)
        self._changed.set()
        if not self._channels and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            listeners = self._shared.get(asyncio.get_running_loop(), {})
            if listeners.get(self.conninfo) is self:
                del listeners[self.conninfo]

    def seq(self, channel: str) -> int:
        """How many wake-ups ``channel`` has had: note it before a read, pass it to :meth:`wait` after."""
        ch = self._channels.get(channel)
        return ch.seq if ch is not None else 0

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
    def _wake(ch: _Channel, everyone: bool = False) -> None:
        """Wake the longest-waiting consumer of ``ch`` (or all of them)."""
        while ch.waiters:
            waiter = ch.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not everyone:
                    return

    def _notified(self, channel: str) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            return
        ch.seq += 1
        self._wake(ch)
        if ch.throttle > 0:
            if ch.tail is not None:
                ch.tail.cancel()
            ch.tail = asyncio.get_running_loop().call_later(ch.throttle + THROTTLE_SLACK, self._interval_ended, ch)

    def _interval_ended(self, ch: _Channel) -> None:
        ch.tail = None
        ch.seq += 1
        self._wake(ch)

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
                for ch in self._channels.values():
                    ch.listening.clear()
            if self._channels:
                await asyncio.sleep(delay)

    async def _session(self, conn: psycopg.AsyncConnection[object]) -> None:
        listening: set[str] = set()
        while self._channels:
            self._changed.clear()
            wanted = set(self._channels)
            for channel in sorted(wanted - listening):
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            for channel in sorted(listening - wanted):
                await conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
            for channel in wanted - listening:
                ch = self._channels[channel]
                ch.listening.set()
                ch.seq += 1  # notifications may have gone unheard while (re)connecting
                self._wake(ch, everyone=True)
            listening = wanted
            reader = asyncio.create_task(self._read(conn))
            changed = asyncio.create_task(self._changed.wait())
            try:
                await asyncio.wait({reader, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, changed):
                    task.cancel()
                await asyncio.gather(changed, return_exceptions=True)
                with contextlib.suppress(asyncio.CancelledError):
                    await reader  # a lost connection raises here

    async def _read(self, conn: psycopg.AsyncConnection[object]) -> None:
        async for notify in conn.notifies():
            self._notified(notify.channel)
