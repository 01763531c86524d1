"""A role that can create functions in the database's ``public`` schema (a tenant's database where the worker
runs df workflows) cannot make the worker's calls run its code: every ``howdah`` function pins its search_path,
so a better-matching overload of a built-in (``array_length(text[], integer)`` against the catalog's
``anyarray``, ``jsonb_build_array`` with exact types against ``VARIADIC "any"``) is never chosen."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from howdah.durable import DurableApp, WorkflowContext

from ._helpers import Registry, new_id, rows

WORKFLOWS = Registry()

SHADOWS = """
CREATE TABLE public.hijacks (fn text NOT NULL);
CREATE FUNCTION public.array_length(a text[], d integer) RETURNS integer LANGUAGE sql AS $$
    INSERT INTO public.hijacks VALUES ('array_length');
    SELECT pg_catalog.array_length(a, d);
$$;
CREATE FUNCTION public.jsonb_build_array(a integer, b text, c text, d jsonb, e jsonb) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO public.hijacks VALUES ('jsonb_build_array');
    SELECT pg_catalog.jsonb_build_array(a, b, c, d, e);
$$;
CREATE FUNCTION public.clock_timestamp(x integer DEFAULT 0) RETURNS timestamptz LANGUAGE sql AS $$
    INSERT INTO public.hijacks VALUES ('clock_timestamp');
    SELECT pg_catalog.clock_timestamp();
$$;
"""
UNSHADOW = """
DROP FUNCTION IF EXISTS public.array_length(text[], integer);
DROP FUNCTION IF EXISTS public.jsonb_build_array(integer, text, text, jsonb, jsonb);
DROP FUNCTION IF EXISTS public.clock_timestamp(integer);
DROP TABLE IF EXISTS public.hijacks;
"""


@WORKFLOWS.workflow()
async def idle(ctx: WorkflowContext, args: dict[str, Any]) -> None:
    return None


@pytest.fixture
def shadowed(db_url: str) -> Iterator[None]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(UNSHADOW)
        conn.execute(SHADOWS)
    try:
        yield
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(UNSHADOW)


async def test_claims_checkpoints_and_run_ends_never_call_a_shadowing_function(
    app: DurableApp, db_url: str, shadowed: None
) -> None:
    ids = [new_id("shadow") for _ in range(3)]
    for wf in ids:
        await app.start("idle", workflow_id=wf)
    messages = {m.message["workflow_id"]: m for m in await app.queue.read(app.queue_name, vt=30, qty=3)}
    claims = await asyncio.gather(*(app.store.claim(wf, messages[wf].msg_id, messages[wf].read_ct) for wf in ids))
    assert [c.outcome for c in claims] == ["claimed"] * 3
    now = datetime.now(UTC)
    await asyncio.gather(
        *(
            app.store.checkpoint(wf, c.fence, 0, "a", "step", {"value": 1}, None, 1, now)
            for wf, c in zip(ids, claims, strict=True)
        )
    )
    # claimed again on the same read (a replay): the recorded steps are gathered as JSON arrays
    again = await app.store.claim(ids[0], messages[ids[0]].msg_id, messages[ids[0]].read_ct)
    assert again.outcome == "claimed" and again.steps == [[0, "a", "step", {"value": 1}, None]]
    await app.store.checkpoint(ids[0], again.fence, 1, "b", "step", {"value": 2}, None, 1, now)
    await asyncio.gather(
        app.store.finish(ids[0], again.fence, "succeeded", 2, None),
        *(app.store.finish(wf, c.fence, "succeeded", 1, None) for wf, c in zip(ids[1:], claims[1:], strict=True)),
    )
    assert rows(db_url, "SELECT status FROM howdah.workflows WHERE id = ANY(%s)", (ids,)) == [("succeeded",)] * 3
    assert rows(db_url, "SELECT fn FROM public.hijacks") == []
