"""How many messages a consumer may hold, following the backlog: :class:`ReadSize` (pure, no I/O).

A consumer holds at most ``max(concurrency, batch_size)`` messages while the queue keeps up with it. While reads
come back full (a backlog), it may hold more: as many as it gets through in ``read_ahead`` seconds at the rate it
has been finishing them, up to ``max_batch_size``. One read of 100 rows costs Postgres little more than one of 10, so a
backlog drains in a tenth of the statements; a slow handler finishes few messages a second and so never hoards
more than it gets through in ``read_ahead``. The first read that comes back short (the backlog is gone) drops the
limit back to the base.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReadSize:
    """The hold limit of one consumer; :meth:`after_read` is told of every read."""

    base: int  # batch_size
    cap: int  # max_batch_size
    read_ahead: float  # seconds of work a consumer may hold beyond its base, while there is a backlog
    concurrency: int = 1
    rate: float = 0.0
    """Messages finished per second between the last full reads (smoothed); 0 when there is no backlog."""
    _mark: tuple[float, int] | None = None  # (when, messages finished by then) at the last full read

    def limit(self) -> int:
        """The most messages the consumer may hold (read and not yet settled), handlers running included."""
        ahead = min(self.cap, round(self.rate * self.read_ahead))
        return max(self.concurrency, self.base, ahead)

    def after_read(self, now: float, finished: int, asked: int, got: int) -> None:
        """A read asked for ``asked`` and got ``got`` messages at ``now``; ``finished`` counts the messages the
        consumer's handlers finished so far (settled or not)."""
        if got < asked:  # drained: no backlog, back to the base
            self.rate = 0.0
            self._mark = None
            return
        if self._mark is not None:
            since, before = self._mark
            if now > since:
                sample = (finished - before) / (now - since)
                self.rate = sample if self.rate == 0.0 else (self.rate + sample) / 2
        self._mark = (now, finished)
