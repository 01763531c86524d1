"""``$name`` references in df SQL nodes (pure): what each form substitutes, and the errors pg_durable's users
know (no rows, NULL, too many rows)."""

from __future__ import annotations

from typing import Any

import pytest

from howdah.df import MAX_ROWS, BindingError, substitute, truthy
from howdah.df._runner import fan_out

ROWS: dict[str, Any] = {
    "a": {"rows": [{"n": 42, "s": "it's", "j": {"k": [1]}, "b": True, "z": None}], "row_count": 1},
    "ab": {"rows": [{"x": 1.5}], "row_count": 1},
    "none": {"rows": [], "row_count": 0},
    "sig": {"signal_name": "go", "timed_out": False, "data": {"k": 1}},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT $a", "SELECT 42"),  # first column of the first row
        ("SELECT $a.s", "SELECT 'it''s'"),  # strings quoted, quotes doubled
        ("SELECT $a.j::jsonb", """SELECT '{"k":[1]}'::jsonb"""),
        ("SELECT $a.b", "SELECT true"),
        ("SELECT $ab", "SELECT 1.5"),  # the longest bound name the text continues with
        ("SELECT $a.z?", "SELECT NULL"),
        ("SELECT $none?, $none.n?", "SELECT NULL, NULL"),
        ("SELECT $a.nope", "SELECT $a.nope"),  # a column the row lacks: Postgres reports it
        ("SELECT $abc, $1, '$'", "SELECT $abc, $1, '$'"),  # no such binding: left as written
        ("SELECT $sig::jsonb", """SELECT '{"signal_name":"go","timed_out":false,"data":{"k":1}}'::jsonb"""),
        ("SELECT $sig.signal_name", "SELECT 'go'"),
        ("SELECT * FROM $none.*", 'SELECT * FROM (SELECT NULL WHERE false) AS "none"'),
    ],
)
def test_references_become_sql_literals(text: str, expected: str) -> None:
    assert substitute(text, ROWS) == expected


def test_a_row_set_becomes_a_values_list_with_its_columns() -> None:
    rows = {"r": {"rows": [{"id": 1, "name": "a"}, {"id": 2, "name": "b'c"}], "row_count": 2}}
    assert substitute("SELECT * FROM $r.*", rows) == (
        """SELECT * FROM (VALUES (1, 'a'::text), (2, 'b''c'::text)) AS "r"("id", "name")"""
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT $none", "$none has no rows — query returned zero results"),
        ("SELECT $a.z", "$a.z is NULL"),
    ],
)
def test_missing_values_are_named_errors(text: str, message: str) -> None:
    with pytest.raises(BindingError, match=message.replace("$", r"\$")):
        substitute(text, ROWS)


def test_row_sets_are_capped() -> None:
    big = {"big": {"rows": [{"n": i} for i in range(MAX_ROWS + 1)], "row_count": MAX_ROWS + 1}}
    with pytest.raises(BindingError, match="exceeding the maximum of 10000"):
        substitute("SELECT * FROM $big.*", big)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"rows": [{"v": True}], "row_count": 1}, True),
        ({"rows": [{"v": 0}], "row_count": 1}, False),
        ({"rows": [{"v": "yes"}], "row_count": 1}, True),
        ({"rows": [{"v": "f"}], "row_count": 1}, False),
        ({"rows": [{"v": "0.0"}], "row_count": 1}, False),
        ({"rows": [{"v": None}], "row_count": 1}, False),
        ({"rows": [], "row_count": 0}, False),
        ({"rows": [{"v": "anything"}], "row_count": 1}, True),
    ],
)
def test_a_conditions_truth_is_its_first_value(result: Any, expected: bool) -> None:
    assert truthy(result) is expected


def test_nested_unnamed_joins_are_one_fan_out_and_named_ones_stay_branches() -> None:
    def sql(q: str) -> dict[str, Any]:
        return {"node_type": "SQL", "query": q, "node_id": q}

    def join(a: dict[str, Any], b: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"node_type": "JOIN", "left_node": a, "right_node": b, "node_id": f"j{a['node_id']}", **extra}

    inner, named = join(sql("a"), sql("b")), join(sql("c"), sql("d"), result_name="cd")
    visited: set[str] = set()
    shape, branches = fan_out(join(join(inner, named), sql("e")), visited)
    assert shape == [[[0, 1], 2], 3]  # (a & b) & (c & d |=> 'cd') & e
    assert [b["node_id"] for b in branches] == ["a", "b", "jc", "e"]
    assert visited == {"jja", "ja"}


def test_raw_references_are_values_as_they_are_for_json_text() -> None:
    assert (
        substitute('{"n": $a, "s": "$a.s", "j": $a.j}', ROWS, raw=True) == """{"n": 42, "s": "it's", "j": {"k":[1]}}"""
    )
    assert substitute("$sig", ROWS, raw=True) == '{"signal_name":"go","timed_out":false,"data":{"k":1}}'
    assert substitute("$a.nope", ROWS, raw=True) == "$a.nope"
    with pytest.raises(BindingError, match="has no rows"):
        substitute("$none", ROWS, raw=True)
