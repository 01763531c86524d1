"""``howdah queue``: the queue schema (install, upgrade, verify, sql) and day-to-day queue operations."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import typer
from psycopg import sql
from rich.table import Table

from howdah.cli._common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    DatabaseUrlOption,
    err_console,
    fail,
    friendly,
    parse_json,
    resolve_url,
)
from howdah.cli._output import Column, Format, JsonFlag, OutputOption, chosen, emit, plain, records_table
from howdah.cli._schema import add_schema_commands
from howdah.queue import COMPONENT, Message, Queue

app = typer.Typer(help="Install the PGMQ-compatible schema and work with queues.", no_args_is_help=True)


@contextmanager
def _queue(database_url: str | None) -> Iterator[Queue]:
    """A client on one connection: a command runs a statement or two, and an unreachable database is an error at
    once (a pool would retry it for its open timeout)."""
    with psycopg.connect(resolve_url(database_url), autocommit=True) as conn:
        yield Queue(conn)


def _seconds(text: str | None) -> str:
    return text[:19].replace("T", " ") if text else "-"


def _messages_table(messages: list[dict[str, Any]]) -> Table:
    return records_table(messages, [
        Column("MSG_ID", lambda m: str(m["msg_id"])),
        Column("READ_CT", lambda m: str(m["read_ct"])),
        Column("ENQUEUED_AT", lambda m: _seconds(m["enqueued_at"])),
        Column("VT", lambda m: _seconds(m["vt"])),
        Column("MESSAGE", lambda m: json.dumps(m["message"]), fold=True),
        Column("HEADERS", lambda m: json.dumps(m["headers"]) if m["headers"] else "", fold=True),
    ])  # fmt: skip


# ------------------------------------------------------------------------------------------------- schema
add_schema_commands(app, (COMPONENT,))


@app.command()
@friendly
def maintain(
    queue: str | None = typer.Argument(None, help="One partitioned queue (default: all)."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Create partitions ahead and drop those past retention (partitioned queues)."""
    with _queue(database_url) as q:
        actions = q.maintain(queue)
    err_console.print(f"partition maintenance done: {actions} action(s)")


# ------------------------------------------------------------------------------------------------- queues
@app.command()
@friendly
def create(
    queue: str,
    unlogged: bool = typer.Option(False, help="Unlogged tables (faster, lost on crash)."),
    partitioned: bool = typer.Option(False, help="Range-partitioned tables (no pg_partman needed)."),
    partition_interval: str = typer.Option("10000", help="Messages per partition, or a time span like '1 day'."),
    retention_interval: str = typer.Option("100000", help="Drop partitions older than this (ids or time)."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Create a queue (idempotent)."""
    if unlogged and partitioned:
        raise fail("a queue cannot be both --unlogged and --partitioned", EXIT_USAGE)
    with _queue(database_url) as q:
        if partitioned:
            q.create_partitioned(queue, partition_interval, retention_interval)
        else:
            q.create(queue, unlogged=unlogged)
    err_console.print(f"queue {queue!r} ready")


@app.command()
@friendly
def send(
    queue: str,
    message: str = typer.Argument(..., help="The message, as JSON."),
    headers: str | None = typer.Option(None, help="Headers, as a JSON object."),
    delay: int = typer.Option(0, min=0, help="Seconds before the message becomes visible."),
    database_url: str | None = DatabaseUrlOption,
    output: OutputOption = Format.table,
) -> None:
    """Send one message; prints its msg_id."""
    body = parse_json(message, "message")
    head = parse_json(headers, "headers") if headers is not None else None
    with _queue(database_url) as q:
        msg_id = q.send(queue, body, headers=head, delay=delay)
    emit({"msg_id": msg_id}, output, lambda: msg_id)


@app.command()
@friendly
def read(
    queue: str,
    qty: int = typer.Option(1, min=1, help="How many messages."),
    vt: int = typer.Option(30, min=0, help="Visibility timeout in seconds."),
    output: OutputOption = Format.table,
    as_json: JsonFlag = False,
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Read messages (they stay invisible for --vt seconds)."""
    with _queue(database_url) as q:
        _show(q.read(queue, vt=vt, qty=qty), chosen(output, as_json))


@app.command()
@friendly
def pop(
    queue: str,
    qty: int = typer.Option(1, min=1, help="How many messages."),
    output: OutputOption = Format.table,
    as_json: JsonFlag = False,
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Read and delete messages in one step."""
    with _queue(database_url) as q:
        _show(q.pop(queue, qty), chosen(output, as_json))


def _show(messages: list[Message], output: Format) -> None:
    """The messages (PGMQ's fields) as a list for scripts, or a table; none is an empty list, or a note on stderr."""
    records = plain(messages)
    if output is Format.table and not records:
        err_console.print("(no message)")
        return
    emit(records, output, lambda: _messages_table(records))


@app.command()
@friendly
def archive(
    queue: str, msg_ids: list[int], database_url: str | None = DatabaseUrlOption, output: OutputOption = Format.table
) -> None:
    """Move messages to the queue's archive table."""
    with _queue(database_url) as q:
        done = q.archive_batch(queue, msg_ids)
    _report(done, msg_ids, "archived", output)


@app.command()
@friendly
def delete(
    queue: str, msg_ids: list[int], database_url: str | None = DatabaseUrlOption, output: OutputOption = Format.table
) -> None:
    """Delete messages."""
    with _queue(database_url) as q:
        done = q.delete_batch(queue, msg_ids)
    _report(done, msg_ids, "deleted", output)


def _report(done: list[int], asked: list[int], verb: str, output: Format) -> None:
    """What was done (``-o json|yaml``: ``{verb: ids, "not_found": ids}`` on stdout); exit 3 when some were not
    found."""
    missing = sorted(set(asked) - set(done))
    if output is not Format.table:
        emit({verb: done, "not_found": missing}, output, lambda: "")
    else:
        err_console.print(f"{verb}: {', '.join(map(str, done)) or 'none'}")
    if missing:
        err_console.print(f"[yellow]not found:[/] {', '.join(map(str, missing))}")
        raise typer.Exit(EXIT_NOT_FOUND)


@app.command()
@friendly
def purge(queue: str, database_url: str | None = DatabaseUrlOption, output: OutputOption = Format.table) -> None:
    """Delete every message of a queue."""
    with _queue(database_url) as q:
        purged = q.purge(queue)
    if output is Format.table:
        err_console.print(f"purged {purged} message(s)")
    else:
        emit({"purged": purged}, output, lambda: "")


@app.command()
@friendly
def drop(queue: str, database_url: str | None = DatabaseUrlOption) -> None:
    """Drop a queue with its messages and archive."""
    with _queue(database_url) as q:
        q.drop(queue)
    err_console.print(f"queue {queue!r} dropped")


@app.command("list")
@friendly
def list_(output: OutputOption = Format.table, as_json: JsonFlag = False,
          database_url: str | None = DatabaseUrlOption) -> None:  # fmt: skip
    """List queues (PGMQ's fields with -o json or yaml)."""
    with _queue(database_url) as q:
        queues = plain(q.list_queues())
    emit(queues, chosen(output, as_json), lambda: records_table(queues, [
        Column("QUEUE_NAME", lambda r: str(r["queue_name"])),
        Column("PARTITIONED", lambda r: "yes" if r["is_partitioned"] else "no"),
        Column("UNLOGGED", lambda r: "yes" if r["is_unlogged"] else "no"),
        Column("CREATED_AT", lambda r: _seconds(r["created_at"])),
    ]))  # fmt: skip


@app.command()
@friendly
def metrics(
    queue: str | None = typer.Argument(None, help="One queue (default: all)."),
    output: OutputOption = Format.table,
    as_json: JsonFlag = False,
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Queue lengths, ages and totals (PGMQ's fields with -o json or yaml)."""
    with _queue(database_url) as q:
        rows = plain([q.metrics(queue)] if queue else q.metrics_all())

    def seconds(value: int | None) -> str:
        return "-" if value is None else str(value)

    emit(rows, chosen(output, as_json), lambda: records_table(rows, [
        Column("QUEUE", lambda m: str(m["queue_name"])),
        Column("LENGTH", lambda m: str(m["queue_length"])),
        Column("VISIBLE", lambda m: str(m["queue_visible_length"])),
        Column("TOTAL SENT", lambda m: str(m["total_messages"])),
        Column("OLDEST (S)", lambda m: seconds(m["oldest_msg_age_sec"])),
        Column("NEWEST (S)", lambda m: seconds(m["newest_msg_age_sec"])),
    ]))  # fmt: skip


@app.command()
@friendly
def tail(
    queue: str,
    from_start: bool = typer.Option(False, "--from-start", help="Show the messages already queued first."),
    poll_interval: float = typer.Option(1.0, min=0.05, help="Seconds between polls when no NOTIFY comes."),
    limit: int = typer.Option(0, min=0, help="Stop after this many messages (0: follow until Ctrl-C)."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Follow a queue live, printing each new message as JSON, without consuming it."""
    shown = 0
    with _queue(database_url) as q, psycopg.connect(resolve_url(database_url), autocommit=True) as listener:
        q.metrics(queue)  # a clear error when the queue does not exist
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(q.listen_channel(queue))))
        last = 0 if from_start else q.last_msg_id(queue)
        try:
            while limit == 0 or shown < limit:
                batch = q.peek(queue, last, 100)
                for m in batch:
                    typer.echo(
                        json.dumps(
                            {
                                "msg_id": m.msg_id,
                                "message": m.message,
                                "headers": m.headers,
                                "enqueued_at": m.enqueued_at.isoformat(),
                            }
                        )
                    )
                    last, shown = m.msg_id, shown + 1
                    if limit and shown >= limit:
                        return
                if not batch:
                    _wait_notify(listener, poll_interval)
        except KeyboardInterrupt:
            return


def _wait_notify(conn: psycopg.Connection[Any], timeout: float) -> None:
    """Block until a notification arrives on ``conn`` or ``timeout`` passes (then drain what came)."""
    deadline = time.monotonic() + timeout
    for _ in conn.notifies(timeout=max(0.0, deadline - time.monotonic()), stop_after=1):
        break
