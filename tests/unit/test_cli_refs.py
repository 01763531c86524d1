"""The CLI's pure pieces: shortest unique id prefixes, resolving a name, id or id prefix, sizes and ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from howdah.cli._common import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_NOT_READY, EXIT_OK, EXIT_USAGE, exit_code
from howdah.cli._refs import Ambiguous, NoMatch, completions, human_age, human_size, resolve, short_ids

A = "0f3a1c2e-1111-4aaa-8bbb-000000000001"
B = "0f3a1c2e-2222-4aaa-8bbb-000000000002"
C = "7d00aa11-3333-4aaa-8bbb-000000000003"


def test_short_ids_are_at_least_eight_characters_and_long_enough_to_tell_apart() -> None:
    short = short_ids([A, B, C])
    assert short == {A: "0f3a1c2e-1", B: "0f3a1c2e-2", C: "7d00aa11"}
    assert short_ids(["abc"]) == {"abc": "abc"}  # never longer than the id
    assert short_ids([A, A]) == {A: A[:8]}  # the same id twice is one id


@given(st.lists(st.text(alphabet="0123abc", min_size=1, max_size=12), min_size=1, max_size=30))
def test_a_short_id_is_a_prefix_of_its_id_and_of_no_other(ids: list[str]) -> None:
    short = short_ids(ids, minimum=2)
    for full, prefix in short.items():
        assert full.startswith(prefix)
        others = [other for other in set(ids) if other != full and other.startswith(prefix)]
        assert not others or prefix == full  # only an id that is itself a prefix of another keeps its whole self


ROWS = [
    {"id": A, "name": "curl1", "state": "Deleted"},
    {"id": B, "name": "curl1", "state": "Up"},
    {"id": C, "name": "0f3a1c2e", "state": "Up"},  # a name that looks like an id prefix
]
LIVE = [row for row in ROWS if row["state"] != "Deleted"]


def test_an_exact_name_wins_then_an_exact_id_then_a_unique_prefix() -> None:
    assert resolve("curl1", ROWS, what="instance", named=LIVE)["id"] == B  # the deleted namesake is not named
    assert resolve("0f3a1c2e", ROWS, what="instance", named=LIVE)["id"] == C  # the name beats two id prefixes
    assert resolve(A, ROWS, what="instance", named=LIVE)["id"] == A  # a deleted one by its whole id
    assert resolve("0f3a1c2e-2", ROWS, what="instance", named=LIVE)["id"] == B
    assert resolve("7d00", ROWS, what="instance", named=LIVE)["id"] == C


def test_an_ambiguous_prefix_or_name_is_refused_listing_the_candidates() -> None:
    with pytest.raises(Ambiguous) as prefix:
        resolve("0f3a1c", ROWS, what="instance", named=LIVE)
    assert prefix.value.candidates == [f"{A} (curl1)", f"{B} (curl1)"]
    with pytest.raises(Ambiguous) as named:
        resolve("curl1", ROWS, what="instance")  # every row may be named: two are
    assert len(named.value.candidates) == 2


def test_no_match_and_too_short_a_prefix() -> None:
    with pytest.raises(NoMatch, match="no instance named 'nothing'"):
        resolve("nothing", ROWS, what="instance", named=LIVE)
    with pytest.raises(NoMatch, match="at least 4 characters"):
        resolve("7d0", ROWS, what="instance", named=LIVE)


@pytest.mark.parametrize(
    ("size", "text"),
    [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (10 * 1024**2, "10 MiB"),
     (int(1.2 * 1024**3), "1.2 GiB"), (3 * 1024**5, "3.0 PiB"), (5000 * 1024**5, "5000 PiB")],
)  # fmt: skip
def test_human_sizes(size: int | None, text: str) -> None:
    assert human_size(size) == text


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("then", "text"),
    [(None, "-"), ("not a time", "-"), (NOW, "0s ago"), (NOW - timedelta(seconds=45), "45s ago"),
     ((NOW - timedelta(minutes=3, seconds=59)).isoformat(), "3m ago"), (NOW - timedelta(hours=2), "2h ago"),
     (NOW - timedelta(days=5), "5d ago"), (NOW - timedelta(days=61), "2026-10-06"),
     (NOW + timedelta(minutes=3), "in 3m")],
)  # fmt: skip
def test_human_ages(then: datetime | str | None, text: str) -> None:
    assert human_age(then, NOW) == text


def test_http_statuses_become_the_documented_exit_codes() -> None:
    assert [exit_code(s) for s in (200, 204, 400, 422, 404, 409, 410, 503, 401, 403, 500)] == [
        EXIT_OK, EXIT_OK, EXIT_USAGE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_NOT_READY, EXIT_NOT_READY, EXIT_NOT_READY,
        EXIT_FAILED, EXIT_FAILED, EXIT_FAILED,
    ]  # fmt: skip
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_NOT_READY) == (0, 1, 2, 3, 4)


def test_completions_offer_live_names_then_ids_once_something_is_typed() -> None:
    rows = [{"id": "abcd1111-0000", "name": "shop", "state": "Up"},
            {"id": "abcd2222-0000", "name": "shop", "state": "Deleted"},
            {"id": "ef001111-0000", "name": "depot", "state": "Stopped"}]  # fmt: skip
    assert completions("", rows) == [("shop", "Up"), ("depot", "Stopped")]  # no ids before anything is typed
    assert completions("sh", rows) == [("shop", "Up")]  # the deleted one's name is not offered
    assert completions("abcd", rows) == [("abcd1111", "shop (Up)"), ("abcd2222", "shop (Deleted)")]
    assert completions("abcd1111-0", rows) == [("abcd1111-0000", "shop (Up)")]  # longer than its short form
    assert completions("zz", rows) == []
