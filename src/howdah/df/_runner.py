"""Running a df instance's graph as a Howdah durable workflow.

The workflow ``df`` (args ``{"instance_id": …}``) loads the instance's numbered graph and walks it:

- ``SQL``: a :meth:`~howdah.durable.WorkflowContext.transaction` step that runs the (substituted) statement as
  the role that started the instance (``SET LOCAL ROLE``) and records the node's result in ``df.nodes`` — the
  statement, the node's status and the step's checkpoint commit together, so a SQL node's effect happens
  exactly once, whatever instant the worker is killed at;
- ``THEN``: left, then right (the result is the right side's); ``IF``: the condition node (or, for
  ``df.if_rows``, whether a bound result has rows), then one branch; ``JOIN``: every branch at once, the
  result the list of theirs (a branch of more than one step runs as a child workflow, so each keeps its own
  order of steps); ``LOOP``: the body again and again until a ``BREAK`` (its value is the loop's result) or its
  condition is false, at most :data:`MAX_ITERATIONS` times; ``SLEEP`` and ``SIGNAL`` park the workflow and free
  the worker; ``HTTP`` / ``HTTP_MULTIPART``: the starting role's right to call ``df.http`` checked, then the
  request sent as a step under the worker's egress policy (:mod:`._egress`), its response envelope recorded.

A node bound with ``|=> 'name'`` leaves its result under that name for the nodes after it (:mod:`._bindings`).
A node that fails fails the instance, with the node named and Postgres's own message.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from croniter import croniter
from psycopg.conninfo import make_conninfo

from howdah.df._bindings import BindingError, substitute
from howdah.df._egress import Blocked, EgressError, EgressPolicy
from howdah.df._errors import NodeFailed
from howdah.df._http import Resolve, resolve
from howdah.df._http_step import HTTP_FUNCTIONS, HttpCall, http_access, http_request, send_http
from howdah.df._sql_step import RemoteSql, SqlNode, forget_remote_steps, mark_failed, record, run_remote_sql, run_sql
from howdah.durable import (
    NO_RETRY,
    DurableApp,
    RetryPolicy,
    StepFailed,
    WorkflowCancelled,
    WorkflowContext,
    WorkflowFailed,
    next_tick,
)

WORKFLOW = "df"
BRANCH = "df_branch"
MAX_ITERATIONS = 100_000
_LEAVES = ("SQL", "SLEEP", "BREAK")


@dataclass(frozen=True)
class RunOptions:
    """What ``df.start`` said about running the nodes of one instance: max_attempts, max_backoff (seconds),
    on_failure, and the database its SQL nodes run in when it is not the instance's own (None)."""

    max_attempts: int = 1
    max_backoff: float = 16.0
    on_failure: str = "fail"
    database: str | None = None

    @property
    def retry(self) -> RetryPolicy:
        """Waits of 1 s, doubling, capped at max_backoff, as pg_durable's."""
        if self.max_attempts == 1:
            return NO_RETRY
        return RetryPolicy(self.max_attempts, initial_delay=1.0, factor=2.0, max_delay=self.max_backoff, jitter=False)


class _Break(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass(frozen=True)
class _Settings:
    """What every walk of this worker shares: where HTTP nodes may go, and how host names are resolved."""

    policy: EgressPolicy
    resolver: Resolve
    app: DurableApp  # its connection string, with another database's name, reaches that database

    def conninfo(self, database: str) -> str:
        return make_conninfo(self.app.dsn, dbname=database)


def install(app: DurableApp, *, http: EgressPolicy | None = None, resolver: Resolve = resolve) -> None:
    """Register the workflows that run df instances in ``app`` (its worker then runs every ``df.start``).
    ``http``: where HTTP nodes may send requests (default: any public address; see :mod:`howdah.df._egress`)."""
    settings = _Settings(http or EgressPolicy(), resolver, app)

    @app.workflow(WORKFLOW)
    async def run_instance(ctx: WorkflowContext, args: dict[str, Any]) -> Any:
        return await _run_instance(ctx, settings, str(args["instance_id"]))

    @app.workflow(BRANCH)
    async def run_branch(ctx: WorkflowContext, args: dict[str, Any]) -> Any:
        names = dict(args["names"])
        options = RunOptions(**args.get("options", {}))
        graph = _Graph(ctx, settings, str(args["instance_id"]), str(args["role"]), names, args.get("label"), options)
        race = args.get("race")  # {"parent", "signal", "index"}: tell the race's workflow when this branch is done
        try:
            result = await graph.node(args["node"], str(args["scope"]))
        except StepFailed as exc:  # the branch's outcome says so: the parent fails at the node named
            failed = {"error": str(exc.error.get("message") or exc), "node": graph.failed_node}
            if race is not None:
                await ctx.transaction("race:done", _tell_race, race, {"index": race["index"], **failed}, retry=NO_RETRY)
            return failed
        except _Break as stop:  # a df.break() in a join's branch ends the loop around the join
            return {"break": stop.value, "names": graph.names, "visited": sorted(graph.visited)}
        outcome = {"result": result, "names": graph.names, "visited": sorted(graph.visited)}
        if race is not None:
            await ctx.transaction("race:done", _tell_race, race, {"index": race["index"], **outcome}, retry=NO_RETRY)
        return outcome


async def _run_instance(ctx: WorkflowContext, settings: _Settings, instance_id: str) -> Any:
    loaded = await ctx.transaction("load", _load, instance_id, retry=NO_RETRY)
    if loaded is None:
        return None  # deleted, or cancelled before it ran
    options = RunOptions(**loaded["options"])
    graph = _Graph(ctx, settings, instance_id, loaded["role"], {}, loaded.get("label"), options)
    try:
        result = await graph.node(loaded["graph"], "")
    except StepFailed as exc:  # the workflow fails with the node's message; df.instances follows (migration 0007)
        raise NodeFailed(str(exc.error.get("message") or exc.error.get("type") or exc)) from None
    except _Break:
        raise NodeFailed("df.break() outside a loop") from None
    await ctx.transaction("finish", _complete, instance_id, result, sorted(graph.visited), retry=NO_RETRY)
    if options.database is not None:  # the records of its steps there are no longer needed
        await ctx.step("forget", forget_remote_steps, settings.conninfo(options.database), ctx.workflow_id)
    return None


async def _load(conn: psycopg.AsyncConnection[Any], instance_id: str) -> dict[str, Any] | None:
    cursor = await conn.execute(
        "UPDATE df.instances SET status = 'running', updated_at = clock_timestamp() "
        "WHERE id = %s AND status IN ('pending', 'running') "
        "RETURNING graph, pg_catalog.pg_get_userbyid(submitted_by::oid), label, max_attempts, "
        "extract(epoch FROM max_backoff)::float8, on_failure, nullif(database, current_database())",
        (instance_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    graph, role, label, max_attempts, max_backoff, on_failure, database = row
    options = {"max_attempts": max_attempts, "max_backoff": max_backoff, "on_failure": on_failure, "database": database}
    return {"graph": graph, "role": role, "label": label, "options": options}


async def _complete(
    conn: psycopg.AsyncConnection[Any], instance_id: str, result: Any, completed_nodes: list[str]
) -> None:  # fmt: skip
    """The instance completed (a failure is recorded by df's trigger on the workflow, so a retried workflow can
    take another path)."""
    await conn.execute(
        "UPDATE df.instances SET status = 'completed', result = %s, error = NULL, updated_at = clock_timestamp(), "
        "completed_at = clock_timestamp() WHERE id = %s AND status = 'running'",
        (None if result is None else psycopg.types.json.Jsonb(result), instance_id),
    )
    if completed_nodes:  # the sequences, joins, conditionals and loops it went through
        await conn.execute(
            "UPDATE df.nodes SET status = 'completed', updated_at = clock_timestamp() "
            "WHERE instance_id = %s AND id = ANY(%s) AND status = 'pending'",
            (instance_id, completed_nodes),
        )


class _Graph:
    """One walk of a graph: the results bound so far and the node that failed."""

    def __init__(
        self, ctx: WorkflowContext, settings: _Settings, instance_id: str, role: str, names: dict[str, Any],
        label: str | None, options: RunOptions,
    ) -> None:  # fmt: skip
        self.ctx = ctx
        self.settings = settings
        self.options = options
        self.instance_id = instance_id
        self.role = role
        self.names = names
        self.label = label
        self.failed_node: str | None = None
        self.visited: set[str] = set()  # the nodes holding others that the walk went through
        self._handlers = {
            "SQL": self._sql, "THEN": self._then, "IF": self._if, "JOIN": self._join, "LOOP": self._loop,
            "BREAK": self._break, "SLEEP": self._sleep, "SIGNAL": self._signal, "RACE": self._race,
            "WAIT_SCHEDULE": self._wait_schedule, "WORKFLOW": self._workflow, "HTTP": self._http,
            "HTTP_MULTIPART": self._http,
        }  # fmt: skip

    async def node(self, node: dict[str, Any], scope: str) -> Any:
        kind = node["node_type"]
        if kind not in _LEAVES:
            self.visited.add(str(node["node_id"]))
        if kind not in self._handlers:
            raise NodeFailed(f"node {node.get('node_id')}: node_type {kind} is not supported")
        result = await self._handlers[kind](node, scope)
        if node.get("result_name"):
            self.names[str(node["result_name"])] = result
        return result

    async def _fail(self, node_id: str, step: str, message: str) -> Any:
        """Fail the walk at ``node_id`` with ``message``, recorded as step ``step`` (a replay fails the same way)."""
        self.failed_node = node_id
        return await self.ctx.step(step, _raise, message, retry=NO_RETRY)

    def _branch_args(self, node: dict[str, Any], scope: str, **extra: Any) -> dict[str, Any]:
        """The args of a child workflow that walks ``node`` with the results bound so far."""
        return {
            "instance_id": self.instance_id, "role": self.role, "label": self.label, "names": self.names, "node": node,
            "scope": scope, "options": dataclasses.asdict(self.options), **extra,
        }  # fmt: skip

    async def _sql(self, node: dict[str, Any], scope: str) -> Any:
        nid = str(node["node_id"])
        sql_node = SqlNode(self.instance_id, nid, self.role, self.label, str(node["query"]), dict(self.names))
        database = self.options.database
        if database is None:
            step = self.ctx.transaction(f"{scope}{nid}", run_sql, sql_node, retry=self.options.retry)
        else:  # another database: one step that commits the statement there with a record of itself
            there, home = self.settings.conninfo(database), self.settings.app.dsn
            call = RemoteSql(sql_node, there, database, home, self.ctx.workflow_id, f"{scope}{nid}")
            step = self.ctx.step(f"{scope}{nid}", run_remote_sql, call, retry=self.options.retry)
        try:
            return await step
        except StepFailed:
            self.failed_node = nid
            raise

    async def _http(self, node: dict[str, Any], scope: str) -> Any:
        """The role's right checked (a step, so a replay decides the same), the request sent (a step: once the
        response is recorded it is never sent again), then the node's result recorded in ``df.nodes``."""
        nid, kind = str(node["node_id"]), str(node["node_type"])
        function = HTTP_FUNCTIONS[kind]
        access = await self.ctx.transaction(f"{scope}{nid}:access", http_access, self.role, function, retry=NO_RETRY)
        if not access["allowed"]:
            name = function.split("(")[0]
            message = (
                f"node {nid} ({kind}) failed: Blocked: role '{self.role}' does not have EXECUTE privilege on "
                f"{name}(). Grant EXECUTE ON FUNCTION {function} TO {self.role} to allow HTTP requests."
            )
            return await self._fail(nid, f"{scope}{nid}:blocked", message)
        try:
            request = http_request(kind, str(node.get("query") or "{}"), self.names, access["vars"])
            policy = self.settings.policy.with_domains(access["allowed_domains"])
        except (BindingError, Blocked, EgressError, ValueError, TypeError) as exc:
            return await self._fail(nid, f"{scope}{nid}:invalid", f"node {nid} ({kind}) failed: {exc}")
        call = HttpCall(kind, nid, request, policy, self.settings.resolver)
        try:
            result = await self.ctx.step(f"{scope}{nid}", send_http, call, retry=self.options.retry)
        except StepFailed:
            self.failed_node = nid
            raise
        await self.ctx.transaction(f"{scope}{nid}:done", record, self.instance_id, nid, result, retry=NO_RETRY)
        return result

    async def _then(self, node: dict[str, Any], scope: str) -> Any:
        await self.node(node["left_node"], scope)
        return await self.node(node["right_node"], scope)

    async def _if(self, node: dict[str, Any], scope: str) -> Any:
        condition = node.get("condition")
        if condition is not None:  # df.if_rows
            bound = self.names.get(str(condition.get("result_name")))
            truth = isinstance(bound, dict) and int(bound.get("row_count") or 0) > 0
        else:
            truth = truthy(await self.node(node["condition_node"], scope))
        return await self.node(node["left_node"] if truth else node["right_node"], scope)

    async def _join(self, node: dict[str, Any], scope: str) -> Any:
        """Every branch at once; joins nested without a name of their own (``a & b & c`` is ``(a & b) & c``) are
        one fan-out, their results nested as written."""
        shape, branches = fan_out(node, self.visited)
        results = await self.ctx.gather(*(self._branch(b, scope) for b in branches))
        return _nest(shape, results)

    async def _branch(self, node: dict[str, Any], scope: str) -> Any:
        if node["node_type"] in _LEAVES:  # one step: its position is taken at once, in order
            return await self.node(node, scope)
        outcome = await self.ctx.child(BRANCH, self._branch_args(node, scope))
        if "error" in outcome:
            nid = str(outcome.get("node") or node.get("node_id"))
            return await self._fail(nid, f"{scope}{nid}:branch", str(outcome["error"]))
        self.names.update(outcome["names"])
        if "break" in outcome:
            self.visited.update(outcome["visited"])
            raise _Break(outcome["break"])
        self.visited.update(outcome["visited"])
        return outcome["result"]

    async def _race(self, node: dict[str, Any], scope: str) -> Any:
        """Both branches as child workflows; the first to finish tells this one (a signal, so a replay sees the same
        winner), and the other is cancelled."""
        nid = str(node["node_id"])
        signal = f"race:{scope}{nid}"
        children = []
        for index, branch in enumerate((node["left_node"], node["right_node"])):
            race = {"parent": self.ctx.workflow_id, "signal": signal, "index": index}
            children.append(await self.ctx.start_child(BRANCH, self._branch_args(branch, scope, race=race)))
        first = await self.ctx.wait_for_signal(signal)
        losers = [c.workflow_id for i, c in enumerate(children) if i != first["index"]]
        await self.ctx.transaction(f"{scope}{nid}:cancel", _cancel_workflows, losers, retry=NO_RETRY)
        if "error" in first:
            failed = str(first.get("node") or nid)
            return await self._fail(failed, f"{scope}{failed}:lost", str(first["error"]))
        self.names.update(first["names"])
        self.visited.update(first["visited"])
        return first["result"]

    async def _wait_schedule(self, node: dict[str, Any], scope: str) -> Any:
        cron = str(node["cron_expr"])
        if not croniter.is_valid(cron):
            nid = str(node["node_id"])
            message = f"node {nid} (WAIT_SCHEDULE) failed: Invalid cron expression '{cron}'"
            return await self._fail(nid, f"{scope}{nid}:cron", message)
        await self.ctx.sleep_until(next_tick(cron, datetime.now(UTC)))
        return {"scheduled": True}

    async def _workflow(self, node: dict[str, Any], scope: str) -> Any:
        """A Python workflow registered with Howdah, as a child workflow: its result is the node's. The role that
        started the instance must be allowed to call it (df.allow_workflow), or be a superuser."""
        nid, name = str(node["node_id"]), str(node["workflow_name"])
        problem = None
        if not await self.ctx.transaction(f"{scope}{nid}:allowed", _may_call, name, self.role, retry=NO_RETRY):
            problem = f"role {self.role} may not call workflow {name!r} (see df.allow_workflow)"
        else:
            try:
                args = json.loads(substitute(str(node.get("args") or "{}"), self.names, raw=True))
            except (BindingError, ValueError) as exc:
                args, problem = None, f"its args are no JSON object: {exc}"
            if problem is None and not isinstance(args, dict):
                problem = "its args must be a JSON object"
        if problem is None:
            try:
                return await self.ctx.child(name, args)
            except (WorkflowFailed, WorkflowCancelled) as exc:
                problem = str(exc)
        return await self._fail(nid, f"{scope}{nid}:failed", f"node {nid} (WORKFLOW) failed: {problem}")

    async def _loop(self, node: dict[str, Any], scope: str) -> Any:
        """The body until a BREAK, a false condition or the iteration limit. The condition is asked after each
        body, as pg_durable's do-while loop asks it: the body runs at least once. With on_failure => 'continue', a
        node that failed (its attempts spent) abandons the rest of its iteration; the next one starts at once (the
        condition is not asked), and the failed node is recorded as failed."""
        nid, result = str(node["node_id"]), None
        condition = node.get("condition_node")
        for i in range(MAX_ITERATIONS):
            inner = f"{scope}{nid}#{i}/"
            try:
                result = await self.node(node["left_node"], inner)
            except _Break as stop:
                return stop.value
            except StepFailed as exc:
                if self.options.on_failure != "continue":
                    raise
                error, where = str(exc.error.get("message") or exc), self.failed_node
                self.failed_node = None
                await self.ctx.transaction(
                    f"{inner}failed", mark_failed, self.instance_id, where, error, retry=NO_RETRY
                )
                continue
            if condition is not None and not truthy(await self.node(condition, inner + "c/")):
                return result
        message = (
            f"node {nid} (LOOP) failed: Loop exceeded maximum iteration count of {MAX_ITERATIONS}. Use df.break() "
            "to exit the loop or restructure the workflow."
        )
        return await self._fail(nid, f"{scope}{nid}:limit", message)

    async def _break(self, node: dict[str, Any], scope: str) -> Any:
        raw = node.get("break_value")
        try:
            value = None if raw is None else json.loads(raw)
        except (TypeError, ValueError):
            value = raw
        raise _Break(value)

    async def _sleep(self, node: dict[str, Any], scope: str) -> Any:
        seconds = node["seconds"]  # whole seconds as pg_durable's, or a fraction (Howdah's extension)
        await self.ctx.sleep(float(seconds))
        return {"slept": True, "seconds": seconds}

    async def _signal(self, node: dict[str, Any], scope: str) -> Any:
        name, timeout = str(node["signal_name"]), node.get("timeout_seconds")
        data = await self.ctx.wait_for_signal(name, None if timeout is None else float(timeout))
        return {"signal_name": name, "timed_out": data is None and timeout is not None, "data": data}


def fan_out(node: dict[str, Any], visited: set[str] | None = None) -> tuple[list[Any], list[dict[str, Any]]]:
    """A JOIN's branches with those of the unnamed JOINs nested in it, in order, and the shape to nest their
    results back: a list of branch indexes and nested lists (``(a & b) & c`` → ``[[0, 1], 2]``). ``visited``
    collects the ids of the nested JOINs."""
    branches: list[dict[str, Any]] = []

    def walk(join: dict[str, Any]) -> list[Any]:
        shape: list[Any] = []
        for child in (join["left_node"], join["right_node"], *join.get("extra_nodes", [])):
            if child["node_type"] == "JOIN" and not child.get("result_name"):
                if visited is not None:
                    visited.add(str(child["node_id"]))
                shape.append(walk(child))
            else:
                branches.append(child)
                shape.append(len(branches) - 1)
        return shape

    return walk(node), branches


def _nest(shape: list[Any], results: list[Any]) -> list[Any]:
    return [_nest(part, results) if isinstance(part, list) else results[part] for part in shape]


async def _tell_race(conn: psycopg.AsyncConnection[Any], race: dict[str, Any], outcome: dict[str, Any]) -> None:
    """Signal the race's workflow that this branch is done, unless it has finished (its race was decided)."""
    await conn.execute(
        "SELECT howdah.send_signal(w.id, %s, %s) FROM howdah.workflows w "
        "WHERE w.id = %s AND w.status NOT IN ('succeeded', 'failed', 'cancelled')",
        (race["signal"], psycopg.types.json.Jsonb(outcome), race["parent"]),
    )


async def _may_call(conn: psycopg.AsyncConnection[Any], workflow: str, role: str) -> bool:
    cursor = await conn.execute(
        "SELECT r.rolsuper OR EXISTS (SELECT 1 FROM df.callable_workflows c WHERE c.workflow_name = %s "
        "AND c.grantee = r.oid::regrole) FROM pg_catalog.pg_roles r WHERE r.rolname = %s",
        (workflow, role),
    )
    row = await cursor.fetchone()
    return bool(row and row[0])


async def _cancel_workflows(conn: psycopg.AsyncConnection[Any], ids: list[str]) -> None:
    await conn.execute(
        "SELECT howdah.cancel_workflow(w.id) FROM howdah.workflows w "
        "WHERE w.id = ANY(%s) AND w.status NOT IN ('succeeded', 'failed', 'cancelled')",
        (ids,),
    )


async def _raise(message: str) -> None:
    raise NodeFailed(message)


def truthy(result: Any) -> bool:
    """Whether a condition node's result is true: the first column of its first row (no row: false)."""
    value = result
    if isinstance(result, dict) and isinstance(result.get("rows"), list):
        rows = result["rows"]
        if not rows:
            return False
        value = next(iter(rows[0].values()), None) if isinstance(rows[0], dict) else None
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "t", "yes"):
            return True
        if text in ("false", "f", "no", "0", ""):
            return False
        try:
            return float(text) != 0
        except ValueError:
            return True
    return bool(value)
