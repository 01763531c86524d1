"""The console's pages against a real control-plane database: what each shows, the create form's validation
next to its fields, org isolation, HTML-escaping of every user-controlled string, tokens, and offline /docs."""

from __future__ import annotations

import re
import uuid
from typing import Any

from psycopg.types.json import Jsonb

from howdah.control.events import data_plane_queue
from howdah.control.spec import InstanceSpec
from howdah.queue import AsyncQueue

from .conftest import Console, csrf_of

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def unique(prefix: str = "db") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _sql(console: Console, query: str, params: Any = ()) -> None:
    async with console.pool.connection() as conn:
        await conn.execute(query, params)


async def _create(console: Console, org: str, **spec: Any) -> dict[str, Any]:
    return await console.control.create_instance(org, InstanceSpec(name=unique(), **spec), None)


def _field_error(html: str, field: str) -> str:
    found = re.search(rf'id="{field}-error" role="alert">([^<]*)<', html)
    return found.group(1) if found else ""


async def test_the_table_shows_the_orgs_instances_and_hides_deleted_ones(console: Console) -> None:
    mine = await _create(console, "acme", stack="oltp", memory="2Gi")
    gone = await _create(console, "acme")
    theirs = await _create(console, "other")
    await _sql(console, "UPDATE control.instances SET state = 'Deleted' WHERE id = %s", (gone["id"],))
    viewer = await console.browser("acme-viewer")
    page = (await viewer.get("/instances")).text
    assert 'data-poll="/instances/rows"' in page
    assert f'data-instance="{mine["name"]}"' in page and "oltp" in page and "1 CPU · 2Gi · 10Gi" in page
    assert gone["name"] not in page and theirs["name"] not in page
    with_deleted = (await viewer.get("/instances?deleted=true")).text
    assert gone["name"] in with_deleted and theirs["name"] not in with_deleted
    rows = await viewer.get("/instances/rows")  # what the page polls: the rows alone
    assert rows.status_code == 200 and "<html" not in rows.text
    assert mine["name"] in rows.text and gone["name"] not in rows.text and theirs["name"] not in rows.text
    assert f'data-instance="{mine["name"]}"' in rows.text and ">Submitted</span>" in rows.text
    await _sql(console, "UPDATE control.instances SET state = 'Up', has_active_work = false WHERE id = %s",
               (mine["id"],))  # fmt: skip
    refreshed = (await viewer.get("/instances/rows")).text
    row = re.search(rf'data-instance="{mine["name"]}".*?</tr>', refreshed, re.S)
    assert row and ">Up</span>" in row.group(0)
    chart = re.search(r'<title id="by-state-title">Instances by state: ([^<]*)</title>', refreshed)
    shown = dict(part.rsplit(" ", 1) for part in chart.group(1).split(", ")) if chart else {}
    async with console.pool.connection() as conn:
        cur = await conn.execute("SELECT state, count(*)::text FROM control.instances "
                                 "WHERE org_id = 'acme' AND state <> 'Deleted' GROUP BY state")  # fmt: skip
        assert shown == dict(await cur.fetchall())  # the chart counts what the table holds


async def test_another_orgs_instance_is_never_shown(console: Console) -> None:
    theirs = await _create(console, "other")
    admin = await console.browser("acme-admin")
    page = await admin.get(f"/instances/{theirs['id']}")
    assert page.status_code == 404 and theirs["name"] not in page.text and "Not found" in page.text
    assert ">Sign out</button>" in page.text  # the error page keeps the navigation
    csrf = await console.csrf("acme-admin")
    for action in ("restart", "stop", "backup"):
        refused = await admin.post(f"/instances/{theirs['id']}/{action}", data={"csrf_token": csrf})
        assert refused.status_code == 404, action
    deleted = await admin.post(f"/instances/{theirs['id']}/delete", data={"csrf_token": csrf,
                                                                      "confirm_name": theirs["name"]})  # fmt: skip
    assert deleted.status_code == 404
    row = await console.control.get_instance("other", str(theirs["id"]))
    assert row["state"] == "Submitted"


async def test_the_create_form_shows_the_apis_errors_next_to_their_fields(console: Console) -> None:
    member = await console.browser("acme-member")
    form = (await member.get("/instances/new")).text
    for label in ("Name", "Stack", "CPU", "Memory", "Storage", "Extensions"):
        assert re.search(rf'<label for="[a-z_]+">{label}</label>', form), label
    assert ">Create</button>" in form
    assert "General-purpose Postgres with query statistics." in form  # each stack says what it is
    csrf = csrf_of(form)
    bad = await member.post("/instances", data={"name": "Bad_Name", "stack": "standard", "cpu": "1",
                                                "memory": "lots", "storage": "10Gi", "csrf_token": csrf})  # fmt: skip
    assert bad.status_code == 422
    assert _field_error(bad.text, "name") and _field_error(bad.text, "memory")
    assert not _field_error(bad.text, "cpu") and 'value="Bad_Name"' in bad.text  # what was typed is kept
    unknown = await member.post("/instances", data={"name": unique(), "extensions": "no_such_extension",
                                                    "csrf_token": csrf})  # fmt: skip
    assert unknown.status_code == 422 and "no_such_extension" in _field_error(unknown.text, "extensions")
    name = unique()
    created = await member.post("/instances", data={"name": name, "stack": "oltp", "cpu": "1", "memory": "2Gi",
                                                    "storage": "10Gi", "extensions": "vector, pg_trgm",
                                                    "csrf_token": csrf})  # fmt: skip
    assert created.status_code == 303 and created.headers["location"] == "/instances"
    rows, _ = await console.control.list_instances("acme", None, 500, 0)
    row = next(r for r in rows if r["name"] == name)
    assert row["desired_spec"]["stack"] == "oltp" and row["desired_spec"]["memory"] == "2Gi"
    assert [e["name"] for e in row["desired_spec"]["extensions"]] == ["vector", "pg_trgm"]
    again = await member.post("/instances", data={"name": name, "csrf_token": csrf})
    assert again.status_code == 409 and "already exists" in _field_error(again.text, "name")


async def test_user_controlled_strings_are_inert(console: Console) -> None:
    instance = await _create(console, "acme")
    await _sql(console, "UPDATE control.instances SET last_error = %s WHERE id = %s", (SCRIPT, instance["id"]))
    admin = await console.browser("acme-admin")
    csrf = await console.csrf("acme-admin")
    for page in (await admin.get("/instances"), await admin.get("/instances/rows"),
                 await admin.get(f"/instances/{instance['id']}")):  # fmt: skip
        assert SCRIPT not in page.text and ESCAPED in page.text
    rejected = await admin.post("/instances", data={"name": SCRIPT, "extensions": SCRIPT, "csrf_token": csrf})
    assert rejected.status_code == 422 and SCRIPT not in rejected.text and ESCAPED in rejected.text
    named = await admin.post("/tokens", data={"name": SCRIPT, "role": "viewer", "csrf_token": csrf})
    assert named.status_code == 201 and SCRIPT not in named.text and ESCAPED in named.text
    await _sql(
        console, "INSERT INTO howdah.workflows (id, name, args, status, queue_name, error) "
        "VALUES (%s, %s, %s, 'failed', 'q', %s)",
        (f"wf-{SCRIPT}", SCRIPT, Jsonb({"note": SCRIPT}), Jsonb({"message": SCRIPT})),
    )  # fmt: skip
    platform = await console.browser("platform")
    listed = await platform.get("/workflows?status=failed")
    shown = await platform.get(f"/workflows/wf-{SCRIPT}")
    assert shown.status_code == 200
    for page in (listed, shown):
        assert SCRIPT not in page.text and "&lt;script&gt;" in page.text
    # and every page forbids inline scripts, should any text ever slip through unescaped
    assert "script-src 'self'" in shown.headers["content-security-policy"]


async def test_an_instances_page_hides_the_password_until_asked_and_from_viewers(console: Console) -> None:
    instance = await _create(console, "acme")
    connection = {"host": "127.0.0.1", "port": 5555, "user": "app", "password": "s3cret-pw", "dbname": "app"}
    await _sql(console, "UPDATE control.instances SET connection = %s, state = 'Up', has_active_work = false "
               "WHERE id = %s", (Jsonb(connection), instance["id"]))  # fmt: skip
    member = await (await console.browser("acme-member")).get(f"/instances/{instance['id']}")
    assert "postgresql://app@127.0.0.1:5555/app" in member.text
    assert re.search(r"<details[^>]*><summary>Show password</summary><code[^>]*>s3cret-pw</code>", member.text)
    for button in ("Restart", "Stop", "Start", "Back up", "Delete"):
        assert f">{button}</button>" in member.text
    viewer = await (await console.browser("acme-viewer")).get(f"/instances/{instance['id']}")
    assert "postgresql://app@127.0.0.1:5555/app" in viewer.text and "s3cret-pw" not in viewer.text
    assert ">Restart</button>" not in viewer.text and ">Delete</button>" not in viewer.text


async def test_lifecycle_buttons_go_through_the_state_machine(console: Console) -> None:
    instance = await _create(console, "acme")
    member = await console.browser("acme-member")
    csrf = await console.csrf("acme-member")
    busy = await member.post(f"/instances/{instance['id']}/restart", data={"csrf_token": csrf})
    assert busy.status_code == 409 and "still working" in busy.text  # the API's rule, in words
    await _sql(console, "UPDATE control.instances SET state = 'Up', has_active_work = false WHERE id = %s",
               (instance["id"],))  # fmt: skip
    restarted = await member.post(f"/instances/{instance['id']}/restart", data={"csrf_token": csrf})
    assert restarted.status_code == 303
    assert (await console.control.get_instance("acme", str(instance["id"])))["state"] == "Restarting"
    await _sql(console, "UPDATE control.instances SET state = 'Up', has_active_work = false WHERE id = %s",
               (instance["id"],))  # fmt: skip
    wrong = await member.post(f"/instances/{instance['id']}/delete", data={"csrf_token": csrf, "confirm_name": "x"})
    assert wrong.status_code == 422 and "to delete it, type the instance" in wrong.text
    assert (await console.control.get_instance("acme", str(instance["id"])))["state"] == "Up"
    deleted = await member.post(f"/instances/{instance['id']}/delete",
                                data={"csrf_token": csrf, "confirm_name": instance["name"]})  # fmt: skip
    assert deleted.status_code == 303
    assert (await console.control.get_instance("acme", str(instance["id"])))["state"] == "Deleting"


async def test_tokens_are_shown_once_and_revoked(console: Console) -> None:
    admin = await console.browser("acme-admin")
    page = await admin.get("/tokens")
    assert page.status_code == 200 and "acme-member token" in page.text and "other-admin token" not in page.text
    assert '<option value="platform"' not in page.text  # an org admin issues no platform token
    name = unique("ci")
    created = await admin.post("/tokens", data={"name": name, "role": "viewer", "csrf_token": csrf_of(page.text)})
    assert created.status_code == 201
    token = re.search(r'value="(hwd_[^"]+)" readonly', created.text)
    assert token and (await console.control.authenticate(token.group(1))).role == "viewer"
    listed = await admin.get("/tokens")
    assert name in listed.text and token.group(1) not in listed.text  # shown once
    token_id = re.search(rf'<tr data-token="([^"]+)">\s*<td>{name}</td>', listed.text)
    assert token_id
    escalate = await admin.post("/tokens", data={"name": "x", "role": "platform", "csrf_token": csrf_of(page.text)})
    assert escalate.status_code == 403
    other = await admin.post(f"/tokens/{console.token_ids['other-admin']}/revoke",
                             data={"csrf_token": csrf_of(page.text)})  # fmt: skip
    assert other.status_code == 404  # another org's token: not found, and not revoked
    assert (await console.control.authenticate(console.tokens["other-admin"])).org_id == "other"
    revoked = await admin.post(f"/tokens/{token_id.group(1)}/revoke", data={"csrf_token": csrf_of(page.text)})
    assert revoked.status_code == 303
    assert name not in (await admin.get("/tokens")).text
    async with console.client() as client:
        refused = await client.post("/sign-in", data={"token": token.group(1)})
        assert refused.status_code == 401


async def test_workflows_page_on_an_index_and_queues(console: Console) -> None:
    batch = unique("wf")
    async with console.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO howdah.workflows (id, name, args, status, queue_name, created_at) "
            "SELECT %s || '-' || lpad(i::text, 3, '0'), 'paged', '{}', 'cancelled', 'q', "
            "       now() - make_interval(secs => i) FROM generate_series(1, 60) AS i",
            (batch,),
        )
        await conn.execute(
            "INSERT INTO howdah.steps (workflow_id, step_index, name, kind, attempts, started_at) "
            "VALUES (%s, 0, 'provision', 'step', 2, now() - interval '2 seconds')",
            (f"{batch}-001",),
        )
    platform = await console.browser("platform")
    first = await platform.get("/workflows?status=cancelled")
    ids = re.findall(rf">({batch}-\d+)</a>", first.text)
    assert ids == [f"{batch}-{i:03d}" for i in range(1, 51)]  # newest first
    older = re.search(r'href="(/workflows\?[^"]*before_at[^"]*)">Older', first.text)
    assert older
    second = await platform.get(older.group(1).replace("&amp;", "&"))
    assert re.findall(rf">({batch}-\d+)</a>", second.text) == [f"{batch}-{i:03d}" for i in range(51, 61)]
    assert ">Older<" not in second.text
    async with console.pool.connection() as conn:  # a hostile name: filtered on, shown inert
        await conn.execute(
            "INSERT INTO howdah.workflows (id, name, args, status, queue_name) "
            "VALUES (%s, '<script>x()</script>', '{}', 'cancelled', 'q')",
            (f"{batch}-named",),
        )
    named = await platform.get("/workflows", params={"status": "cancelled", "name": "<script>x()</script>"})
    assert re.findall(rf">({batch}-[a-z0-9]+)</a>", named.text) == [f"{batch}-named"]
    assert "<script>x()" not in named.text and "&lt;script&gt;x()" in named.text
    paged = await platform.get("/workflows", params={"status": "cancelled", "name": "paged"})
    assert f">{batch}-001</a>" in paged.text and f"{batch}-named" not in paged.text
    detail = await platform.get(f"/workflows/{batch}-001")
    assert detail.status_code == 200 and "provision" in detail.text and "<td>2</td>" in detail.text
    assert (await platform.get("/workflows/no-such-workflow")).status_code == 404
    queues = await platform.get("/queues")
    assert queues.status_code == 200 and f">{data_plane_queue('local')}</a></td>" in queues.text


async def test_docs_work_offline_and_the_api_keeps_answering_json(console: Console) -> None:
    async with console.client() as client:
        docs = await client.get("/docs")
        assert docs.status_code == 200 and "cdn" not in docs.text.lower()
        assets = re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', docs.text)
        assert len(assets) >= 2
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset
        schema = (await client.get("/openapi.json")).json()
        assert schema["components"]["securitySchemes"]["token"] == {
            "type": "http", "scheme": "bearer", "description": "An API token: hwd_…"
        }  # fmt: skip
        assert schema["paths"]["/api/v1/orgs/{org_id}/instances"]["get"]["security"] == [{"token": []}]
        assert not any(path.startswith("/instances") or path == "/sign-in" for path in schema["paths"])
        anonymous = await client.get("/api/v1/orgs/acme/instances")
        assert anonymous.status_code == 401
        assert anonymous.json() == {"error": {"code": "unauthorized", "message": anonymous.json()["error"]["message"]}}
        listed = await client.get(
            "/api/v1/orgs/acme/instances", headers={"Authorization": f"Bearer {console.tokens['acme-viewer']}"}
        )
        assert listed.status_code == 200 and "items" in listed.json()


async def test_workflow_buttons_cancel_retry_and_signal(console: Console) -> None:
    workflow_id = unique("wf-act")
    await _sql(console, "INSERT INTO howdah.workflows (id, name, args, status, queue_name) "
               "VALUES (%s, 'approval', '{}', 'waiting', 'q')", (workflow_id,))  # fmt: skip
    platform = await console.browser("platform")
    page = await platform.get(f"/workflows/{workflow_id}")
    for button in ("Cancel", "Send signal"):
        assert f">{button}</button>" in page.text
    csrf = csrf_of(page.text)
    signal = {"csrf_token": csrf, "signal_name": "approve"}
    not_json = await platform.post(f"/workflows/{workflow_id}/signal", data={**signal, "signal_payload": "{nope"})
    assert not_json.status_code == 422 and "the payload is not JSON" in not_json.text
    sent = await platform.post(f"/workflows/{workflow_id}/signal", data={**signal, "signal_payload": '{"ok": true}'})
    assert sent.status_code == 303
    async with console.pool.connection() as conn:
        cur = await conn.execute("SELECT name, payload FROM howdah.signals WHERE workflow_id = %s", (workflow_id,))
        assert await cur.fetchall() == [("approve", {"ok": True})]
    member = await console.browser("acme-member")
    forged = await member.post(
        f"/workflows/{workflow_id}/cancel", data={"csrf_token": await console.csrf("acme-member")}
    )
    assert forged.status_code == 403
    assert (await platform.post(f"/workflows/{workflow_id}/cancel", data={"csrf_token": csrf})).status_code == 303
    async with console.pool.connection() as conn:
        cur = await conn.execute("SELECT status, cancel_requested FROM howdah.workflows WHERE id = %s", (workflow_id,))
        status, requested = await cur.fetchone() or (None, None)
    assert status == "cancelled" or requested
    unknown = await platform.post("/workflows/no-such-workflow/cancel", data={"csrf_token": csrf})
    assert unknown.status_code == 404


async def test_settings_and_extensions_change_through_the_apis_update(console: Console) -> None:
    instance = await _create(console, "acme")
    await _sql(console, "UPDATE control.instances SET state = 'Up', has_active_work = false, "
               "actual_spec = desired_spec WHERE id = %s", (instance["id"],))  # fmt: skip
    member = await console.browser("acme-member")
    page = await member.get(f"/instances/{instance['id']}")
    assert '<label for="settings">Postgres settings</label>' in page.text and ">Apply</button>" in page.text
    csrf = csrf_of(page.text)
    url = f"/instances/{instance['id']}/configure"
    no_equals = await member.post(url, data={"csrf_token": csrf, "settings": "work_mem"})
    assert no_equals.status_code == 422 and "line 1: write a setting as name = value" in no_equals.text
    unknown = await member.post(url, data={"csrf_token": csrf, "settings": f"no_such_setting = {SCRIPT}"})
    assert unknown.status_code == 422 and "unknown Postgres setting" in unknown.text
    assert SCRIPT not in unknown.text and ESCAPED in unknown.text  # what was typed comes back escaped
    bad_value = await member.post(url, data={"csrf_token": csrf, "settings": "work_mem = lots"})
    assert bad_value.status_code == 422 and "work_mem" in _field_error(bad_value.text, "settings")
    both = await member.post(url, data={"csrf_token": csrf, "enabled": "pg_trgm", "disabled": "pg_trgm"})
    assert both.status_code == 422 and "pg_trgm" in _field_error(both.text, "extensions")
    unchanged = await member.post(url, data={"csrf_token": csrf, "settings": "", "enabled": "", "disabled": "",
                                             "replicas": "1"})  # fmt: skip
    assert unchanged.status_code == 422 and "nothing to change" in unchanged.text
    for replicas, words in (("two", "a whole number from 1 to 5"), ("9", "less than or equal to 5")):
        refused_replicas = await member.post(url, data={"csrf_token": csrf, "replicas": replicas})
        assert refused_replicas.status_code == 422 and words in _field_error(refused_replicas.text, "replicas")
    preview = {"csrf_token": csrf, "intent": "preview", "replicas": "1"}
    reload = await member.post(url, data={**preview, "settings": "work_mem = 64MB"})
    assert reload.status_code == 200 and "needs <strong>no restart</strong>" in reload.text
    assert "work_mem = 64MB</textarea>" in reload.text  # the form keeps what was typed
    restart = await member.post(url, data={**preview, "settings": "work_mem = 64MB\nmax_connections = 300"})
    shown = re.search(r'data-testid="preview">(.*?)</div>', restart.text, re.S)
    assert restart.status_code == 200 and shown and "<strong>restarts</strong>" in shown.group(1)
    assert "max_connections" in shown.group(1)
    bad_preview = await member.post(url, data={**preview, "settings": "work_mem = lots"})
    assert bad_preview.status_code == 422 and "work_mem" in _field_error(bad_preview.text, "settings")
    assert (await console.control.get_instance("acme", str(instance["id"])))["generation"] == instance["generation"]

    viewer = await console.browser("acme-viewer")
    refused = await viewer.post(url, data={"csrf_token": await console.csrf("acme-viewer"), "settings": ""})
    assert refused.status_code == 403
    applied = await member.post(url, data={"csrf_token": csrf, "settings": "work_mem = 64MB\nmax_connections = 300",
                                           "enabled": "pg_trgm", "replicas": "1"})  # fmt: skip
    assert applied.status_code == 303
    row = await console.control.get_instance("acme", str(instance["id"]))
    assert row["desired_spec"]["postgres_configs"] == {"work_mem": "64MB", "max_connections": "300"}
    assert row["desired_spec"]["extensions"] == [{"name": "pg_trgm", "enabled": True, "version": None}]
    assert row["state"] == "Restarting"  # max_connections needs a restart: the API's decision
    shown = await member.get(f"/instances/{instance['id']}")
    assert "max_connections = 300\nwork_mem = 64MB</textarea>" in shown.text


async def test_a_queue_is_peeked_at_and_dead_letters_replayed_or_purged(console: Console) -> None:
    source, dlq = unique("src").replace("-", "_"), unique("dlq").replace("-", "_")
    async with console.pool.connection() as conn:
        queue = AsyncQueue(conn)
        await queue.create(source)
        await queue.create(dlq)
        poisoned = await queue.send(source, {"note": SCRIPT}, headers={"tenant": "acme"})
        plain = await queue.send(dlq, {"not": "dead-lettered"})
        await conn.execute("SELECT pgmq.howdah_dead_letter(%s, %s, %s, 'read too often')", (source, [poisoned], dlq))
        dead = [m for m in await queue.peek(dlq, 0, 10) if m.msg_id != plain]
    assert len(dead) == 1
    platform = await console.browser("platform")
    listed = await platform.get("/queues")
    assert f'<a href="/queues/{dlq}">{dlq}</a>' in listed.text
    shown = await platform.get(f"/queues/{dlq}")
    assert shown.status_code == 200 and SCRIPT not in shown.text
    assert r'{"note": "\u003cscript\u003ealert(1)\u003c/script\u003e"}' in shown.text  # JSON, made inert
    assert shown.text.count(">Replay</button>") == 1  # only the dead-lettered one
    async with console.pool.connection() as conn:
        assert {m.read_ct for m in await AsyncQueue(conn).peek(dlq, 0, 10)} == {0}  # peeking read nothing
    csrf = csrf_of(shown.text)
    not_dead = await platform.post(f"/queues/{dlq}/replay", data={"csrf_token": csrf, "msg_id": str(plain)})
    assert not_dead.status_code == 409 and "was not dead-lettered" in not_dead.text
    member = await console.browser("acme-member")
    forged = await member.post(f"/queues/{dlq}/replay", data={"csrf_token": await console.csrf("acme-member"),
                                                              "msg_id": str(dead[0].msg_id)})  # fmt: skip
    assert forged.status_code == 403
    replayed = await platform.post(f"/queues/{dlq}/replay", data={"csrf_token": csrf, "msg_id": str(dead[0].msg_id)})
    assert replayed.status_code == 303
    async with console.pool.connection() as conn:
        back = await AsyncQueue(conn).peek(source, 0, 10)
        left = await AsyncQueue(conn).peek(dlq, 0, 10)
    assert [(m.message, m.headers) for m in back] == [({"note": SCRIPT}, {"tenant": "acme"})]
    assert [m.msg_id for m in left] == [plain]
    again = await platform.post(f"/queues/{dlq}/replay", data={"csrf_token": csrf, "msg_id": str(dead[0].msg_id)})
    assert again.status_code == 404  # replayed once only
    wrong = await platform.post(f"/queues/{dlq}/purge", data={"csrf_token": csrf, "confirm_name": "nope"})
    assert wrong.status_code == 422
    purged = await platform.post(f"/queues/{dlq}/purge", data={"csrf_token": csrf, "confirm_name": dlq})
    assert purged.status_code == 303
    async with console.pool.connection() as conn:
        assert await AsyncQueue(conn).peek(dlq, 0, 10) == []
    assert (await platform.get("/queues/no_such_queue")).status_code == 404


async def test_back_up_and_restore_into_a_new_instance(console: Console) -> None:
    instance = await _create(console, "acme")
    await _sql(console, "UPDATE control.instances SET state = 'Up', has_active_work = false WHERE id = %s",
               (instance["id"],))  # fmt: skip
    member = await console.browser("acme-member")
    csrf = await console.csrf("acme-member")
    taken = await member.post(f"/instances/{instance['id']}/backup", data={"csrf_token": csrf})
    assert taken.status_code == 303
    page = await member.get(f"/instances/{instance['id']}")
    assert "<td>pending</td>" in page.text and ">Restore</button>" not in page.text  # nothing to restore yet
    await _sql(console, "UPDATE control.backups SET status = 'completed', completed_at = now(), location = '/b', "
               "size_bytes = 1 WHERE instance_id = %s", (instance["id"],))  # fmt: skip
    page = await member.get(f"/instances/{instance['id']}")
    assert ">Restore</button>" in page.text
    backup_id = re.search(r'<option value="([0-9a-f-]{36})">', page.text)
    assert backup_id
    url = f"/instances/{instance['id']}/restore"
    bad = await member.post(url, data={"csrf_token": csrf, "backup_id": backup_id.group(1), "restore_name": "Bad!"})
    assert bad.status_code == 422 and _field_error(bad.text, "restore")
    theirs = await _create(console, "other")
    async with console.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO control.backups (org_id, instance_id, data_plane, spec, status) "
            "VALUES ('other', %s, 'local', %s, 'completed') RETURNING id::text",
            (theirs["id"], Jsonb(theirs["desired_spec"])),
        )
        their_backup = (await cur.fetchone() or [""])[0]
    stolen = await member.post(url, data={"csrf_token": csrf, "backup_id": their_backup, "restore_name": unique()})
    assert stolen.status_code == 404
    name = unique("copy")
    restored = await member.post(url, data={"csrf_token": csrf, "backup_id": backup_id.group(1), "restore_name": name})
    assert restored.status_code == 303
    rows, _ = await console.control.list_instances("acme", None, 500, 0)
    assert any(r["name"] == name and r["state"] == "Submitted" for r in rows)


async def test_an_instances_latest_change_links_the_workflow_carrying_it_out(console: Console) -> None:
    instance = await _create(console, "default")
    event_id = instance["pending_event"]["event_id"]
    platform = (await (await console.browser("platform")).get(f"/instances/{instance['id']}")).text
    assert "Create (generation 1)" in platform
    assert f'<a href="/workflows/event-{event_id}">event-{event_id}</a>' in platform
    mine = await _create(console, "acme")
    member = (await (await console.browser("acme-member")).get(f"/instances/{mine['id']}")).text
    assert "Create (generation 1)" in member and "/workflows/" not in member  # workflows are the platform's


async def test_an_instances_page_refreshes_its_state_and_backups_in_one_request(console: Console) -> None:
    instance = await _create(console, "acme")
    viewer = await console.browser("acme-viewer")
    page = (await viewer.get(f"/instances/{instance['id']}")).text
    assert f'data-poll="/instances/{instance["id"]}/live"' in page and 'id="backups"' in page
    await _sql(console, "UPDATE control.instances SET state = 'Up', has_active_work = false, last_error = %s "
               "WHERE id = %s", (SCRIPT, instance["id"]))  # fmt: skip
    live = await viewer.get(f"/instances/{instance['id']}/live")
    assert live.status_code == 200 and "<html" not in live.text
    assert 'data-part="instance-live"' in live.text and 'data-part="backups"' in live.text
    assert ">Up</span>" in live.text and ESCAPED in live.text and SCRIPT not in live.text
    theirs = await _create(console, "other")
    assert (await viewer.get(f"/instances/{theirs['id']}/live")).status_code == 404


async def _recorded(console: Console, instance_id: str) -> list[tuple[Any, ...]]:
    async with console.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT state, generation, change, event_id, error FROM control.instance_events "
            "WHERE instance_id = %s ORDER BY id", (instance_id,),
        )  # fmt: skip
        return await cur.fetchall()


async def test_an_instances_events_record_each_state_and_the_change_behind_it(console: Console) -> None:
    await console.control.create_token("default", "viewer")  # the org exists
    instance = await _create(console, "default")
    created = instance["pending_event"]["event_id"]
    # the insert and the event sent are one transaction: one record, with the event
    assert await _recorded(console, instance["id"]) == [("Submitted", 1, "Create", created, None)]
    await _sql(console, "UPDATE control.instances SET status = '{\"size\": 1}', updated_at = now() WHERE id = %s",
               (instance["id"],))  # fmt: skip
    assert len(await _recorded(console, instance["id"])) == 1  # a status refresh is no event
    await _sql(console, "UPDATE control.instances SET state = 'Up', has_active_work = false WHERE id = %s",
               (instance["id"],))  # fmt: skip
    changed = await console.control.change("default", str(instance["id"]), "Restart")
    restarted = changed["pending_event"]["event_id"]
    await _sql(console, "UPDATE control.instances SET state = 'Error', last_error = %s WHERE id = %s",
               (SCRIPT, instance["id"]))  # fmt: skip
    assert await _recorded(console, instance["id"]) == [
        ("Submitted", 1, "Create", created, None),
        ("Up", 1, "Create", created, None),
        ("Restarting", 2, "Restart", restarted, None),  # the state and the event sent: one record
        ("Error", 2, "Restart", restarted, SCRIPT),
    ]
    platform = (await (await console.browser("platform")).get(f"/instances/{instance['id']}")).text
    events = platform[platform.index('id="events"') : platform.index('id="backups-h"')]
    assert [s for s in re.findall(r"<tr><td>[^<]*</td><td>(\w+)</td>", events)] == [
        "Error", "Restarting", "Up", "Submitted"
    ]  # fmt: skip
    assert f'href="/workflows/event-{restarted}">workflow</a>' in events
    assert SCRIPT not in platform and ESCAPED in events


async def test_malformed_ids_are_a_not_found_page_never_an_error(console: Console) -> None:
    member = await console.browser("acme-member")
    csrf = await console.csrf("acme-member")
    for path in ("/instances/not-a-uuid", "/instances/not-a-uuid/live", "/instances/%00"):
        answer = await member.get(path)
        assert answer.status_code in (404, 422), (path, answer.status_code)
        assert "text/html" in answer.headers["content-type"] and "Traceback" not in answer.text
    for action in ("restart", "delete", "backup", "configure", "restore"):
        answer = await member.post(f"/instances/not-a-uuid/{action}", data={"csrf_token": csrf})
        assert answer.status_code in (404, 422), (action, answer.status_code)
    platform = await console.browser("platform")
    for path in ("/workflows?status=bogus", "/workflows?status=failed&before_at=yesterday", "/queues/x?after=-1"):
        answer = await platform.get(path)
        assert answer.status_code == 422 and "text/html" in answer.headers["content-type"], path
    admin = await console.browser("acme-admin")
    revoked = await admin.post("/tokens/not-a-uuid/revoke", data={"csrf_token": await console.csrf("acme-admin")})
    assert revoked.status_code == 404


async def test_the_allow_list_and_the_pooler_follow_the_apis_rules(console: Console) -> None:
    instance = await _create(console, "acme")
    await _sql(console, "UPDATE control.instances SET state = 'Up', has_active_work = false, "
               "actual_spec = desired_spec WHERE id = %s", (instance["id"],))  # fmt: skip
    member = await console.browser("acme-member")
    page = await member.get(f"/instances/{instance['id']}")
    for label in ("IP allow list", "Pool mode"):
        assert f">{label}</label>" in page.text
    assert "> Connection pooler</label>" in page.text
    form = {"csrf_token": csrf_of(page.text), "replicas": "1"}
    url = f"/instances/{instance['id']}/configure"
    not_cidr = await member.post(url, data={**form, "allow": "not-a-cidr"})
    assert not_cidr.status_code == 422 and "not-a-cidr" in _field_error(not_cidr.text, "ip_allow_list")
    both = await member.post(url, data={**form, "allow": "10.0.0.0/8", "pooler": "on", "pool_mode": "session"})
    assert both.status_code == 422 and "cannot be combined" in _field_error(both.text, "ip_allow_list")
    allowed = await member.post(url, data={**form, "allow": "10.0.0.0/8, 2001:db8::/32"})
    assert allowed.status_code == 303
    row = await console.control.get_instance("acme", str(instance["id"]))
    assert row["desired_spec"]["ip_allow_list"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert row["desired_spec"]["connection_pooler"]["enabled"] is False
    shown = await member.get(f"/instances/{instance['id']}")
    assert 'value="10.0.0.0/8, 2001:db8::/32"' in shown.text


async def test_the_poolers_sizes_follow_the_apis_rules(console: Console) -> None:
    instance = await _create(console, "acme")
    await _sql(console, "UPDATE control.instances SET state = 'Up', has_active_work = false, "
               "actual_spec = desired_spec WHERE id = %s", (instance["id"],))  # fmt: skip
    member = await console.browser("acme-member")
    page = await member.get(f"/instances/{instance['id']}")
    assert '<label for="pool_clients">Max client connections</label>' in page.text
    assert '<label for="pool_size">Default pool size</label>' in page.text
    assert 'name="pool_clients" type="number" min="10" max="100000" value="1000"' in page.text
    assert 'name="pool_size" type="number" min="1" max="1000" value="20"' in page.text
    form = {"csrf_token": csrf_of(page.text), "replicas": "1", "pooler": "on", "pool_mode": "transaction"}
    url = f"/instances/{instance['id']}/configure"
    too_big = await member.post(url, data={**form, "pool_clients": "1000", "pool_size": "5000"})
    assert too_big.status_code == 422
    assert "default_pool_size" in _field_error(too_big.text, "connection_pooler")
    assert 'value="5000"' in too_big.text  # what was typed stays in the form
    not_number = await member.post(url, data={**form, "pool_clients": "lots", "pool_size": "20"})
    assert not_number.status_code == 422
    assert "max client connections: a whole number" in _field_error(not_number.text, "connection_pooler")
    row = await console.control.get_instance("acme", str(instance["id"]))
    assert row["desired_spec"]["connection_pooler"]["enabled"] is False  # refused forms changed nothing
    sized = await member.post(url, data={**form, "pool_clients": "200", "pool_size": "50"})
    assert sized.status_code == 303
    row = await console.control.get_instance("acme", str(instance["id"]))
    pooler = row["desired_spec"]["connection_pooler"]
    assert (pooler["enabled"], pooler["max_client_connections"], pooler["default_pool_size"]) == (True, 200, 50)
