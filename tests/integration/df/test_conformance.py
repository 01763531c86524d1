"""Conformance with pg_durable 0.2.5's documentation, keyed by doc section.

Each test here runs the examples of one section of pg_durable's docs (``docs/api-reference.md``, ``USER_GUIDE.md``,
``docs/dsl-semantics.md``) as they are written there (with the tables they need created first) and names that
section in its docstring. A section whose examples another test already runs is not run twice: ``ELSEWHERE``
names that test, and :func:`test_every_section_named_elsewhere_has_its_test` keeps those names true.
"""

from __future__ import annotations

import importlib
import json
import uuid
from typing import Any

import psycopg
import pytest

from howdah.durable import DurableApp
from tests.waiting import async_wait_until

from ..durable._helpers import running
from .test_df import Conn, finish, one

# pg_durable doc section -> the test that already runs its examples (module:function, under tests/integration).
ELSEWHERE = [
    (
        "README § quick start (a result bound with |=> and used as $name)",
        "df.test_df:test_a_sequence_binds_results_for_later_nodes",
    ),
    (
        "api-reference § df.join(a, b) / & operator",
        "df.test_df:test_row_sets_joins_conditions_and_loops",
    ),
    (
        "api-reference § df.race(a, b) / | operator (a timeout with df.sleep)",
        "df.test_df:test_a_race_is_won_by_the_first_branch_and_the_other_is_cancelled",
    ),
    (
        "api-reference § df.sleep(seconds)",
        "df.test_df:test_sleeps_take_fractions_of_a_second",
    ),
    (
        "api-reference § df.wait_for_schedule(cron_expr) (parks until the tick)",
        "df.test_df:test_wait_for_schedule_checks_the_cron_and_parks_until_the_next_tick",
    ),
    (
        "api-reference § df.http(url [, method, body, headers, timeout])",
        "df.test_df_http:test_a_request_returns_pg_durables_envelope_and_bindings_reach_it",
    ),
    (
        "api-reference § df.http_multipart(url [, method, parts, headers, timeout])",
        "df.test_df_http:test_multipart_sends_its_parts_and_takes_a_binary_handoff_whole",
    ),
    (
        "api-reference § df.start transaction_mode 'caller'",
        "df.test_df:test_signals_cancel_and_the_callers_transaction",
    ),
    (
        "api-reference § df.signal(instance_id, signal_name [, signal_data])",
        "df.test_df:test_signals_cancel_and_the_callers_transaction",
    ),
    (
        "api-reference § df.cancel(instance_id [, reason])",
        "df.test_df:test_signals_cancel_and_the_callers_transaction",
    ),
    (
        "api-reference § df.list_instances(...)",
        "df.test_df:test_listing_pages_by_cursor_and_counts",
    ),
    (
        "api-reference § df.instance_nodes(instance_id)",
        "df.test_df_inspection:test_inferred_status_marks_the_nodes_that_will_not_run",
    ),
    (
        "api-reference § Variable Functions (df.setvar, df.getvar, df.unsetvar, df.clearvars)",
        "df.test_df:test_variables_are_per_role_and_substituted_when_the_node_runs",
    ),
    (
        "api-reference § Administration Functions (df.grant_usage, df.revoke_usage)",
        "df.test_df:test_usage_is_granted_as_pg_durable_grants_it_and_revoked_whole",
    ),
    (
        "USER_GUIDE § user isolation (row-level security between two roles, SQL run as the starting role)",
        "df.test_df:test_sql_runs_as_the_role_that_started_it_and_each_role_sees_its_own",
    ),
    (
        "USER_GUIDE § df.explain",
        "df.test_df:test_explain_shows_the_graph_and_each_nodes_status",
    ),
    (
        "dsl-semantics § SQL (side-effecting SQL runs exactly once, also across a crash)",
        "durable.test_crash_recovery:test_sql_nodes_of_df_graphs_happen_exactly_once_whatever_instant_workers_are_killed_at",
    ),
]


def test_every_section_named_elsewhere_has_its_test() -> None:
    for section, where in ELSEWHERE:
        module, function = where.split(":")
        assert callable(getattr(importlib.import_module(f"tests.integration.{module}"), function, None)), section


async def result_of(conn: Conn, instance: str) -> Any:
    text = await one(conn, "SELECT df.result(%s)", (instance,))
    return None if text is None else json.loads(text)


# ------------------------------------------------------------------------------------------------ node functions
async def test_auto_wrap_and_df_sql(app: DurableApp, conn: Conn) -> None:
    """api-reference § Auto-Wrap Explained and § df.sql(query): a plain SQL string is a df.sql() node, so the two
    spellings make the same graph; df.sql('SELECT * FROM users WHERE id = 1') runs its query."""
    wrapped = await one(conn, "SELECT df.seq('SELECT 1', 'SELECT 2')")
    explicit = await one(conn, "SELECT df.seq(df.sql('SELECT 1'), df.sql('SELECT 2'))")
    assert json.loads(wrapped) == json.loads(explicit)
    await conn.execute(
        "DROP TABLE IF EXISTS public.users; CREATE TABLE public.users (id int, name text);"
        "INSERT INTO public.users VALUES (1, 'Ada'), (2, 'Bo')"
    )
    async with running(app):
        _, status, result = await finish(conn, "df.sql('SELECT * FROM users WHERE id = 1')")
    assert (status, result) == ("completed", {"rows": [{"id": 1, "name": "Ada"}], "row_count": 1})


async def test_seq_and_its_operator(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.seq(a, b) / ~> operator: df.seq('SELECT 1', 'SELECT 2'), 'SELECT 1' ~> 'SELECT 2' and
    df.sql('SELECT 1') ~> df.sleep(5) (mixed); a sequence's result is its second node's."""
    assert json.loads(await one(conn, "SELECT df.seq('SELECT 1', 'SELECT 2')")) == json.loads(
        await one(conn, "SELECT 'SELECT 1' ~> 'SELECT 2'")
    )
    mixed = json.loads(await one(conn, "SELECT df.sql('SELECT 1') ~> df.sleep(5)"))
    assert mixed["right_node"] == {"node_type": "SLEEP", "seconds": 5}
    async with running(app):
        _, status, result = await finish(conn, "df.seq('SELECT 1 AS one', 'SELECT 2 AS two')")
    assert (status, result["rows"]) == ("completed", [{"two": 2}])


async def test_substitution_patterns_on_named_results(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.as(fut, name) / |=> operator, its table of substitution patterns: $name and
    $name.column fail on no rows and on NULL, $name? and $name.column? give NULL instead, $name.* of no rows is
    an empty relation. df.as('SELECT id FROM users LIMIT 1', 'user_id') is the function form of |=>."""
    assert json.loads(await one(conn, "SELECT df.as('SELECT id FROM users LIMIT 1', 'user_id')")) == json.loads(
        await one(conn, "SELECT 'SELECT id FROM users LIMIT 1' |=> 'user_id'")
    )
    none = "'SELECT 1 AS v WHERE false' |=> 'x'"
    null = "'SELECT NULL::int AS v' |=> 'x'"
    async with running(app):
        outcomes = {
            label: await finish(conn, f"{source} ~> '{query}'")
            for label, source, query in [
                ("scalar, no rows", none, "SELECT $x AS got"),
                ("column, no rows", none, "SELECT $x.v AS got"),
                ("scalar, NULL", null, "SELECT $x AS got"),
                ("column, NULL", null, "SELECT $x.v AS got"),
                ("safe scalar, no rows", none, "SELECT $x? AS got"),
                ("safe column, no rows", none, "SELECT $x.v? AS got"),
                ("safe scalar, NULL", null, "SELECT $x? AS got"),
                ("safe column, NULL", null, "SELECT $x.v? AS got"),
                ("rows, none", none, "SELECT count(*) AS got FROM $x.*"),
            ]
        }
    failed = {label for label, (_, status, _) in outcomes.items() if status == "failed"}
    assert failed == {"scalar, no rows", "column, no rows", "scalar, NULL", "column, NULL"}
    for label in ("safe scalar, no rows", "safe column, no rows", "safe scalar, NULL", "safe column, NULL"):
        assert outcomes[label][2] == {"rows": [{"got": None}], "row_count": 1}, label
    assert outcomes["rows, none"][2] == {"rows": [{"got": 0}], "row_count": 1}


async def test_join3_runs_three_branches(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.join3(a, b, c): df.join3('SELECT 1', 'SELECT 2', 'SELECT 3') waits for all three; the
    result is the list of their results."""
    async with running(app):
        _, status, result = await finish(conn, "df.join3('SELECT 1 AS a', 'SELECT 2 AS b', 'SELECT 3 AS c')")
    assert status == "completed"
    assert [branch["rows"] for branch in result] == [[{"a": 1}], [{"b": 2}], [{"c": 3}]]


async def test_a_signal_wins_a_race_against_a_sleep(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.race(a, b) / | operator: df.race(df.sleep(10), df.wait_for_signal('cancel')) and its
    operator form df.sleep(10) | df.wait_for_signal('cancel'): the signal, sent first, wins."""
    assert json.loads(await one(conn, "SELECT df.race(df.sleep(10), df.wait_for_signal('cancel'))")) == json.loads(
        await one(conn, "SELECT df.sleep(10) | df.wait_for_signal('cancel')")
    )
    async with running(app):
        instance = await one(conn, "SELECT df.start(df.sleep(10) | df.wait_for_signal('cancel'))")
        waiting = "SELECT count(*) = 2 FROM howdah.workflows WHERE parent_id = %s AND status IN ('sleeping', 'waiting')"
        await async_wait_until(lambda: one(conn, waiting, (f"df:{instance}",)), what="both branches parked")
        await one(conn, "SELECT df.signal(%s, 'cancel', '{\"why\": \"now\"}')", (instance,))
        assert await one(conn, "SELECT df.await_instance(%s, 8)", (instance,)) == "completed"
    assert await result_of(conn, instance) == {"signal_name": "cancel", "timed_out": False, "data": {"why": "now"}}


async def test_if_and_its_operators(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.if(condition, then, else) / ?> !> operators:
    df.if('SELECT count(*) > 0 FROM q', 'SELECT ''yes''', 'SELECT ''no''') and
    'SELECT true' ?> 'SELECT ''yes''' !> 'SELECT ''no'''."""
    await conn.execute("CREATE TABLE public.q (x int)")
    async with running(app):
        _, status, empty = await finish(conn, "df.if('SELECT count(*) > 0 FROM q', 'SELECT ''yes''', 'SELECT ''no''')")
        await conn.execute("INSERT INTO q VALUES (1)")
        _, _, full = await finish(conn, "df.if('SELECT count(*) > 0 FROM q', 'SELECT ''yes''', 'SELECT ''no''')")
        _, _, operators = await finish(conn, "'SELECT true' ?> 'SELECT ''yes''' !> 'SELECT ''no'''")
    assert status == "completed"
    assert [r["rows"][0]["?column?"] for r in (empty, full, operators)] == ["no", "yes", "yes"]


async def test_if_rows_branches_on_a_named_result(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.if_rows(result_name, then, else): df.if_rows('data', 'SELECT $data.id',
    'SELECT ''no data''') takes the first branch when the result named data has rows, the second when it has
    none; no query runs for the decision."""
    graph = "'{source}' |=> 'data' ~> df.if_rows('data', 'SELECT $data.id', 'SELECT ''no data''')"
    async with running(app):
        _, status, found = await finish(conn, graph.format(source="SELECT 7 AS id"))
        _, _, missing = await finish(conn, graph.format(source="SELECT 7 AS id WHERE false"))
    assert status == "completed"
    assert (found["rows"], missing["rows"]) == ([{"?column?": 7}], [{"?column?": "no data"}])


async def test_a_while_loop_checks_its_condition_after_each_body(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.loop(body, condition) and dsl-semantics § 6 Loop: df.loop('SELECT process_item()',
    'SELECT count(*) > 0 FROM queue') is a do-while — the body runs, then the condition is asked — so it drains
    the queue, and runs once on an empty one."""
    await conn.execute(
        "CREATE TABLE public.queue (id int); CREATE TABLE public.processed (n serial, id int);"
        "CREATE FUNCTION public.process_item() RETURNS int LANGUAGE sql AS $$"
        " WITH one AS (DELETE FROM queue WHERE id = (SELECT min(id) FROM queue) RETURNING id)"
        " INSERT INTO processed (id) SELECT id FROM one UNION ALL SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM one)"
        " RETURNING n $$;"
        "INSERT INTO public.queue SELECT generate_series(1, 3)"
    )
    async with running(app):
        _, status, _ = await finish(conn, "df.loop('SELECT process_item()', 'SELECT count(*) > 0 FROM queue')")
        drained = await (await conn.execute("SELECT id FROM processed ORDER BY n")).fetchall()
        _, empty_status, _ = await finish(conn, "df.loop('SELECT process_item()', 'SELECT count(*) > 0 FROM queue')")
    assert (status, drained) == ("completed", [(1,), (2,), (3,)])
    assert empty_status == "completed"
    assert await one(conn, "SELECT count(*) FROM processed") == 4  # the body ran once more, on the empty queue


async def test_break_with_and_without_a_value(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.break([value]): df.break() exits the loop with null, df.break('{"status": "done"}')
    with that JSON value — a literal, not run as SQL."""
    assert json.loads(await one(conn, 'SELECT df.break(\'{"status": "done"}\')'))["break_value"] == (
        '{"status": "done"}'
    )
    async with running(app):
        _, status, nothing = await finish(conn, "df.loop('SELECT 1' ~> df.break())")
        _, _, value = await finish(conn, "df.loop('SELECT 1' ~> df.break('{\"status\": \"done\"}'))")
    assert (status, nothing, value) == ("completed", None, {"status": "done"})


async def test_wait_for_schedule_takes_the_documented_expressions(conn: Conn) -> None:
    """api-reference § df.wait_for_schedule(cron_expr): '*/5 * * * *' (every 5 minutes) and '0 9 * * 1-5'
    (weekdays at 9am) make WAIT_SCHEDULE nodes; USER_GUIDE § Cron Expression Format's five fields."""
    for cron in ("*/5 * * * *", "0 9 * * 1-5", "* * * * *", "0 0 1 * *"):
        node = json.loads(await one(conn, "SELECT df.wait_for_schedule(%s)", (cron,)))
        assert node == {"node_type": "WAIT_SCHEDULE", "cron_expr": cron}


async def test_a_signal_wait_times_out(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.wait_for_signal(name [, timeout]) and dsl-semantics § SIGNAL: with a timeout the wait
    ends without a signal, the result {signal_name, timed_out: true, data: null}."""
    assert json.loads(await one(conn, "SELECT df.wait_for_signal('approval', 3600)"))["timeout_seconds"] == 3600
    assert json.loads(await one(conn, "SELECT df.wait_for_signal('approval')"))["timeout_seconds"] is None
    async with running(app):
        _, status, result = await finish(conn, "df.wait_for_signal('approval', 1)")
    assert (status, result) == ("completed", {"signal_name": "approval", "timed_out": True, "data": None})


# ------------------------------------------------------------------------------------------------ control functions
@pytest.mark.parametrize("explicit", [True, False], ids=["in a transaction", "autocommit"])
async def test_transaction_mode_new_is_refused_with_a_hint(conn: Conn, explicit: bool) -> None:
    """api-reference § df.start transaction_mode and USER_GUIDE § Transaction Semantics: 'new' commits the start
    on a separate session, whether or not the caller is in an explicit transaction. A function installed as
    plain SQL cannot commit apart from its caller, so Howdah refuses 'new' in both cases, with SQLSTATE 0A000
    (feature_not_supported), a message saying why and a hint saying what to do, and starts nothing."""
    before = await one(conn, "SELECT count(*) FROM df.instances")
    graph = "'INSERT INTO audit_log (message) VALUES (''x'')', 'audit', transaction_mode => 'new'"
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        if explicit:
            async with conn.transaction():
                await conn.execute(f"SELECT df.start({graph})")
        else:
            await conn.execute(f"SELECT df.start({graph})")
    diag = refused.value.diag
    assert diag.sqlstate == "0A000"
    assert diag.message_primary is not None and "cannot commit apart from the caller" in diag.message_primary
    assert diag.message_hint is not None and "connection of its own" in diag.message_hint
    assert "autocommit" in diag.message_hint
    assert await one(conn, "SELECT count(*) FROM df.instances") == before
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid transaction_mode"):
        await conn.execute("SELECT df.start('SELECT 1', transaction_mode => 'neww')")  # never the default


async def test_status_takes_an_instance_id_not_a_label(conn: Conn) -> None:
    """api-reference § df.status(instance_id): a label gives NULL; resolve it first with
    SELECT df.status(instance_id) FROM df.list_instances() WHERE label = 'my-job'."""
    label = f"my-job-{uuid.uuid4().hex[:6]}"
    instance = await one(conn, "SELECT df.start('SELECT 1', %s)", (label,))
    assert await one(conn, "SELECT df.status(%s)", (label,)) is None
    assert await one(conn, "SELECT df.status(%s)", (instance,)) == "pending"
    resolved = await (
        await conn.execute("SELECT df.status(instance_id) FROM df.list_instances() WHERE label = %s", (label,))
    ).fetchall()
    assert resolved == [("pending",)]


async def test_the_documented_instance_nodes_query(app: DurableApp, conn: Conn) -> None:
    """api-reference § df.instance_nodes(instance_id): its example query, physical and derived status side by
    side, status_details cast to jsonb for the execution stamp."""
    async with running(app):
        instance, _, _ = await finish(conn, "'SELECT 1' ~> 'SELECT 2'")
    shown = await (
        await conn.execute(
            "SELECT node_id, node_type, status AS physical, inferred_status,"
            "  status_details::jsonb->>'execution_id' AS execution_id"
            " FROM df.instance_nodes(%s) ORDER BY node_id",
            (instance,),
        )
    ).fetchall()
    assert sorted(row[1:] for row in shown) == [
        ("SQL", "completed", "completed", f"{instance}::1"),
        ("SQL", "completed", "completed", f"{instance}::1"),
        ("THEN", "completed", "completed", f"{instance}::1"),
    ]


# ------------------------------------------------------------------------------------------------ user guide
async def test_conditions_follow_the_truthiness_table(app: DurableApp, conn: Conn) -> None:
    """USER_GUIDE § Condition Evaluation, its truthiness rules and examples: the first column of the first row
    decides; false, 0, 'no', 'false', '' and NULL are false, as is a query with no rows; true, non-zero numbers and
    other non-empty strings are true."""
    await conn.execute(
        "DROP TABLE IF EXISTS public.users; CREATE TABLE public.users (id int, name text, active boolean)"
    )
    cases = {
        "SELECT true": True,
        "SELECT false": False,
        "SELECT 1": True,
        "SELECT 0": False,
        "SELECT 0.0": False,
        "SELECT ''yes''": True,
        "SELECT ''no''": False,
        "SELECT ''t''": True,
        "SELECT ''f''": False,
        "SELECT ''''": False,
        "SELECT ''pending''": True,
        "SELECT NULL": False,
        "SELECT count(*) > 0 FROM users": False,
        "SELECT count(*) FROM users": False,
        "SELECT EXISTS(SELECT 1 FROM users)": False,
        "SELECT name FROM users WHERE id = 999": False,
    }
    decided = {}
    async with running(app):
        for condition in cases:
            instance, status, result = await finish(
                conn, f"'{condition}' ?> 'SELECT true AS truthy' !> 'SELECT false AS truthy'"
            )
            assert status == "completed", (
                condition,
                await one(conn, "SELECT error FROM df.instances WHERE id = %s", (instance,)),
            )
            decided[condition] = result["rows"][0]["truthy"]
    assert decided == cases


async def test_result_format_of_sql_sleep_and_schedule_nodes(app: DurableApp, conn: Conn) -> None:
    """USER_GUIDE § Result Format: a SQL node's result is {"rows": [...], "row_count": n} (no rows:
    {"rows": [], "row_count": 0}); df.sleep() gives {"slept": true, "seconds": n}."""
    async with running(app):
        _, _, rows = await finish(conn, "'SELECT 42 AS answer'")
        _, _, empty = await finish(conn, "'SELECT 1 WHERE false'")
        _, _, slept = await finish(conn, "df.sleep(0)")
    assert rows == {"rows": [{"answer": 42}], "row_count": 1}
    assert empty == {"rows": [], "row_count": 0}
    assert slept == {"slept": True, "seconds": 0}
