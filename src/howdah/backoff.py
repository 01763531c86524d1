"""Exponential backoff: how long to wait before the next try (pure, no I/O, no sleeping).

Every retry loop in Howdah asks one :class:`Backoff` for its delays: the queue consumer riding out a lost
connection, a failed message's visibility delay, durable step retries, the reconciler's error retries, a
provider waiting for a server to reload. Only the numbers differ between them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]

_MAX_EXPONENT = 62  # initial · factor**62 is past any sensible cap: no float overflow, the same answer


@dataclass(frozen=True, slots=True)
class Backoff:
    """Try ``n`` (1-based) waits ``min(cap, initial · factor**(n-1))`` seconds; with ``jitter`` a uniform
    draw between 0 and that ceiling ("full jitter"), so that many clients failing together do not retry
    together."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 60.0
    jitter: bool = False

    def __post_init__(self) -> None:
        if self.initial < 0 or self.cap < 0:
            raise ValueError("backoff delays must be non-negative")
        if self.factor < 1:
            raise ValueError("a backoff factor must be at least 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed try number ``attempt`` (1-based; 0 and below count as 1)."""
        exponent = min(max(0, attempt - 1), _MAX_EXPONENT)
        return float(min(self.cap, self.initial * self.factor**exponent))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed try number ``attempt``."""
        ceiling = self.ceiling(attempt)
        return (rng or random).uniform(0, ceiling) if self.jitter else ceiling

    def delays(self) -> _Delays:
        """An endless iterator of delays for tries 1, 2, 3 …, for loops that poll until something happens."""
        return _Delays(self)


class _Delays:
    __slots__ = ("_attempt", "_backoff")

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff
        self._attempt = 0

    def __iter__(self) -> _Delays:
        return self

    def __next__(self) -> float:
        self._attempt += 1
        return self._backoff.delay(self._attempt)
