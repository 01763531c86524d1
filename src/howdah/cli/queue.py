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

from howdah.cli._common import DatabaseUrlOption, console, fail, friendly, parse_json, resolve_url
from howdah.cli._schema import add_schema_commands
from howdah.queue import COMPONENT, Message, Queue

app = typer.Typer(help="Install the PGMQ-compatible schema and work with queues.", no_args_is_help=True)


@contextmanager
def _queue(database_url: str | None) -> Iterator[Queue]:
    with Queue(resolve_url(database_url), pool_size=2) as q:
        yield q


def _messages_table(messages: list[Message], title: str) -> Table:
    table = Table(title=title)
    for column in ("msg_id", "read_ct", "enqueued_at", "vt", "message", "headers"):
        table.add_column(column, overflow="fold")
    for m in messages:
        table.add_row(
            str(m.msg_id), str(m.read_ct), m.enqueued_at.isoformat(timespec="seconds"),
            m.vt.isoformat(timespec="seconds"), json.dumps(m.message), json.dumps(m.headers) if m.headers else "",
        )  # fmt: skip
    return table


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
    console.print(f"partition maintenance done: {actions} action(s)")


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
        raise fail("a queue cannot be both --unlogged and --partitioned")
    with _queue(database_url) as q:
        if partitioned:
            q.create_partitioned(queue, partition_interval, retention_interval)
        else:
            q.create(queue, unlogged=unlogged)
    console.print(f"queue {queue!r} ready")


@app.command()
@friendly
def send(
    queue: str,
    message: str = typer.Argument(..., help="The message, as JSON."),
    headers: str | None = typer.Option(None, help="Headers, as a JSON object."),
    delay: int = typer.Option(0, min=0, help="Seconds before the message becomes visible."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Send one message; prints its msg_id."""
    body = parse_json(message, "message")
    head = parse_json(headers, "headers") if headers is not None else None
    with _queue(database_url) as q:
        typer.echo(q.send(queue, body, headers=head, delay=delay))


@app.command()
@friendly
def read(
    queue: str,
    qty: int = typer.Option(1, min=1, help="How many messages."),
    vt: int = typer.Option(30, min=0, help="Visibility timeout in seconds."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Read messages (they stay invisible for --vt seconds)."""
    with _queue(database_url) as q:
        _show(q.read(queue, vt=vt, qty=qty), f"read from {queue}", as_json)


@app.command()
@friendly
def pop(
    queue: str,
    qty: int = typer.Option(1, min=1, help="How many messages."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Read and delete messages in one step."""
    with _queue(database_url) as q:
        _show(q.pop(queue, qty), f"popped from {queue}", as_json)


def _show(messages: list[Message], title: str, as_json: bool) -> None:
    if as_json:
        for m in messages:
            typer.echo(
                json.dumps(
                    {
                        "msg_id": m.msg_id,
                        "read_ct": m.read_ct,
                        "message": m.message,
                        "headers": m.headers,
                        "enqueued_at": m.enqueued_at.isoformat(),
                    }
                )
            )
    elif messages:
        console.print(_messages_table(messages, title))
    else:
        console.print("(no message)")


@app.command()
@friendly
def archive(queue: str, msg_ids: list[int], database_url: str | None = DatabaseUrlOption) -> None:
    """Move messages to the queue's archive table."""
    with _queue(database_url) as q:
        done = q.archive_batch(queue, msg_ids)
    _report(done, msg_ids, "archived")


@app.command()
@friendly
def delete(queue: str, msg_ids: list[int], database_url: str | None = DatabaseUrlOption) -> None:
    """Delete messages."""
    with _queue(database_url) as q:
        done = q.delete_batch(queue, msg_ids)
    _report(done, msg_ids, "deleted")


def _report(done: list[int], asked: list[int], verb: str) -> None:
    console.print(f"{verb}: {', '.join(map(str, done)) or 'none'}")
    missing = sorted(set(asked) - set(done))
    if missing:
        console.print(f"[yellow]not found:[/] {', '.join(map(str, missing))}")
        raise typer.Exit(1)


@app.command()
@friendly
def purge(queue: str, database_url: str | None = DatabaseUrlOption) -> None:
    """Delete every message of a queue."""
    with _queue(database_url) as q:
        console.print(f"purged {q.purge(queue)} message(s)")


@app.command()
@friendly
def drop(queue: str, database_url: str | None = DatabaseUrlOption) -> None:
    """Drop a queue with its messages and archive."""
    with _queue(database_url) as q:
        q.drop(queue)
    console.print(f"queue {queue!r} dropped")


@app.command("list")
@friendly
def list_(database_url: str | None = DatabaseUrlOption) -> None:
    """List queues."""
    with _queue(database_url) as q:
        queues = q.list_queues()
    table = Table(title="queues")
    for column in ("name", "partitioned", "unlogged", "created_at"):
        table.add_column(column)
    for info in queues:
        table.add_row(
            info.queue_name,
            str(info.is_partitioned),
            str(info.is_unlogged),
            info.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@app.command()
@friendly
def metrics(
    queue: str | None = typer.Argument(None, help="One queue (default: all)."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Queue lengths, ages and totals."""
    with _queue(database_url) as q:
        rows = [q.metrics(queue)] if queue else q.metrics_all()
    table = Table(title="metrics")
    for column in ("queue", "length", "visible", "total sent", "oldest (s)", "newest (s)"):
        table.add_column(column, justify="right")
    for m in rows:
        table.add_row(
            m.queue_name,
            str(m.queue_length),
            str(m.queue_visible_length),
            str(m.total_messages),
            str(m.oldest_msg_age_sec if m.oldest_msg_age_sec is not None else "-"),
            str(m.newest_msg_age_sec if m.newest_msg_age_sec is not None else "-"),
        )
    console.print(table)


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
    url = resolve_url(database_url)
    shown = 0
    with Queue(url, pool_size=1) as q, psycopg.connect(url, autocommit=True) as listener:
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
