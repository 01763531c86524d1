"""Every control of every console page is labelled: each input, select and textarea has a <label for> (or an
aria-label), each button a name, each table header a scope; checked on the rendered HTML."""

from __future__ import annotations

import uuid
from html.parser import HTMLParser

from psycopg.types.json import Jsonb

from howdah.control.spec import InstanceSpec
from howdah.queue import AsyncQueue

from .conftest import Console


class _Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.labelled: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.buttons: list[str] = []
        self._button: dict[str, str | None] | None = None
        self._button_text = ""
        self.headers_without_scope = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "label" and attributes.get("for"):
            self.labelled.add(str(attributes["for"]))
        if tag in ("input", "select", "textarea") and attributes.get("type") != "hidden":
            self.controls.append(attributes)
        if tag == "button":
            self._button, self._button_text = attributes, ""
        if tag == "th" and "scope" not in attributes:
            self.headers_without_scope += 1

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button_text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None:
            self.buttons.append(str(self._button.get("aria-label") or self._button_text.strip()))
            self._button = None


def _check(html: str, where: str) -> int:
    parsed = _Controls()
    parsed.feed(html)
    for control in parsed.controls:
        assert control.get("aria-label") or control.get("id") in parsed.labelled, (where, control)
    assert all(parsed.buttons), (where, parsed.buttons)
    assert parsed.headers_without_scope == 0, where
    return len(parsed.controls) + len(parsed.buttons)


async def test_every_control_of_every_page_is_labelled(console: Console) -> None:
    await console.control.create_token("default", "viewer")  # the org exists
    instance = await console.control.create_instance("default", InstanceSpec(name=f"db-{uuid.uuid4().hex[:8]}"), None)
    connection = {"host": "127.0.0.1", "port": 5555, "user": "app", "password": "pw", "dbname": "app"}
    async with console.pool.connection() as conn:
        await conn.execute("UPDATE control.instances SET state = 'Up', has_active_work = false, connection = %s "
                           "WHERE id = %s", (Jsonb(connection), instance["id"]))  # fmt: skip
        await conn.execute("INSERT INTO control.backups (org_id, instance_id, data_plane, spec, status) "
                           "VALUES ('default', %s, 'local', '{}', 'completed')", (instance["id"],))  # fmt: skip
        await conn.execute("INSERT INTO howdah.workflows (id, name, args, status, queue_name) "
                           "VALUES ('labels-wf', 'w', '{}', 'waiting', 'q')")  # fmt: skip
        await AsyncQueue(conn).create("labels_q")
    platform = await console.browser("platform")
    pages = ["/instances", "/instances/new", f"/instances/{instance['id']}", "/tokens", "/workflows",
             "/workflows/labels-wf", "/queues", "/queues/labels_q", "/orgs"]  # fmt: skip
    checked = 0
    for path in pages:
        answer = await platform.get(path)
        assert answer.status_code == 200, path
        checked += _check(answer.text, path)
    async with console.client() as anonymous:
        checked += _check((await anonymous.get("/sign-in")).text, "/sign-in")
    assert checked > 30  # the pages do have controls to check
