"""``howdah worker`` and ``howdah workflow``: run workers, inspect and steer workflows."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal as signals
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer
from rich.panel import Panel
from rich.table import Table

from howdah.cli._common import (
    EXIT_USAGE,
    DatabaseUrlOption,
    console,
    err_console,
    fail,
    friendly,
    parse_json,
    resolve_url,
)
from howdah.cli._output import Column, Format, JsonFlag, OutputOption, chosen, emit, plain, records_table
from howdah.cli._refs import MIN_PREFIX, human_age, resolve
from howdah.df import EgressError, EgressPolicy
from howdah.df import install as install_df
from howdah.durable import DurableApp, StepInfo, Worker, WorkflowInfo, WorkflowNotFound

app = typer.Typer(help="Inspect and steer durable workflows.", no_args_is_help=True)
T = TypeVar("T")

STATUS_STYLE = {
    "succeeded": "green", "failed": "red", "cancelled": "magenta", "running": "cyan", "sleeping": "blue",
    "waiting": "yellow", "pending": "white",
}  # fmt: skip


def load_app(spec: str, database_url: str | None = None) -> DurableApp:
    """Import ``module:attribute`` (the current folder is importable) and return the DurableApp there."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise fail(f"--app must look like 'package.module:app', not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise fail(f"cannot import {module_name!r}: {exc}") from None
    found = getattr(module, attribute, None)
    if not isinstance(found, DurableApp):
        raise fail(f"{spec!r} is not a howdah.durable.DurableApp (found {type(found).__name__})")
    if database_url and found._dsn is None:
        found._dsn = database_url
    return found


def _with_app(database_url: str | None, work: Callable[[DurableApp], Awaitable[T]]) -> T:
    async def main() -> T:
        async with DurableApp(resolve_url(database_url)) as durable:
            return await work(durable)

    return asyncio.run(main())


async def _workflow_id(durable: DurableApp, ref: str) -> str:
    """The workflow ``ref`` designates: its exact id, else the one id starting with it (at least MIN_PREFIX
    characters); NoMatch or Ambiguous (listing the candidates) otherwise."""
    try:
        return (await durable.get(ref)).id
    except WorkflowNotFound:
        starting = await durable.ids_starting_with(ref, 10) if len(ref) >= MIN_PREFIX else []
        return str(resolve(ref, [{"id": found} for found in starting], what="workflow")["id"])


MoreDatabasesOption = typer.Option(
    None,
    "--database",
    help="Also run the SQL-defined workflows (df) of this database (repeatable): one worker process for several "
    "databases, each with df installed.",
)
HttpAllowPrivateOption = typer.Option(
    None,
    "--http-allow-private",
    help="A host or network (CIDR) df.http may reach though it is private or internal (repeatable); by default "
    "only public addresses are reached.",
)


@friendly
def worker(
    app_spec: str | None = typer.Option(None, "--app", help="The DurableApp to run, as 'package.module:app'."),
    concurrency: int = typer.Option(16, min=1, help="Workflows run at once by this worker."),
    sql_workflows: bool = typer.Option(
        True, "--df/--no-df", help="Also run the workflows defined in SQL (schema df, df.start) of its database."
    ),
    http_allow_private: list[str] | None = HttpAllowPrivateOption,
    http_allowed_domains: str | None = typer.Option(
        None, "--http-allowed-domains", help="Only these hosts for df.http: pg_durable's http_allowed_domains list "
        "('api.example.com, *.example.org'; '' allows none). The database setting of that name, if set, wins.",
    ),
    http_https_only: bool = typer.Option(False, "--http-https-only", help="df.http: refuse plaintext http://."),
    more_databases: list[str] | None = MoreDatabasesOption,
    database_url: str | None = DatabaseUrlOption,
) -> None:  # fmt: skip
    """Run a durable-workflow worker until Ctrl-C or SIGTERM (in-flight runs finish or are handed back). Without
    --app it runs the SQL-defined workflows (df.start) of the database alone."""
    if app_spec is None and not sql_workflows:
        raise fail("nothing to run: give --app, or leave --df on")
    try:
        policy = EgressPolicy(allow_private=tuple(http_allow_private or ()), https_only=http_https_only)
        policy = policy.with_domains(http_allowed_domains)
    except EgressError as exc:
        raise fail(str(exc)) from None
    # A df worker's pool follows its concurrency: a fan-out of N nodes runs N statements at once.
    durable = (
        load_app(app_spec, database_url)
        if app_spec
        else DurableApp(resolve_url(database_url), pool_size=concurrency + 4)
    )
    if durable._dsn is None:
        durable._dsn = resolve_url(None)
    if sql_workflows:
        install_df(durable, http=policy)
    app_spec = app_spec or "df"
    others = [DurableApp(url, pool_size=concurrency + 4) for url in more_databases or ()]
    for other in others:
        install_df(other, http=policy)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signals.SIGINT, signals.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with contextlib.AsyncExitStack() as stack:
            for each in (durable, *others):
                await stack.enter_async_context(each)
            console.print(
                f"worker for {app_spec} started: workflows {sorted(durable.workflows)}, queue "
                f"{durable.queue_name!r}, concurrency {concurrency}"
                + (f"; and df of {len(others)} more database(s)" if others else "")
            )
            runs = [
                Worker(each, concurrency=concurrency).run(stop, handle_signals=False) for each in (durable, *others)
            ]
            await asyncio.gather(*runs)
        console.print("worker stopped")

    asyncio.run(main())


@app.command("list")
@friendly
def list_(
    status: str | None = typer.Option(None, help="Only workflows in this status."),
    limit: int = typer.Option(50, min=1, max=10_000),
    output: OutputOption = Format.table,
    as_json: JsonFlag = False,
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """The most recently started workflows (every field, times exact, with -o json or yaml)."""
    if status is not None and status not in STATUS_STYLE:
        raise fail(f"unknown status {status!r}; one of {', '.join(STATUS_STYLE)}", EXIT_USAGE)
    rows = plain(_with_app(database_url, lambda d: d.list_workflows(status, limit)))
    now = datetime.now(UTC)
    emit(rows, chosen(output, as_json), lambda: records_table(rows, [
        Column("ID", lambda w: str(w["id"])),
        Column("NAME", lambda w: str(w["name"]), fold=True),
        Column("STATUS", lambda w: _status(w["status"])),
        Column("ATTEMPTS", lambda w: str(w["attempts"])),
        Column("KEY", lambda w: str(w["key"] or ""), fold=True),
        Column("CREATED", lambda w: human_age(w["created_at"], now)),
        Column("FINISHED", lambda w: human_age(w["finished_at"], now) if w["finished_at"] else ""),
    ]))  # fmt: skip


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


@app.command()
@friendly
def show(
    workflow_id: str,
    output: OutputOption = Format.table,
    as_json: JsonFlag = False,
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """A workflow with its step timeline (with -o json or yaml: its fields and its ``steps``)."""

    async def load(durable: DurableApp) -> tuple[WorkflowInfo, list[StepInfo]]:
        found = await _workflow_id(durable, workflow_id)
        return await durable.get(found), await durable.steps(found)

    info, steps = _with_app(database_url, load)
    output = chosen(output, as_json)
    if output is not Format.table:
        emit({**plain(info), "steps": plain(steps)}, output, lambda: None)
        return
    console.print(Panel(_summary(info), title=f"workflow {info.id}", expand=False))
    console.print(timeline(info, steps))


def _summary(info: WorkflowInfo) -> Table:
    table = Table(show_header=False, box=None)
    table.add_row("name", info.name)
    table.add_row("status", _status(info.status) + (f" ({info.waiting_for})" if info.waiting_for else ""))
    table.add_row("args", json.dumps(info.args))
    if info.key:
        table.add_row("key", info.key)
    if info.parent_id:
        table.add_row("parent", info.parent_id)
    table.add_row("attempts", str(info.attempts))
    if info.wake_at:
        table.add_row("wakes at", info.wake_at.isoformat(timespec="seconds"))
    if info.status == "succeeded":
        table.add_row("result", json.dumps(info.result)[:500])
    if info.error:
        table.add_row("error", f"[red]{info.error.get('type')}: {info.error.get('message')}[/]")
    return table


def timeline(info: WorkflowInfo, steps: list[StepInfo], width: int = 30) -> Table:
    """Steps as rows with a bar placing each in the workflow's time span."""
    table = Table(title="steps")
    for column in ("#", "step", "kind", "attempts", "took", "timeline", "outcome"):
        table.add_column(column, overflow="fold")
    if not steps:
        return table
    start = min(s.started_at for s in steps)
    end = max([s.finished_at for s in steps] + ([info.finished_at] if info.finished_at else []))
    span = max((end - start).total_seconds(), 1e-6)
    for step in steps:
        left = int((step.started_at - start).total_seconds() / span * width)
        length = max(1, int((step.finished_at - step.started_at).total_seconds() / span * width))
        bar = " " * left + "█" * min(length, width - left)
        took = (step.finished_at - step.started_at).total_seconds() * 1000
        outcome = (
            f"[red]{step.error.get('type')}: {step.error.get('message')}[/]"
            if step.error
            else json.dumps(step.result.get("value", step.result) if isinstance(step.result, dict) else step.result)[
                :80
            ]
        )
        table.add_row(
            str(step.index), step.name, step.kind, str(step.attempts), f"{took:.1f} ms", f"[cyan]{bar}[/]", outcome
        )
    return table


@app.command()
@friendly
def cancel(workflow_id: str, database_url: str | None = DatabaseUrlOption) -> None:
    """Cancel a workflow and its children."""

    async def cancel_one(durable: DurableApp) -> int:
        return await durable.cancel(await _workflow_id(durable, workflow_id))

    touched = _with_app(database_url, cancel_one)
    err_console.print(f"cancelled {touched} workflow(s)" if touched else "nothing to cancel: it has finished")


@app.command()
@friendly
def retry(workflow_id: str, database_url: str | None = DatabaseUrlOption) -> None:
    """Run a failed or cancelled workflow again from its last successful step."""

    async def retry_one(durable: DurableApp) -> str:
        found = await _workflow_id(durable, workflow_id)
        await durable.retry(found)
        return found

    err_console.print(f"workflow {_with_app(database_url, retry_one)} queued again")


@app.command()
@friendly
def signal(
    workflow_id: str,
    name: str,
    payload: str = typer.Argument("null", help="The signal's payload, as JSON."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Send a signal to a workflow."""
    body: Any = parse_json(payload, "payload")

    async def send(durable: DurableApp) -> Any:
        return await durable.signal(await _workflow_id(durable, workflow_id), name, body)

    signal_id = _with_app(database_url, send)
    err_console.print(f"signal {name!r} sent (id {signal_id})")
