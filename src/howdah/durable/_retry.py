"""Retry policies: which failures to retry and how long to wait (pure, no I/O)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from howdah.backoff import Backoff
from howdah.durable._errors import PermanentError, TransientError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits ``uniform(0, min(max_delay, initial·factor^(n-1)))``
    (the ceiling itself with ``jitter=False``; see :class:`howdah.backoff.Backoff`).

    ``retry_on`` lists the exception types worth retrying (``TransientError`` always is);
    ``PermanentError`` never is. ``max_attempts`` counts the first try.
    """

    max_attempts: int = 3
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = field(default=(TransientError,))
    _backoff: Backoff = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        # Backoff refuses negative delays and a factor below 1.
        backoff = Backoff(initial=self.initial_delay, factor=self.factor, cap=self.max_delay, jitter=self.jitter)
        object.__setattr__(self, "_backoff", backoff)

    @property
    def backoff(self) -> Backoff:
        """The delays between attempts."""
        return self._backoff

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, PermanentError):
            return False
        return isinstance(exc, (TransientError, *self.retry_on))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self._backoff.delay(attempt, rng)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return attempt < self.max_attempts and self.retryable(exc)


NO_RETRY = RetryPolicy(max_attempts=1)
DEFAULT_RETRY = RetryPolicy()
