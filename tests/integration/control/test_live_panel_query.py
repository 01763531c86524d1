"""The ``live_panel`` query behind ``howdah up``'s live panel, on real Postgres: each instance's state since the
event that began it, the change in flight, the newest events first, deleted instances left out."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg.rows import dict_row

from howdah.cli._live_view import live_data
from howdah.control.queries import QUERIES

from .conftest import Api
from .test_api import BASE, create_up, report

pytestmark = pytest.mark.asyncio


async def _panel(api: Api) -> dict[str, Any]:
    async with api.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["live_panel"], {"rows": 10_000, "events": 10_000})
        row = await cur.fetchone()
    assert row is not None
    return row


async def _events(api: Api, instance_id: str) -> list[tuple[Any, str]]:
    async with api.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT at, state FROM control.instance_events WHERE instance_id = %s ORDER BY id", (instance_id,)
        )
        return await cur.fetchall()


async def test_progress_and_events_of_each_instance(api: Api) -> None:
    body = await create_up(api)
    name, instance_id = body["name"], body["id"]
    data = live_data(await _panel(api))
    mine = next(i for i in data.instances if i.name == name)
    history = await _events(api, instance_id)
    assert history[-1][1] == "Up" and mine.state == "Up" and mine.change is None
    assert mine.since == history[-1][0]  # since the event that made it Up
    assert [e.state for e in data.events if e.name == name] == [state for _, state in reversed(history)]
    assert data.counts["Up"] >= 1

    stopped = await api.call("POST", f"{BASE}/{instance_id}/stop")
    assert stopped.status_code == 202, stopped.text
    data = live_data(await _panel(api))
    mine = next(i for i in data.instances if i.name == name)
    history = await _events(api, instance_id)
    assert (mine.state, mine.change, mine.since) == (history[-1][1], "Stop", history[-1][0])
    assert data.events[0].name == name and data.events[0].change == "Stop"  # the newest first

    await report(api, instance_id, "Stopped", stopped.json()["generation"])
    deleted = await api.call("DELETE", f"{BASE}/{instance_id}")
    assert deleted.status_code == 202, deleted.text
    await report(api, instance_id, "Deleted", deleted.json()["generation"])
    data = live_data(await _panel(api))
    assert all(i.name != name for i in data.instances) and "Deleted" not in data.counts
    assert data.events[0].name == name and data.events[0].state == "Deleted"  # its events stay, as history


async def test_rows_and_events_are_bounded(api: Api) -> None:
    for _ in range(3):
        await create_up(api)
    async with api.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["live_panel"], {"rows": 2, "events": 1})
        row = await cur.fetchone()
    assert row is not None
    data = live_data(row)
    assert len(data.instances) == 2 and len(data.events) == 1 and sum(data.counts.values()) >= 3
    assert isinstance(data.workflows, dict) and isinstance(data.queues, dict)
