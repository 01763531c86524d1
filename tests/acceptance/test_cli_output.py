"""The CLI's output for scripts and for people, against a real `howdah api` and Postgres: `-o json|yaml` with the
API's fields, ids shortened in tables and accepted as prefixes, 80-column tables, exit codes, tokens and data
planes through the API."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from howdah.cli._refs import short_ids
from tests.acceptance.conftest import Cli, FakeDataPlane

pytestmark = pytest.mark.slow

GONE = ["abcd0001-0000-4000-8000-000000000001", "abcd0002-0000-4000-8000-000000000002"]
TAKEN = ["bbbb0001-0000-4000-8000-000000000001", "bbbb0002-0000-4000-8000-000000000002"]


def _json(cli: Cli, *args: str) -> Any:
    return json.loads(cli(*args).stdout)


def _narrow(cli: Cli) -> Cli:
    return Cli({**cli.env, "COLUMNS": "80"}, cli.url, cli.platform)


def _fits_with_whole_ids(text: str, ids: list[str]) -> None:
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, text
    for full, short in short_ids(ids).items():
        assert any(line.startswith(short + " ") for line in lines), f"{short} (of {full}) is cut or missing:\n{text}"


def test_instance_list_for_scripts_and_for_people(cli: Cli, plane: FakeDataPlane) -> None:
    for name in ("curl1", "shop", "northern-sales-analytics-warehouse-2026"):
        cli("instance", "create", name, "--wait")
    cli("instance", "delete", "curl1", "--wait")
    again = _json(cli, "instance", "create", "curl1", "--wait", "-o", "json")  # the record on stdout
    assert again["name"] == "curl1" and again["state"] == "Up"

    listed = _json(cli, "instance", "list", "-o", "json")
    assert sorted(i["name"] for i in listed).count("curl1") == 1  # the deleted one is hidden
    assert {"id", "name", "state", "desired_spec", "created_at"} <= set(listed[0])  # the API's field names
    assert _json(cli, "instance", "list", "--json") == listed
    assert yaml.safe_load(cli("instance", "list", "-o", "yaml").stdout) == listed
    everything = _json(cli, "instance", "list", "--all", "-o", "json")
    assert sorted(i["state"] for i in everything if i["name"] == "curl1") == ["Deleted", "Up"]

    table = _narrow(cli)("instance", "list").stdout
    _fits_with_whole_ids(table, [i["id"] for i in listed])
    assert table.count("curl1") == 1 and "Deleted" not in table
    every = _narrow(cli)("instance", "list", "--all").stdout
    _fits_with_whole_ids(every, [i["id"] for i in everything])
    assert every.count("curl1") == 2


def _bury(db_url: str, names: list[str]) -> None:
    """Deleted instances and backups with ids chosen to share their first characters."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for gone, name in zip(GONE, names, strict=True):
            conn.execute(
                "INSERT INTO control.instances (id, org_id, name, data_plane, state, desired_spec) "
                "SELECT %s::uuid, org_id, %s, data_plane, 'Deleted', desired_spec FROM control.instances "
                "WHERE org_id = 'acme' AND name = 'depot'", (gone, name),
            )  # fmt: skip
        for taken, status, size, error in ((TAKEN[0], "completed", 1288490189, None),
                                           (TAKEN[1], "failed", None, "pg_basebackup: could not connect to the "
                                            "server: the instance was stopped while the backup ran")):  # fmt: skip
            conn.execute(
                "INSERT INTO control.backups (id, org_id, instance_id, data_plane, spec, status, size_bytes, error) "
                "SELECT %s::uuid, org_id, id, data_plane, desired_spec, %s, %s, %s FROM control.instances "
                "WHERE org_id = 'acme' AND name = 'depot' AND state <> 'Deleted'", (taken, status, size, error),
            )  # fmt: skip


def test_ids_are_taken_by_prefix_and_an_ambiguous_prefix_is_refused(
    cli: Cli, plane: FakeDataPlane, db_url: str
) -> None:
    shop = _json(cli, "instance", "create", "depot", "--wait", "-o", "json")
    _bury(db_url, ["old-a", "old-b"])

    by_prefix = _json(cli, "instance", "get", shop["id"][:8], "-o", "json")
    assert by_prefix["id"] == shop["id"]
    assert _json(cli, "instance", "get", "abcd0002", "-o", "json")["name"] == "old-b"  # a deleted one, by id
    ambiguous = cli("instance", "get", "abcd", check=False)
    assert ambiguous.returncode == 2 and "Traceback" not in ambiguous.stderr
    assert f"{GONE[0]} (old-a)" in ambiguous.stderr and f"{GONE[1]} (old-b)" in ambiguous.stderr
    missing = cli("instance", "get", "ffff0000", check=False)
    assert missing.returncode == 3 and "no instance named 'ffff0000'" in missing.stderr
    stopped = _json(cli, "instance", "stop", shop["id"][:10], "--wait", "-o", "json")  # acting by prefix
    assert stopped["id"] == shop["id"] and stopped["state"] == "Stopped"

    backups = _narrow(cli)("instance", "backups", shop["id"][:8]).stdout
    table = backups[backups.index("ID ") :]
    _fits_with_whole_ids(table, TAKEN)
    assert "1.2 GiB" in table and "1288490189" not in table
    shown = _json(cli, "instance", "backups", "depot", "-o", "json")
    assert {b["id"]: b["size_bytes"] for b in shown["backups"]} == {TAKEN[0]: 1288490189, TAKEN[1]: None}
    refused = cli("instance", "restore", "bbbb", "copy", check=False)
    assert refused.returncode == 2 and TAKEN[0] in refused.stderr and TAKEN[1] in refused.stderr
    unknown = cli("instance", "restore", "bbbb9", "copy", check=False)
    assert unknown.returncode == 3 and "no backup named 'bbbb9'" in unknown.stderr

    ambiguous_backup = cli("instance", "delete-backup", "bbbb", check=False)
    assert ambiguous_backup.returncode == 2 and TAKEN[0] in ambiguous_backup.stderr
    deleted = cli("instance", "delete-backup", "bbbb0002")  # the failed one, by prefix
    assert deleted.stdout == "" and f"backup {TAKEN[1]} deleted" in deleted.stderr
    kept = cli("instance", "delete-backup", "bbbb", check=False)  # now unique: depot's only completed backup
    assert kept.returncode == 4 and "only base backup of the last 7 days" in kept.stderr, kept.stderr
    assert [b["id"] for b in _json(cli, "instance", "backups", "depot", "-o", "json")["backups"]] == [TAKEN[0]]
    unverifiable = cli("instance", "verify-backup", "depot", check=False)  # its data plane reported no window
    assert unverifiable.returncode == 4 and "no backup to verify yet" in unverifiable.stderr, unverifiable.stderr


def test_tokens_through_the_api(cli: Cli) -> None:
    made = _json(cli, "token", "create", "--role", "viewer", "--name", "ci", "-o", "json")
    assert made["role"] == "viewer" and made["token"].startswith("hwd_")
    secret_only = cli("token", "create", "--role", "viewer", "--name", "once")
    assert secret_only.stdout.count("\n") == 1 and "shown once" in secret_only.stderr  # the secret alone on stdout

    listed = _json(cli, "token", "list", "-o", "json")
    mine = [t for t in listed if t["id"] == made["id"]]
    assert mine and mine[0]["name"] == "ci" and "token" not in mine[0] and mine[0]["created_at"]
    table = _narrow(cli)("token", "list").stdout
    _fits_with_whole_ids(table, [t["id"] for t in listed])
    audit = httpx.get(f"{cli.url}/api/v1/orgs/acme/audit", headers={"Authorization": f"Bearer {cli.platform}"})
    created = [a for a in audit.json() if a["token_id"] == made["id"]]
    assert created and created[0]["via"] != "database"  # made through the API, by the saved admin token

    viewer = {"Authorization": f"Bearer {made['token']}"}
    assert httpx.get(f"{cli.url}/api/v1/orgs/acme/instances", headers=viewer).status_code == 200
    as_viewer = Cli({**cli.env, "HOWDAH_TOKEN": made["token"]})
    assert as_viewer("token", "list", check=False).returncode == 1  # 403: tokens are the org admin's

    cli("token", "revoke", short_ids([t["id"] for t in listed])[made["id"]])
    assert made["id"] not in {t["id"] for t in _json(cli, "token", "list", "-o", "json")}
    assert httpx.get(f"{cli.url}/api/v1/orgs/acme/instances", headers=viewer).status_code == 401
    refused = as_viewer("instance", "list", check=False)
    assert refused.returncode == 1 and "401" in refused.stderr
    gone = cli("token", "revoke", str(uuid.uuid4()), check=False)
    assert gone.returncode == 3


def test_data_planes_through_the_api(cli: Cli) -> None:
    platform = Cli({**cli.env, "HOWDAH_TOKEN": cli.platform, "HOWDAH_ORG": "default"})
    planes = _json(platform, "dataplane", "list", "-o", "json")
    assert "local" in {p["name"] for p in planes} and {"draining", "last_seen_at"} <= set(planes[0])
    shown = yaml.safe_load(platform("dataplane", "show", "local", "-o", "yaml").stdout)
    assert shown["name"] == "local" and shown["draining"] is False
    assert "local" in platform("dataplane", "list").stdout
    assert platform("dataplane", "show", "nowhere", check=False).returncode == 3
    assert cli("dataplane", "list", check=False).returncode == 1  # an org admin is not the platform's
