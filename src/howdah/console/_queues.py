"""The Queues pages (platform admins): every queue's depth beside its dead-letter queue's, a queue's messages
peeked at (never consumed), and for dead-lettered messages Replay (back to the queue they came from, in one
transaction) and Purge."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from psycopg.rows import dict_row

from howdah.console._queries import QUERIES
from howdah.console._web import ConsoleRoute, Session, changing, page, session_of
from howdah.control.errors import Conflict, Invalid, NotFound
from howdah.control.service import require_platform
from howdah.queue import DLQ_SUFFIX, AsyncQueue, Message, QueueNotFound

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PEEK = 50
DEAD_LETTER = "x-howdah-dead-letter"  # the header howdah_dead_letter() writes: reason, source_queue, …


async def _platform(request: Request) -> Session:
    session = await session_of(request)
    require_platform(session.who)
    return session


def dead_letter_source(message: Message) -> str | None:
    """The queue a dead-lettered message came from (None: not dead-lettered)."""
    about = (message.headers or {}).get(DEAD_LETTER)
    source = about.get("source_queue") if isinstance(about, dict) else None
    return source if isinstance(source, str) and source else None


@router.get("/queues")
async def queues(request: Request) -> Response:
    session = await _platform(request)
    async with session.ctl.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["queues"], {"dlq_suffix": DLQ_SUFFIX})  # one query for the whole page
        rows = await cur.fetchall()
    return page(request, "queues.html", session, rows=rows)


async def _peek(session: Session, name: str, after: int) -> list[Message]:
    async with session.ctl.pool.connection() as conn:
        try:
            return await AsyncQueue(conn).peek(name, after, PEEK + 1)
        except QueueNotFound as exc:
            raise NotFound(f"queue {name!r} not found") from exc


@router.get("/queues/{name}")
async def queue(
    request: Request, name: str, after: Annotated[int, Query(ge=0, le=2**62)] = 0
) -> Response:  # fmt: skip
    """Messages after ``after``, oldest first, a page at a time (a keyset on msg_id); none is read."""
    session = await _platform(request)
    messages = await _peek(session, name, after)
    following = messages[PEEK - 1].msg_id if len(messages) > PEEK else None
    shown: list[dict[str, Any]] = [{"m": m, "source": dead_letter_source(m)} for m in messages[:PEEK]]
    return page(request, "queue.html", session, name=name, messages=shown, following=following, after=after)


@router.post("/queues/{name}/replay")
async def replay(request: Request, name: str) -> Response:
    """Send a dead-lettered message back to its source queue and delete it here, in one transaction."""
    session = await _platform(request)
    form = await changing(request, session)
    try:
        msg_id = int(form.get("msg_id", ""))
    except ValueError as exc:
        raise Invalid("msg_id must be a message id") from exc
    async with session.ctl.pool.connection() as conn, conn.transaction():
        queue = AsyncQueue(conn)
        try:
            found = [m for m in await queue.peek(name, max(msg_id - 1, 0), 1) if m.msg_id == msg_id]
        except QueueNotFound as exc:
            raise NotFound(f"queue {name!r} not found") from exc
        if not found:
            raise NotFound(f"message {msg_id} is no longer in {name!r}")
        source = dead_letter_source(found[0])
        if source is None:
            raise Conflict(f"message {msg_id} was not dead-lettered: there is no queue to replay it to")
        headers = {k: v for k, v in (found[0].headers or {}).items() if k != DEAD_LETTER} or None
        try:
            await queue.send(source, found[0].message, headers=headers)
        except QueueNotFound as exc:
            raise Conflict(f"its source queue {source!r} no longer exists") from exc
        if not await queue.delete(name, msg_id):
            raise Conflict(f"message {msg_id} was taken from {name!r} meanwhile; nothing was replayed")
    return RedirectResponse(f"/queues/{name}", status_code=303)


@router.post("/queues/{name}/purge")
async def purge(request: Request, name: str) -> Response:
    session = await _platform(request)
    form = await changing(request, session)
    if form.get("confirm_name", "") != name:
        raise Invalid(f"to purge it, type the queue's name ({name}) exactly")
    async with session.ctl.pool.connection() as conn:
        try:
            await AsyncQueue(conn).purge(name)
        except QueueNotFound as exc:
            raise NotFound(f"queue {name!r} not found") from exc
    return RedirectResponse(f"/queues/{name}", status_code=303)
