"""Retry policies: which failures to retry and how long to wait (pure, no I/O)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from howdah.durable._errors import PermanentError, TransientError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits ``uniform(0, min(max_delay, initial·factor^(n-1)))``.

    ``retry_on`` lists the exception types worth retrying (``TransientError`` always is);
    ``PermanentError`` never is. ``max_attempts`` counts the first try.
    """

    max_attempts: int = 3
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = field(default=(TransientError,))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("delays must be non-negative and factor at least 1")

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, PermanentError):
            return False
        return isinstance(exc, (TransientError, *self.retry_on))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.initial_delay * self.factor ** max(0, attempt - 1))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(0, ceiling)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return attempt < self.max_attempts and self.retryable(exc)


NO_RETRY = RetryPolicy(max_attempts=1)
DEFAULT_RETRY = RetryPolicy()
