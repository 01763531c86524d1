import pytest

from howdah.pg.queries import Queries, QueryError, parse_queries

FILE = """
-- The instances of the control plane.

-- name: one
-- The first query, documented.
SELECT 1;

-- name: two
SELECT %(a)s
  -- a comment inside the statement stays
  FROM t;
"""


def test_named_queries_are_split_and_their_doc_comments_dropped() -> None:
    queries = parse_queries(FILE)
    assert queries == {"one": "SELECT 1", "two": "SELECT %(a)s\n  -- a comment inside the statement stays\n  FROM t"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;", "defined twice"),
        ("-- name: a\n-- nothing but a comment\n", "empty"),
        ("SELECT 1;\n-- name: a\nSELECT 2;", "before the first"),
    ],
)
def test_malformed_files_are_refused(text: str, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        parse_queries(text, "x.sql")


def test_an_unknown_name_is_a_clear_error() -> None:
    queries = Queries("test", {"one": "SELECT 1"})
    assert queries.text("one") == "SELECT 1"
    assert list(queries) == ["one"]
    with pytest.raises(QueryError, match="no query named 'three' in test"):
        queries["three"]
