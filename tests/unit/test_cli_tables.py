"""The CLI's tables at 80 columns, compared with golden files (``golden/cli/``): ids are never cut, whatever else
must give way. After an intended change, regenerate with ``HOWDAH_UPDATE_GOLDEN=1 pytest
tests/unit/test_cli_tables.py`` and review the diff."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from howdah.cli._refs import short_ids
from howdah.cli._tables import backups_table, instances_table

GOLDEN = Path(__file__).parent / "golden" / "cli"
UPDATE = os.environ.get("HOWDAH_UPDATE_GOLDEN") == "1"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _instance(n: int, name: str, state: str, age: timedelta, **spec: Any) -> dict[str, Any]:
    return {
        "id": f"0f3a1c2e-{n:04d}-4aaa-8bbb-{n:012d}" if n < 3 else f"{n:08x}-aaaa-4aaa-8bbb-000000000000",
        "name": name, "state": state, "data_plane": "local", "created_at": (NOW - age).isoformat(),
        "desired_spec": {"stack": "standard", "cpu": "1", "memory": "1Gi", "storage": "10Gi", **spec},
    }  # fmt: skip


INSTANCES = [
    _instance(1, "curl1", "Up", timedelta(minutes=3)),
    _instance(2, "northern-sales-analytics-warehouse-2026", "Updating",
              timedelta(hours=5), stack="olap", cpu="16", memory="64Gi", storage="2Ti"),
    _instance(0xBEEF, "shop", "Stopped", timedelta(days=3), stack="oltp"),
]  # fmt: skip
BACKUPS = [
    {"id": "5b1e0c44-0001-4aaa-8bbb-000000000001", "instance_id": INSTANCES[0]["id"], "status": "completed",
     "size_bytes": 1288490189, "error": None, "created_at": (NOW - timedelta(minutes=42)).isoformat()},
    {"id": "5b1e0c44-0002-4aaa-8bbb-000000000002", "instance_id": INSTANCES[0]["id"], "status": "failed",
     "size_bytes": None, "error": "pg_basebackup: could not connect to the server: the instance is stopped",
     "created_at": (NOW - timedelta(days=2)).isoformat()},
    {"id": "9c7f2d10-0003-4aaa-8bbb-000000000003", "instance_id": INSTANCES[0]["id"], "status": "pending",
     "size_bytes": 512, "error": None, "created_at": (NOW - timedelta(seconds=5)).isoformat()},
]  # fmt: skip


def render(table: Table) -> str:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None, force_terminal=False, legacy_windows=False).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


@pytest.mark.parametrize(
    ("golden", "table", "ids"),
    [("instance_list", instances_table(INSTANCES, NOW), [i["id"] for i in INSTANCES]),
     ("instance_backups", backups_table(BACKUPS, NOW), [b["id"] for b in BACKUPS])],
)  # fmt: skip
def test_tables_fit_80_columns_with_whole_short_ids(golden: str, table: Table, ids: list[str]) -> None:
    text = render(table)
    path = GOLDEN / f"{golden}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert max(len(line) for line in text.splitlines()) <= 80
    lines = text.splitlines()
    for full, short in short_ids(ids).items():
        assert len(short) >= 8
        assert any(line.startswith(short + " ") for line in lines), f"{short} (of {full}) is cut or missing"
    assert path.exists(), f"{path.name} is missing; run with HOWDAH_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{path.name} differs; if intended, regenerate with HOWDAH_UPDATE_GOLDEN=1"
