"""``howdah instance status`` at 80 columns, compared with a golden file (``golden/cli/instance_status.txt``); the
record behind it (``-o json``) says the same facts. Regenerate after an intended change with
``HOWDAH_UPDATE_GOLDEN=1 pytest tests/unit/test_cli_status_view.py`` and review the diff."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType

from howdah.cli._status_view import status_record, status_view

GOLDEN = Path(__file__).parent / "golden" / "cli"
UPDATE = os.environ.get("HOWDAH_UPDATE_GOLDEN") == "1"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
INSTANCE_ID = "0f3a1c2e-0001-4aaa-8bbb-000000000001"


def _at(**ago: float) -> str:
    return (NOW - timedelta(**ago)).isoformat()


ITEM: dict[str, Any] = {
    "id": INSTANCE_ID, "org_id": "acme", "name": "shop", "data_plane": "local", "state": "Up",
    "has_active_work": False, "generation": 4, "last_error": None, "updated_at": _at(minutes=7),
    "desired_spec": {"stack": "oltp", "cpu": "2", "memory": "4Gi", "storage": "20Gi", "replicas": 2,
                     "postgres_configs": {"work_mem": "64MB", "log_min_duration_statement": "250ms"},
                     "extensions": [{"name": "citext", "enabled": True},
                                    {"name": "pg_stat_statements", "enabled": False}]},
    "status": {"running": True, "accepting_connections": True, "server_version": "18.1", "port": 20001,
               "postmaster_start_time": _at(hours=2), "pending_restart": True, "size_bytes": 1288490189,
               "replicas": [{"name": "replica-1", "host": "127.0.0.1", "port": 20002, "running": True,
                             "state": "streaming", "lag_bytes": 4096, "replay_lag_seconds": 0.25}],
               "archiving": True, "last_archived_at": _at(seconds=40), "last_archive_error": None,
               "recovery_window": {"earliest": "2026-12-06T09:00:00+00:00", "latest": "2026-12-06T11:59:20+00:00",
                                   "earliest_lsn": "0/3000028", "latest_lsn": "0/5000060"}},
}  # fmt: skip
BACKUPS = [
    {"id": "5b1e0c44-0001-4aaa-8bbb-000000000001", "instance_id": INSTANCE_ID, "status": "completed",
     "size_bytes": 31457280, "error": None, "created_at": _at(hours=3)},
    {"id": "5b1e0c44-0002-4aaa-8bbb-000000000002", "instance_id": INSTANCE_ID, "status": "completed",
     "size_bytes": 33554432, "error": None, "created_at": _at(minutes=42)},
    {"id": "9c7f2d10-0003-4aaa-8bbb-000000000003", "instance_id": INSTANCE_ID, "status": "failed",
     "size_bytes": None, "error": "the instance is stopped", "created_at": _at(days=2)},
]  # fmt: skip


def render(view: RenderableType) -> str:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None, force_terminal=False, legacy_windows=False).print(view)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def test_status_fits_80_columns_with_the_whole_instance_id() -> None:
    record = status_record(ITEM, BACKUPS)
    text = render(status_view(record, NOW, [b["id"] for b in BACKUPS]))
    path = GOLDEN / "instance_status.txt"
    if UPDATE:
        path.write_text(text)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert INSTANCE_ID in text  # whole: it is copied
    assert "5b1e0c44-0002" in text  # the newest completed backup, as a prefix `restore` takes
    assert path.exists(), f"{path.name} is missing; run with HOWDAH_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{path.name} differs; if intended, regenerate with HOWDAH_UPDATE_GOLDEN=1"


def test_the_record_says_what_the_view_shows() -> None:
    record = json.loads(json.dumps(status_record(ITEM, BACKUPS)))
    assert record["state"] == "Up" and record["pending_restart"] is True
    assert record["replicas"][0]["lag_bytes"] == 4096
    changed = record["settings_changed"]
    assert changed["work_mem"]["value"] == "64MB" and changed["work_mem"]["stack_default"] not in (None, "64MB")
    assert changed["log_min_duration_statement"]["value"] == "250ms"
    assert record["extensions"]["enabled"] == ["citext"] and record["extensions"]["disabled"] == ["pg_stat_statements"]
    assert record["last_backup"]["id"] == BACKUPS[1]["id"]
    assert record["backups"] == {"completed": 2, "failed": 1, "pending": 0}
    assert record["disk"] == {"used_bytes": 1288490189, "storage": "20Gi"}
    assert record["recovery_window"]["latest_lsn"] == "0/5000060"


def test_an_instance_in_error_says_why_and_what_is_unknown() -> None:
    item = {**ITEM, "state": "Error", "last_error": "setting 'shared_buffers': out of memory", "status": {}}
    record = status_record(item, [])
    text = render(status_view(record, NOW))
    assert "setting 'shared_buffers': out of memory" in text
    assert record["last_backup"] is None and "none yet" in text
    assert record["primary"]["running"] is None
