"""pg_durable's SQL API (schema ``df``) on a real Postgres, run by an in-process Howdah worker: builders and
operators, bindings, sequence / join / if / loop, signals, cancel, failures, transactions and roles.

Scenarios follow pg_durable's documented examples (its README's sequence-with-binding example, the user guide's
sections on joins, conditionals, loops with df.break, signals and row-level security)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import psycopg
import pytest

from howdah.durable import DurableApp
from tests.waiting import async_wait_until

from ..durable._helpers import running

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


async def one(conn: Conn, query: str, params: Any = None) -> Any:
    row = await (await conn.execute(query, params)).fetchone()
    assert row is not None
    return row[0]


async def finish(conn: Conn, graph: str, params: Any = None, timeout: int = 20) -> tuple[str, str, Any]:
    """Start ``graph`` (an SQL expression), wait for it; (id, status, result)."""
    instance = await one(conn, f"SELECT df.start({graph})", params)
    status = await one(conn, "SELECT df.await_instance(%s, %s)", (instance, timeout))
    result = await one(conn, "SELECT df.result(%s)", (instance,))
    return instance, status, None if result is None else json.loads(result)


# ------------------------------------------------------------------------------------------------ builders
async def test_builders_make_nodes_and_plain_sql_is_a_node(conn: Conn) -> None:
    # every df operator has Postgres's one precedence of "other" operators, left-associative, as pg_durable's
    node = json.loads(await one(conn, "SELECT 'SELECT 1' ~> (df.sql('SELECT 2') |=> 'two')"))
    assert node == {
        "node_type": "THEN",
        "left_node": {"node_type": "SQL", "query": "SELECT 1"},
        "right_node": {"node_type": "SQL", "query": "SELECT 2", "result_name": "two"},
    }
    joined = json.loads(await one(conn, "SELECT df.join3('SELECT 1', 'SELECT 2', 'SELECT 3')"))
    assert joined["node_type"] == "JOIN" and len(joined["extra_nodes"]) == 1
    decided = json.loads(await one(conn, "SELECT 'SELECT true' ?> 'SELECT 1' !> 'SELECT 2'"))
    assert decided["node_type"] == "IF" and decided["condition_node"]["query"] == "SELECT true"
    assert json.loads(await one(conn, "SELECT @> ('SELECT 1')"))["node_type"] == "LOOP"
    bound_last = json.loads(await one(conn, "SELECT 'SELECT 1' ~> 'SELECT 2' |=> 'both'"))
    assert bound_last["node_type"] == "THEN" and bound_last["result_name"] == "both"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("df.as('SELECT 1', 'bad name')", "is not a valid identifier"),
        ("df.sleep(-1)", "Sleep duration must be non-negative"),
        ("df.wait_for_signal('')", "Signal name cannot be empty"),
        ("df.seq('{\"node_type\": \"NOPE\"}', 'SELECT 1')", "Unknown node_type 'NOPE'"),
        ("'SELECT 1' !> 'SELECT 2'", "left side of !> must be a ?> expression"),
        ("df.start('SELECT 1', transaction_mode => 'later')", 'invalid transaction_mode "later"'),
        ("df.start(df.break())", "df.break() outside a loop"),
    ],
)
async def test_bad_graphs_are_refused_by_name_and_nothing_is_started(conn: Conn, expression: str, message: str) -> None:
    before = await one(conn, "SELECT count(*) FROM df.instances")
    with pytest.raises(psycopg.Error, match=re.escape(message)):
        await conn.execute(f"SELECT {expression}")
    assert await one(conn, "SELECT count(*) FROM df.instances") == before


# ------------------------------------------------------------------------------------------------ running
async def test_a_sequence_binds_results_for_later_nodes(app: DurableApp, conn: Conn) -> None:
    """pg_durable's first example: a query's result bound with |=> and used by the next node as $name."""
    table = f"public.t_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE TABLE {table} (x int, s text)")
    async with running(app):
        instance, status, result = await finish(
            conn,
            f"""'SELECT 41 + 1 AS answer, ''it''''s'' AS said' |=> 'a'
                ~> 'INSERT INTO {table} VALUES ($a, $a.said) RETURNING x, s'""",
        )
    assert status == "completed", await one(conn, "SELECT error FROM df.instances WHERE id = %s", (instance,))
    assert result == {"rows": [{"x": 42, "s": "it's"}], "row_count": 1}
    rows = await (await conn.execute(f"SELECT x, s FROM {table}")).fetchall()
    assert rows == [(42, "it's")]  # once
    nodes = await (await conn.execute("SELECT node_type, status FROM df.instance_nodes(%s)", (instance,))).fetchall()
    assert sorted(nodes) == [("SQL", "completed"), ("SQL", "completed"), ("THEN", "completed")]


async def test_row_sets_joins_conditions_and_loops(app: DurableApp, conn: Conn) -> None:
    counter = f"public.c_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE TABLE {counter} (n int); INSERT INTO {counter} VALUES (0)")
    async with running(app):
        _, status, summed = await finish(
            conn, "'SELECT g AS n FROM generate_series(1, 4) g' |=> 'r' ~> 'SELECT sum(n) AS total FROM $r.*'"
        )
        assert (status, summed["rows"]) == ("completed", [{"total": 10}])
        _, status, joined = await finish(conn, "('SELECT 1 AS a' & ('SELECT 2 AS b' ~> 'SELECT 3 AS c'))")
        assert status == "completed"
        assert [branch["rows"] for branch in joined] == [[{"a": 1}], [{"c": 3}]]
        _, status, nested = await finish(conn, "'SELECT 1 AS a' & 'SELECT 2 AS b' & 'SELECT 3 AS c'")
        assert status == "completed"  # one fan-out of three nodes, the results nested as the joins were written
        assert [[b["rows"] for b in nested[0]], nested[1]["rows"]] == [[[{"a": 1}], [{"b": 2}]], [{"c": 3}]]
        _, status, chosen = await finish(conn, "'SELECT 0' ?> 'SELECT ''yes'' AS v' !> 'SELECT ''no'' AS v'")
        assert (status, chosen["rows"]) == ("completed", [{"v": "no"}])
        _, status, looped = await finish(
            conn,
            f"""@> ('UPDATE {counter} SET n = n + 1 RETURNING n' |=> 'c'
                    ~> df.if('SELECT $c >= 3', df.break('"done"'), 'SELECT 0'))""",
        )
    assert (status, looped) == ("completed", "done")
    assert await one(conn, f"SELECT n FROM {counter}") == 3


async def test_a_failing_node_fails_the_instance_with_postgres_message_and_the_node_named(
    app: DurableApp, conn: Conn
) -> None:
    async with running(app):
        instance, status, result = await finish(conn, "'SELECT 1 AS ok' ~> 'SELECT 1 / 0'")
        missing, missing_status, _ = await finish(conn, "'SELECT 1 WHERE false' |=> 'none' ~> 'SELECT $none'")
    assert (status, result) == ("failed", None)
    error = await one(conn, "SELECT error FROM df.instances WHERE id = %s", (instance,))
    failed = await (await conn.execute("SELECT node_id FROM df.instance_nodes(%s) WHERE status = 'failed'",
                                       (instance,))).fetchall()  # fmt: skip
    assert "division by zero" in error and len(failed) == 1 and failed[0][0] in error
    assert missing_status == "failed"
    assert "$none has no rows" in await one(conn, "SELECT error FROM df.instances WHERE id = %s", (missing,))


async def test_signals_cancel_and_the_callers_transaction(app: DurableApp, conn: Conn) -> None:
    async with running(app):
        waiting = await one(conn, "SELECT df.start(df.wait_for_signal('go') |=> 's' ~> 'SELECT $s AS got')")
        await one(conn, "SELECT df.signal(%s, 'go', '{\"k\": 1}')", (waiting,))
        assert await one(conn, "SELECT df.await_instance(%s, 20)", (waiting,)) == "completed"
        got = json.loads(json.loads(await one(conn, "SELECT df.result(%s)", (waiting,)))["rows"][0]["got"])
        assert got == {"signal_name": "go", "timed_out": False, "data": {"k": 1}}

        sleeper = await one(conn, "SELECT df.start(df.sleep(3600) ~> 'SELECT 1')")
        assert (await one(conn, "SELECT df.cancel(%s)", (sleeper,))).startswith(f"Instance {sleeper} cancelled")
        assert await one(conn, "SELECT df.await_instance(%s, 5)", (sleeper,)) == "cancelled"

        async with conn.transaction(force_rollback=True):  # 'caller': the instance exists only if this commits
            gone = await one(conn, "SELECT df.start('SELECT 1')")
        assert await one(conn, "SELECT df.status(%s)", (gone,)) is None
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            await conn.execute("SELECT df.start('SELECT 1', transaction_mode => 'new')")


async def test_sql_runs_as_the_role_that_started_it_and_each_role_sees_its_own(
    app: DurableApp, conn: Conn, db_url: str
) -> None:
    """A role cannot do through df what it cannot do directly, and sees and steers only its own instances."""
    alice, bob = f"alice_{uuid.uuid4().hex[:6]}", f"bob_{uuid.uuid4().hex[:6]}"
    secret = f"public.secret_{uuid.uuid4().hex[:6]}"
    for role in (alice, bob):
        await conn.execute(f"CREATE ROLE {role}")
        await conn.execute("SELECT df.grant_usage(%s)", (role,))
    await conn.execute(f"CREATE TABLE {secret} (v text); INSERT INTO {secret} VALUES ('s')")
    async with running(app):
        await conn.execute(f"SET ROLE {alice}")
        mine, status, result = await finish(conn, "'SELECT current_user AS who'")
        denied, denied_status, _ = await finish(conn, f"'SELECT v FROM {secret}'")
        await conn.execute(f"SET ROLE {bob}")
        assert await one(conn, "SELECT df.status(%s)", (mine,)) is None  # alice's: invisible to bob
        with pytest.raises(psycopg.Error, match="not found or access denied"):
            await conn.execute("SELECT df.cancel(%s)", (mine,))
        await conn.execute("RESET ROLE")
    assert (status, result["rows"]) == ("completed", [{"who": alice}])
    assert denied_status == "failed"
    assert "permission denied" in await one(conn, "SELECT error FROM df.instances WHERE id = %s", (denied,))


async def test_listing_pages_by_cursor_and_counts(app: DurableApp, conn: Conn) -> None:
    label = f"batch-{uuid.uuid4().hex[:6]}"
    async with running(app):
        ids = [await one(conn, "SELECT df.start('SELECT 1', %s)", (label,)) for _ in range(5)]
        for instance in ids:
            assert await one(conn, "SELECT df.await_instance(%s, 20)", (instance,)) == "completed"
    seen, cursor = [], None
    while True:
        page = await (
            await conn.execute(
                "SELECT instance_id, next_cursor FROM df.list_instances('completed', 2, %s, %s)", (label, cursor)
            )
        ).fetchall()
        seen += [row[0] for row in page]
        assert len({row[1] for row in page}) == 1  # the same cursor on every row of a page
        cursor = page[-1][1] if page else None
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5  # every one once, newest first
    basic = await conn.execute("SELECT * FROM df.list_instances('completed', 1)")
    assert [c.name for c in basic.description or []] == [
        "instance_id",
        "label",
        "function_name",
        "status",
        "execution_count",
        "output",
    ]  # pg_durable's two overloads: 6 columns, and 9 with label_filter (and after_cursor)
    paged = await conn.execute("SELECT * FROM df.list_instances(NULL, 1, NULL)")
    assert len(paged.description or []) == 9 and (await paged.fetchone())[4] == 1  # type: ignore[index]
    info = await (await conn.execute("SELECT label, status, output FROM df.instance_info(%s)", (ids[0],))).fetchone()
    assert info is not None and info[:2] == (label, "completed") and json.loads(info[2])["row_count"] == 1
    metrics = await (await conn.execute("SELECT * FROM df.metrics()")).fetchone()
    total, running_now, completed, failed, executions, events = metrics  # type: ignore[misc]
    assert completed >= 5 and total >= completed + failed + running_now
    assert executions >= completed and events >= completed  # pg_durable's six columns
    with pytest.raises(psycopg.Error, match="limit_count must be between 1 and 1000"):
        await conn.execute("SELECT * FROM df.list_instances(NULL, 0)")


async def test_variables_are_per_role_and_substituted_when_the_node_runs(app: DurableApp, conn: Conn) -> None:
    assert await one(conn, "SELECT df.setvar('threshold', '100')") == "OK"
    assert await one(conn, "SELECT df.getvar('threshold')") == "100"
    async with running(app):
        _, status, result = await finish(
            conn, "'SELECT {threshold} + 1 AS n, ''{sys_label}'' AS l, ''{unknown}'' AS u'", None
        )
    assert status == "completed"
    assert result["rows"] == [{"n": 101, "l": "", "u": "{unknown}"}]
    assert await one(conn, "SELECT df.unsetvar('threshold')") == "OK"
    assert await one(conn, "SELECT df.getvar('threshold')") is None
    with pytest.raises(psycopg.Error, match="not a valid identifier"):
        await conn.execute("SELECT df.setvar('no good', 'x')")


async def test_explain_shows_the_graph_and_each_nodes_status(app: DurableApp, conn: Conn) -> None:
    dry = await one(conn, "SELECT df.explain('SELECT 1' |=> 'one' ~> ('SELECT 2' & 'SELECT 3'))")
    assert dry.splitlines() == [
        "→ SQL: SELECT 1 |=> 'one'",
        "→ JOIN (2)",
        "  ║ branch 1:",
        "    → SQL: SELECT 2",
        "  ║ branch 2:",
        "    → SQL: SELECT 3",
    ]
    async with running(app):
        instance, _, _ = await finish(conn, "'SELECT 1' ~> 'SELECT 1 / 0'", None)
    explained = await one(conn, "SELECT df.explain(%s)", (instance,))
    lines = explained.splitlines()
    assert lines[0] == f"Instance: {instance}" and lines[1] == "Status:   ✗ failed"
    assert "division by zero" in lines[2]
    assert lines[4:] == ["→ ✓ SQL: SELECT 1", "→ ✗ SQL: SELECT 1 / 0"]
    assert await one(conn, "SELECT df.explain('ffffffff')") == "Instance 'ffffffff' not found"
    assert "Unknown node_type" in await one(conn, """SELECT df.explain('{"node_type": "NOPE"}')""")


async def test_a_race_is_won_by_the_first_branch_and_the_other_is_cancelled(app: DurableApp, conn: Conn) -> None:
    """pg_durable's timeout idiom: df.sleep(n) | work. The sleeping loser is cancelled, not waited for."""
    async with running(app):
        instance, status, result = await finish(conn, "df.sleep(3600) | ('SELECT 1 AS fast' |=> 'f')")
        assert (status, result["rows"]) == ("completed", [{"fast": 1}])
        # the losing branch's workflow is cancelled rather than left sleeping for an hour
        losers = await (
            await conn.execute(
                "SELECT status FROM howdah.workflows WHERE parent_id = %s AND status <> 'succeeded'",
                (f"df:{instance}",),
            )
        ).fetchall()
        assert losers == [("cancelled",)]
        _, status, result = await finish(conn, "(df.sleep(0) ~> 'SELECT ''timeout'' AS r') | 'SELECT pg_sleep(3)'")
        assert (status, result["rows"]) == ("completed", [{"r": "timeout"}])
        failed, failed_status, _ = await finish(conn, "'SELECT 1 / 0' | df.sleep(3600)")
    assert failed_status == "failed"
    assert "division by zero" in await one(conn, "SELECT error FROM df.instances WHERE id = %s", (failed,))
    assert json.loads(await one(conn, "SELECT df.race('SELECT 1', 'SELECT 2')"))["node_type"] == "RACE"


async def test_wait_for_schedule_checks_the_cron_and_parks_until_the_next_tick(app: DurableApp, conn: Conn) -> None:
    with pytest.raises(psycopg.Error, match="Invalid cron expression"):
        await conn.execute("SELECT df.wait_for_schedule('every day')")
    async with running(app):
        waiting = await one(conn, "SELECT df.start(df.wait_for_schedule('0 0 1 1 *') ~> 'SELECT 1')")

        async def parked() -> bool:
            row = await (
                await conn.execute("SELECT status FROM howdah.workflows WHERE id = %s", (f"df:{waiting}",))
            ).fetchone()
            return row is not None and row[0] == "sleeping"

        await async_wait_until(parked, what="the instance to park until the next new year", timeout=20)
        assert await one(conn, "SELECT df.status(%s)", (waiting,)) == "running"
        await one(conn, "SELECT df.cancel(%s)", (waiting,))


async def test_a_graph_calls_a_python_workflow_it_is_allowed_to(app: DurableApp, conn: Conn) -> None:
    """An extension of pg_durable's API: df.workflow(name, args) runs a Python workflow registered with Howdah and
    its result is the node's; a role needs df.allow_workflow for it (the workflow runs with the worker's rights)."""

    @app.workflow("double")
    async def double(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
        return {"twice": args["n"] * 2}

    role = f"carol_{uuid.uuid4().hex[:6]}"
    await conn.execute(f"CREATE ROLE {role}")
    await conn.execute("SELECT df.grant_usage(%s)", (role,))
    graph = """'SELECT 21 AS n' |=> 'x' ~> df.workflow('double', '{"n": $x.n}') |=> 'd' ~> 'SELECT $d.twice AS got'"""
    async with running(app):
        _, status, result = await finish(conn, graph)  # a superuser may call any
        assert (status, result["rows"]) == ("completed", [{"got": 42}])
        await conn.execute(f"SET ROLE {role}")
        refused, refused_status, _ = await finish(conn, "df.workflow('double', '{\"n\": 1}')")
        await conn.execute("RESET ROLE")
        await conn.execute("SELECT df.allow_workflow('double', %s)", (role,))
        await conn.execute(f"SET ROLE {role}")
        _, allowed_status, allowed = await finish(conn, "df.workflow('double', '{\"n\": 2}')")
        await conn.execute("RESET ROLE")
    assert refused_status == "failed"
    error = await one(conn, "SELECT error FROM df.instances WHERE id = %s", (refused,))
    assert f"role {role} may not call workflow 'double'" in error
    assert (allowed_status, allowed) == ("completed", {"twice": 4})


async def test_usage_is_granted_as_pg_durable_grants_it_and_revoked_whole(conn: Conn) -> None:
    """grant_usage(role, include_http, with_grant) as pg_durable's: with_grant lets the role pass usage on;
    revoke_usage takes it all back (and what the role passed on); a role without usage starts nothing."""
    dan, eve = f"dan_{uuid.uuid4().hex[:6]}", f"eve_{uuid.uuid4().hex[:6]}"
    for role in (dan, eve):
        await conn.execute(f"CREATE ROLE {role}")
    await conn.execute(f"SET ROLE {eve}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await conn.execute("SELECT df.start('SELECT 1')")
    await conn.execute("RESET ROLE")
    await conn.execute("SELECT df.grant_usage(%s, with_grant => true)", (dan,))
    await conn.execute(f"SET ROLE {dan}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # HTTP is opt-in: include_http
        await conn.execute("SELECT df.http('https://example.com/', 'GET')")
    await conn.execute("SELECT df.grant_usage(%s)", (eve,))  # passed on
    await conn.execute(f"SET ROLE {eve}")
    assert len(await one(conn, "SELECT df.start('SELECT 1')")) == 8
    await conn.execute("RESET ROLE")
    await conn.execute("SELECT df.grant_usage(%s, include_http => true)", (dan,))
    await conn.execute(f"SET ROLE {dan}")
    assert json.loads(await one(conn, "SELECT df.http('https://example.com/', 'GET')"))["node_type"] == "HTTP"
    await conn.execute("RESET ROLE")
    await conn.execute("SELECT df.revoke_usage(%s)", (dan,))
    await conn.execute(f"SET ROLE {dan}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await conn.execute("SELECT df.start('SELECT 1')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await conn.execute("SELECT df.http('https://example.com/', 'GET')")
    await conn.execute("RESET ROLE")
    assert (await one(conn, "SELECT df.version()")).startswith("0.2.5")


# ------------------------------------------------------------------------------------------------ failures
async def test_a_failing_branch_of_a_join_fails_the_instance_at_its_node(app: DurableApp, conn: Conn) -> None:
    """A join branch of several nodes runs as a child workflow; its failure fails the instance (before: the
    instance stayed 'running' for ever), with Postgres's message and the failing node named."""
    async with running(app):
        instance, status, _ = await finish(conn, "('SELECT 1' & ('SELECT 1/0 AS boom' ~> 'SELECT 2'))")
    assert status == "failed"
    error, failed_node = await (
        await conn.execute(
            "SELECT i.error, (SELECT n.query FROM df.nodes n WHERE n.instance_id = i.id AND n.status = 'failed') "
            "FROM df.instances i WHERE i.id = %s",
            (instance,),
        )
    ).fetchone()  # type: ignore[misc]
    assert "division by zero" in error and failed_node == "SELECT 1/0 AS boom"


async def test_a_failing_node_is_retried_as_df_start_asks(app: DurableApp, conn: Conn) -> None:
    """pg_durable 0.2.7's failure policy as an extension of 0.2.5: max_attempts tries with waits of 1 s doubling up
    to max_backoff; the default stays one attempt. A failed attempt's statement is rolled back whole."""
    seq, log = f"public.s_{uuid.uuid4().hex[:8]}", f"public.l_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE SEQUENCE {seq}; CREATE TABLE {log} (n bigint)")
    flaky = f"'INSERT INTO {log} SELECT nextval(''{seq}'') RETURNING 1 / greatest(n - 2, 0) AS x'"
    async with running(app):
        once, once_status, _ = await finish(conn, flaky)  # n = 1: fails, not retried
        retried, status, result = await finish(
            conn, f"{flaky}, max_attempts => 3, max_backoff => '1 second'"
        )  # n = 2 fails, n = 3 succeeds
    assert once_status == "failed" and "division by zero" in await one(
        conn, "SELECT error FROM df.instances WHERE id = %s", (once,)
    )
    assert (status, result["rows"]) == ("completed", [{"x": 1}]), retried
    assert await one(conn, f"SELECT array_agg(n ORDER BY n) FROM {log}") == [3]  # failed attempts left nothing
    assert await one(conn, f"SELECT last_value FROM {seq}") == 3
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="max_attempts"):
        await conn.execute("SELECT df.start('SELECT 1', max_attempts => 0)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="on_failure"):
        await conn.execute("SELECT df.start('SELECT 1', on_failure => 'maybe')")


async def test_on_failure_continue_starts_the_next_iteration_of_a_loop(app: DurableApp, conn: Conn) -> None:
    """pg_durable's on_failure => 'continue': a node that failed abandons the rest of its loop iteration and the
    loop goes on; with the default ('fail') the instance fails there."""
    seq, log = f"public.s_{uuid.uuid4().hex[:8]}", f"public.l_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE SEQUENCE {seq}; CREATE TABLE {log} (n bigint, stage text)")
    body = (
        f"(('INSERT INTO {log} SELECT nextval(''{seq}''), ''start'' RETURNING n') |=> 'x' "
        f"~> 'SELECT 1 / ($x.n - 2) AS ok' "
        f"~> 'INSERT INTO {log} VALUES ($x.n, ''end'')' "
        f"~> df.if('SELECT $x.n >= 4', df.break('\"done\"'), 'SELECT 0'))"
    )
    async with running(app):
        went_on, status, result = await finish(conn, f"df.loop({body}), on_failure => 'continue'")
        await conn.execute(f"ALTER SEQUENCE {seq} RESTART")
        await conn.execute(f"TRUNCATE {log}")
        _, stopped_status, _ = await finish(conn, f"df.loop({body})")
    assert (status, result) == ("completed", "done")
    rows = await (await conn.execute(f"SELECT n, stage FROM {log} ORDER BY n, stage DESC")).fetchall()
    assert stopped_status == "failed" and rows == [(1, "start"), (1, "end"), (2, "start")]
    assert await one(conn, "SELECT error FROM df.instances WHERE id = %s", (went_on,)) is None


async def test_workflow_commands_cancel_and_retry_df_instances(app: DurableApp, conn: Conn) -> None:
    """Interop: a df instance is the durable workflow df:<id>; cancelling that workflow cancels the instance, and
    retrying a failed one runs it again from its failed node (the nodes that completed do not run again)."""
    log, missing = f"public.l_{uuid.uuid4().hex[:8]}", f"public.m_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE TABLE {log} (step text)")
    graph = f"""'INSERT INTO {log} VALUES (''first'')' ~> 'INSERT INTO {log} SELECT ''second'' FROM {missing}'
                ~> 'SELECT count(*) AS n FROM {log}'"""
    async with running(app):
        failed, status, _ = await finish(conn, graph)
        assert status == "failed"
        assert await one(conn, "SELECT status FROM howdah.workflows WHERE id = %s", (f"df:{failed}",)) == "failed"
        node = await one(conn, "SELECT query FROM df.nodes WHERE instance_id = %s AND status = 'failed'", (failed,))
        assert missing in node
        await conn.execute(f"CREATE TABLE {missing} (x int); INSERT INTO {missing} VALUES (1)")
        await app.retry(f"df:{failed}")
        assert await one(conn, "SELECT df.await_instance(%s, 20)", (failed,)) == "completed"
        result = json.loads(await one(conn, "SELECT df.result(%s)", (failed,)))

        waiting = await one(conn, "SELECT df.start(df.wait_for_signal('never'))")
        parked = "SELECT status = 'waiting' FROM howdah.workflows WHERE id = %s"
        await async_wait_until(lambda: one(conn, parked, (f"df:{waiting}",)), what="the instance waiting")
        await app.cancel(f"df:{waiting}")
        assert await one(conn, "SELECT df.await_instance(%s, 20)", (waiting,)) == "cancelled"
    assert result["rows"] == [{"n": 2}]
    rows = await (await conn.execute(f"SELECT step FROM {log} ORDER BY step")).fetchall()
    assert rows == [("first",), ("second",)]  # 'first' ran once


async def test_sleeps_take_fractions_of_a_second(app: DurableApp, conn: Conn) -> None:
    """Beyond pg_durable (whole seconds): df.sleep(0.2); a whole number makes pg_durable's node."""
    assert json.loads(await one(conn, "SELECT df.sleep(5)")) == {"node_type": "SLEEP", "seconds": 5}
    assert json.loads(await one(conn, "SELECT df.sleep(0.2)"))["seconds"] == 0.2
    async with running(app):
        _, status, result = await finish(conn, "df.sleep(0.2) ~> 'SELECT 1 AS one'")
    assert (status, result["rows"]) == ("completed", [{"one": 1}])


async def test_hostile_and_oversized_input_is_refused_or_kept_as_data(app: DurableApp, conn: Conn) -> None:
    """Bad input: a graph over the node limit and an over-long label are refused with named errors and leave
    nothing behind; labels and signal names full of SQL are data, never code; an unbound $name reaches Postgres
    as written and fails the node with Postgres's own message."""
    table = f"public.h_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE TABLE {table} (x int)")
    before = await one(conn, "SELECT count(*) FROM df.instances")
    leaf = {"node_type": "SQL", "query": "SELECT 1"}
    huge = {"node_type": "JOIN", "left_node": leaf, "right_node": leaf, "extra_nodes": [leaf] * 9_999}
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="maximum node count of 10000"):
        await conn.execute("SELECT df.start(%s)", (json.dumps(huge),))
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute("SELECT df.start('SELECT 1', repeat('x', 1001))")
    assert await one(conn, "SELECT count(*) FROM df.instances") == before
    assert (
        await one(
            conn,
            "SELECT count(*) FROM df.nodes n WHERE NOT EXISTS "
            "(SELECT 1 FROM df.instances i WHERE i.id = n.instance_id)",
        )
        == 0
    )
    hostile = f"x'); DROP TABLE {table}; --"
    async with running(app):
        waiting = await one(conn, "SELECT df.start(df.wait_for_signal(%s), %s)", (hostile, hostile))
        parked = "SELECT status = 'waiting' FROM howdah.workflows WHERE id = %s"
        await async_wait_until(lambda: one(conn, parked, (f"df:{waiting}",)), what="the instance waiting")
        await conn.execute("SELECT df.signal(%s, %s, %s)", (waiting, hostile, '{"ok": true}'))
        assert await one(conn, "SELECT df.await_instance(%s, 20)", (waiting,)) == "completed"
        unbound, status, _ = await finish(conn, "'SELECT $nope'")
    assert await one(conn, "SELECT label FROM df.instances WHERE id = %s", (waiting,)) == hostile
    assert json.loads(await one(conn, "SELECT df.result(%s)", (waiting,)))["data"] == {"ok": True}
    assert await one(conn, f"SELECT count(*) FROM {table}") == 0  # still there
    assert status == "failed" and "$" in await one(conn, "SELECT error FROM df.instances WHERE id = %s", (unbound,))


async def test_a_role_cannot_steer_another_roles_workflow_through_dfs_helpers(
    app: DurableApp, conn: Conn, db_url: str
) -> None:
    """The attack: df.grant_usage gives EXECUTE on the SECURITY DEFINER helpers that df.cancel and df.signal call
    (they run with the installer's rights), so a role called them with another role's instance id and cancelled or
    signalled it. They now refuse an instance whose submitter the session's role is not a member of."""
    alice, mallory = f"alice_{uuid.uuid4().hex[:6]}", f"mallory_{uuid.uuid4().hex[:6]}"
    for role in (alice, mallory):
        await conn.execute(f"CREATE ROLE {role}")
        await conn.execute("SELECT df.grant_usage(%s)", (role,))
    async with running(app):
        await conn.execute(f"SET ROLE {alice}")
        waiting = await one(conn, "SELECT df.start(df.wait_for_signal('go') ~> 'SELECT 1 AS done')")
        await conn.execute("RESET ROLE")
        parked = "SELECT status = 'waiting' FROM howdah.workflows WHERE id = %s"
        await async_wait_until(lambda: one(conn, parked, (f"df:{waiting}",)), what="the instance waiting")
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as other:
            # a session of mallory's own: SET SESSION AUTHORIZATION makes mallory its session_user
            await other.execute(f"SET SESSION AUTHORIZATION {mallory}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await other.execute("SELECT df._cancel_workflow(%s)", (waiting,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await other.execute("SELECT df._signal_workflow(%s, 'go', '{}')", (waiting,))
        assert await one(conn, "SELECT status FROM howdah.workflows WHERE id = %s", (f"df:{waiting}",)) == "waiting"
        assert await one(conn, "SELECT count(*) FROM howdah.signals WHERE workflow_id = %s", (f"df:{waiting}",)) == 0
        await conn.execute(f"SET ROLE {alice}")
        await one(conn, "SELECT df.signal(%s, 'go')", (waiting,))  # the owner still can
        assert await one(conn, "SELECT df.await_instance(%s, 20)", (waiting,)) == "completed"
        await conn.execute("RESET ROLE")


async def test_node_ids_that_would_collide_within_an_instance_get_the_next_candidate(conn: Conn) -> None:
    """Ids are md5(instance:counter)'s first 8 hex digits: for instance 2a50e9c2, nodes 311 and 2463 share one
    (found by search). df.start failed with a unique violation on such graphs (about 1% at 10,000 nodes)."""
    instance = "2a50e9c2"
    await conn.execute("DELETE FROM df.instances WHERE id = %s", (instance,))
    await conn.execute("INSERT INTO df.instances (id, root_node, graph) VALUES (%s, 'x', '{}')", (instance,))
    leaf = {"node_type": "SQL", "query": "SELECT 1"}
    graph = {"node_type": "JOIN", "left_node": leaf, "right_node": leaf, "extra_nodes": [leaf] * 2500}
    await conn.execute("SELECT df._number(%s, %s, NULL, 0)", (instance, json.dumps(graph)))
    ids = await one(conn, "SELECT count(DISTINCT id) FROM df.nodes WHERE instance_id = %s", (instance,))
    assert ids == 2503
    await conn.execute("DELETE FROM df.instances WHERE id = %s", (instance,))
