"""How a consumer reads, holds and settles messages: :class:`ConsumeOptions`, validated once (no I/O)."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Literal

from howdah.queue._errors import InvalidArgument, QueueError
from howdah.queue._names import validate_queue_name

DLQ_SUFFIX = "_dlq"  # a consumer's dead-letter queue is its queue's name and this, unless it names another
CONCURRENCY = 32
"""How many messages ``work()`` handles at once unless told otherwise (``concurrency=1``: one at a time, in the
order read)."""


@dataclass(frozen=True)
class ConsumeOptions:
    """How a consumer reads and settles (all durations in seconds).

    - ``batch_size``: how many messages one read asks for while the queue keeps up. A consumer holds at most
      ``max(concurrency, batch_size)`` messages (read and not yet settled) and reads only the room it has, so
      with ``batch_size`` equal to the concurrency and ``read_ahead=0`` it takes only what it can start at once.
    - ``max_batch_size`` / ``read_ahead``: while reads come back full (a backlog), a consumer may hold as many
      messages as it finishes in ``read_ahead`` seconds at the rate it has been finishing them, up to
      ``max_batch_size`` (never below ``batch_size``): a backlog drains in fewer, larger reads, and a slow
      handler never hoards more than it gets through in ``read_ahead``. ``read_ahead=0`` turns this off.
    - ``settle_batch_size`` / ``settle_linger``: handled messages are deleted (or archived) together, and failed
      ones released together, with the next read or after ``settle_linger`` seconds, whichever comes first, or
      at once when ``settle_batch_size`` are pending. ``settle_linger=0`` settles each message on its own as
      soon as its handler returns.
    - ``read_interval``: once a read came back short (found fewer messages than it asked for), the next read
      waits for a wake-up and comes at least this long after the previous one, so that under a steady stream one
      read takes several messages; a read that came back full is followed by the next one at once. While
      notifications come faster than that, the process that leads the queue stops listening (every listening
      connection of a database costs a transaction per notification) and its consumers read every
      ``read_interval`` instead, until reads find the queue empty. A wake-up that no read of that process
      covered within ``read_interval`` plus 20 ms makes it ask the other consumer processes for help. The
      default, 2 ms, keeps the median wait of a message under a few ms; larger values cost latency and, with
      ``batch_size`` 10, save few reads.
    - ``poll_interval``: a consumer with nothing to do reads at least this often, wake-up or not; processes that
      do not lead the queue try to take the lead as often.
    """

    vt: int = 30
    batch_size: int = 10
    max_batch_size: int = 100
    read_ahead: float = 0.05
    settle_batch_size: int = 100
    settle_linger: float = 0.005
    read_interval: float = 0.002
    max_reads: int | None = 5
    dead_letter_queue: str | None = None
    on_success: Literal["delete", "archive"] = "delete"
    poll_interval: float = 1.0
    heartbeat_interval: float | None = None
    shutdown_timeout: float = 30.0
    listen: bool = True
    enable_notify: bool = True
    maintenance_interval: float = 60.0
    retry_base: float = 1.0
    retry_cap: float = 300.0
    stop: asyncio.Event | None = None
    handle_signals: bool = False

    @classmethod
    def build(cls, queue: str, **options: Any) -> ConsumeOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidArgument(f"unknown consumer option(s) {unknown}; known: {sorted(known)}")
        validate_queue_name(queue)
        opts = cls(**options)
        for name in ("vt", "batch_size", "max_batch_size", "max_reads", "settle_batch_size"):
            value = getattr(opts, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidArgument(f"{name} must be an integer, not {type(value).__name__}")
        for name in ("poll_interval", "heartbeat_interval", "shutdown_timeout", "maintenance_interval",
                     "retry_base", "retry_cap", "settle_linger", "read_interval", "read_ahead"):  # fmt: skip
            value = getattr(opts, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise InvalidArgument(f"{name} must be a non-negative number of seconds, not {value!r}")
        if opts.heartbeat_interval == 0:
            raise InvalidArgument("heartbeat_interval must be positive (or None for vt/3)")
        if min(opts.vt, opts.batch_size, opts.max_batch_size, opts.settle_batch_size) < 1:
            raise InvalidArgument("vt, batch_size, max_batch_size and settle_batch_size must be at least 1")
        if opts.max_reads is not None and opts.max_reads < 1:
            raise InvalidArgument("max_reads must be at least 1 (or None to never dead-letter)")
        if opts.on_success not in ("delete", "archive"):
            raise InvalidArgument(f"on_success must be 'delete' or 'archive', not {opts.on_success!r}")
        if min(opts.poll_interval, opts.shutdown_timeout, opts.maintenance_interval) <= 0:
            raise InvalidArgument("poll_interval, shutdown_timeout and maintenance_interval must be positive")
        if opts.max_reads is not None:
            dlq = opts.dead_letter_queue or queue + DLQ_SUFFIX
            try:
                validate_queue_name(dlq)
            except QueueError as exc:
                hint = "" if opts.dead_letter_queue else "; pass dead_letter_queue="
                raise InvalidArgument(f"dead-letter queue name is invalid ({exc}){hint}") from exc
            if dlq.lower() == queue.lower():
                raise InvalidArgument("a queue cannot be its own dead-letter queue")
            opts = dataclasses.replace(opts, dead_letter_queue=dlq)
        return opts

    @property
    def heartbeat(self) -> float:
        return self.heartbeat_interval or max(0.5, self.vt / 3)


def notify_channel(queue: str) -> str:
    """The channel PGMQ's insert trigger notifies (``pgmq.q_<name>.INSERT``)."""
    return f"pgmq.q_{queue.lower()}.INSERT"
