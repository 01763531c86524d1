"""An instance's Postgres log through the API: shipped by its own data plane only, read by any role of its org,
another org's answer 404, and read on with ``after`` and ``since``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from howdah.control.logs import KEEP_LINES, append_logs, log_offsets

from .conftest import Api
from .test_api import BASE, create_up


async def test_the_org_reads_what_its_data_plane_shipped(api: Api) -> None:
    body = await create_up(api, data_plane="local")
    iid = body["id"]
    stored = await append_logs(api.control, "local", iid, [("primary", "LOG:  ready", 20),
                                                           ("replica-1", "LOG:  streaming", 31),
                                                           ("primary", "ERROR:  oops", 45)])  # fmt: skip
    assert stored == 3
    assert await log_offsets(api.control, "local", iid) == {"primary": 45, "replica-1": 31}
    for who in ("acme-viewer", "acme-member", "acme-admin", "platform"):
        read = await api.call("GET", f"{BASE}/{iid}/logs", who=who)
        assert read.status_code == 200, (who, read.text)
        assert [(line["server"], line["line"]) for line in read.json()["lines"]] == [
            ("primary", "LOG:  ready"),
            ("replica-1", "LOG:  streaming"),
            ("primary", "ERROR:  oops"),
        ]
    first = (await api.call("GET", f"{BASE}/{iid}/logs", params={"limit": 1})).json()
    assert [line["line"] for line in first["lines"]] == ["LOG:  ready"]
    rest = (await api.call("GET", f"{BASE}/{iid}/logs", params={"after": first["next_after"]})).json()
    assert [line["line"] for line in rest["lines"]] == ["LOG:  streaming", "ERROR:  oops"]
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await api.call("GET", f"{BASE}/{iid}/logs", params={"since": ahead})).json()["lines"] == []
    naive = await api.call("GET", f"{BASE}/{iid}/logs", params={"since": "2026-12-05T10:00:00"})
    assert naive.status_code == 422


async def test_another_org_and_another_data_plane_are_kept_out(api: Api) -> None:
    body = await create_up(api, data_plane="local")
    iid = body["id"]
    await append_logs(api.control, "local", iid, [("primary", "LOG:  secret of acme", 30)])
    # another org: 404, as if the instance did not exist (never 403)
    other = await api.call("GET", f"{BASE.replace('acme', 'other')}/{iid}/logs", who="other-admin")
    assert other.status_code == 404
    crossed = await api.call("GET", f"{BASE}/{iid}/logs", who="other-admin")
    assert crossed.status_code == 404
    # another data plane's conductor cannot write into this instance's log, nor learn where it stands
    await api.control.register_data_plane("plane-logs", "another data plane")
    assert await append_logs(api.control, "plane-logs", iid, [("primary", "LOG:  forged", 99)]) == 0
    assert await log_offsets(api.control, "plane-logs", iid) == {}
    lines = (await api.call("GET", f"{BASE}/{iid}/logs")).json()["lines"]
    assert [line["line"] for line in lines] == ["LOG:  secret of acme"]


async def test_only_the_newest_lines_are_kept(api: Api) -> None:
    body = await create_up(api, data_plane="local")
    iid = body["id"]
    many = [("primary", f"LOG:  line {n}", n + 1) for n in range(KEEP_LINES + 5)]
    assert await append_logs(api.control, "local", iid, many) == KEEP_LINES + 5
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT min(line), count(*) FROM control.instance_logs WHERE instance_id = %s "
                                 "AND line = 'LOG:  line 5'", (iid,))  # fmt: skip
        assert (await cur.fetchone()) == ("LOG:  line 5", 1)  # the oldest kept
        cur = await conn.execute("SELECT count(*) FROM control.instance_logs WHERE instance_id = %s", (iid,))
        assert (await cur.fetchone()) == (KEEP_LINES,)
