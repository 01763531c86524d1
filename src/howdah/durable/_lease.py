"""A run's hold on its workflow: its fencing token, until when it surely holds the lease, and its deadline.

A run holds its workflow until the visibility timeout of the dispatch message it read. Every answer from the
database that confirms the hold (the claim, each checkpoint, an explicit renewal) says how many seconds are left;
counted from the moment the request was *sent* (monotonic clock, which keeps running while the process is
frozen), that is a lower bound on the hold. Before each step attempt the run checks that bound and, when it is
close, asks the database (``howdah._hold``: same fencing token, same read of the message, vt extended). When the
database cannot be reached, or says the workflow is someone else's, the run stops: it starts no step attempt
without knowing it holds the workflow.

The decisions (``must_renew``, ``attempt_limit``) are pure; ``RunLease`` keeps the state of one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from howdah.durable._store import Store

MIN_MARGIN = 0.2  # seconds
MARGIN_FRACTION = 0.25  # of the lease


class DeadlineExceeded(BaseException):
    """The workflow's deadline has passed: the run stops and the workflow is cancelled with its children.

    A ``BaseException`` (like the run's other control-flow signals) so that workflow code catching
    ``Exception`` cannot swallow it."""


def renewal_margin(lease: float) -> float:
    """How much of the lease must be left, known for sure, to start a step attempt without asking again."""
    return max(MIN_MARGIN, lease * MARGIN_FRACTION)


def must_renew(now: float, held_until: float, lease: float) -> bool:
    """Whether the run must confirm its lease with the database before starting a step attempt at ``now``."""
    return now + renewal_margin(lease) >= held_until


def attempt_limit(step_timeout: float | None, now: float, deadline: float | None) -> tuple[float | None, bool]:
    """How long the next step attempt may run (``None``: unbounded) and whether that limit is the workflow's
    deadline rather than the step's own timeout."""
    if deadline is None:
        return step_timeout, False
    left = max(0.0, deadline - now)
    if step_timeout is None or left < step_timeout:
        return left, True
    return step_timeout, False


class RunLease:
    """One run's fencing token and what it knows about its lease and deadline (times on ``clock``)."""

    def __init__(
        self,
        store: Store,
        workflow_id: str,
        fence: int,
        lease: int,
        *,
        sent_at: float,
        lease_left: float | None,
        deadline_left: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.workflow_id = workflow_id
        self.fence = fence
        self.lease = lease
        self.clock = clock
        self.held_until = sent_at + (lease_left if lease_left is not None else float("-inf"))
        self.deadline = None if deadline_left is None else sent_at + deadline_left
        self.stopped: BaseException | None = None

    def confirmed(self, sent_at: float, lease_left: float | None) -> None:
        """The database answered a request sent at ``sent_at``: ``lease_left`` seconds are left (None: lost)."""
        if lease_left is None:
            self.held_until = float("-inf")  # the next attempt asks, and learns that the lease is lost
        else:
            self.held_until = max(self.held_until, sent_at + lease_left)

    def stop(self, exc: BaseException) -> BaseException:
        """Record why the run must stop (the first reason wins) and return it, to raise."""
        if self.stopped is None:
            self.stopped = exc
        return self.stopped

    def check(self) -> None:
        """Raise the reason the run stopped, if it has."""
        if self.stopped is not None:
            raise self.stopped

    def deadline_passed(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline

    async def ensure(self) -> bool:
        """Make sure the run still holds its workflow before a step attempt; returns whether cancellation was
        requested. Raises (and remembers) LeaseLost, the database error that left it unable to tell, or
        :class:`DeadlineExceeded`."""
        self.check()
        if self.deadline_passed():
            raise self.stop(DeadlineExceeded(f"workflow {self.workflow_id!r} is past its deadline"))
        if not must_renew(self.clock(), self.held_until, self.lease):
            return False
        sent = self.clock()
        try:
            # Not longer than the margin for a connection: a database that cannot be reached is an answer too.
            lease_left, cancel = await self._store.hold(
                self.workflow_id, self.fence, self.lease, wait=renewal_margin(self.lease)
            )
        except Exception as exc:  # lost, or cannot tell: stop either way
            self.stop(exc)
            raise
        self.confirmed(sent, lease_left)
        return cancel
