import random

import pytest

from howdah.backoff import Backoff
from howdah.durable import RetryPolicy


def test_delays_grow_by_the_factor_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.05, factor=2, cap=0.3)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    assert backoff.delay(0) == backoff.delay(-3) == 0.05  # no try yet counts as the first


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert Backoff(initial=1, cap=300).delay(10_000) == 300


def test_jitter_stays_between_zero_and_the_ceiling() -> None:
    backoff = Backoff(initial=1, factor=3, cap=100, jitter=True)
    rng = random.Random(7)
    draws = [backoff.delay(4, rng) for _ in range(200)]
    assert all(0 <= d <= 27 for d in draws)
    assert len(set(draws)) > 100  # really drawn, not the ceiling


def test_delays_iterator_counts_tries() -> None:
    delays = Backoff(initial=0.005, factor=2, cap=0.1).delays()
    assert [next(delays) for _ in range(7)] == [0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1]


@pytest.mark.parametrize("kwargs", [{"initial": -1}, {"cap": -1}, {"factor": 0.5}])
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_a_retry_policy_waits_what_its_backoff_says() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=0.2, factor=3, max_delay=4, jitter=False)
    assert policy.backoff == Backoff(initial=0.2, factor=3, cap=4)
    assert [policy.delay(n) for n in range(1, 6)] == [policy.backoff.delay(n) for n in range(1, 6)]
    assert RetryPolicy().backoff.jitter  # full jitter stays the policies' default
