"""``howdah up``'s live panel at 80 columns, compared with a golden file (``golden/cli/live_panel.txt``):
each instance's progress, the newest events, workflows and queues, from data alone. Regenerate after an
intended change with ``HOWDAH_UPDATE_GOLDEN=1 pytest tests/unit/test_cli_live_view.py`` and review the diff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from howdah.cli._live_view import live_data, live_view
from tests.unit.test_cli_status_view import UPDATE, render

GOLDEN = Path(__file__).parent / "golden" / "cli" / "live_panel.txt"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _at(**ago: float) -> str:
    return (NOW - timedelta(**ago)).isoformat()


RECORD: dict[str, Any] = {
    "counts": {"Up": 2, "Creating": 1, "Error": 1, "Stopped": 9},
    "instances": [
        {"org_id": "default", "name": "demo", "state": "Creating", "since": _at(seconds=12), "change": "Create",
         "error": None},
        {"org_id": "acme", "name": "northern-sales-analytics-warehouse-2026", "state": "Error",
         "since": _at(minutes=3), "change": None,
         "error": "could not start: port 5433 is taken\x1b[2J by another process, retrying in 30 s"},
        {"org_id": "default", "name": "shop", "state": "Up", "since": _at(hours=2), "change": None, "error": None},
        {"org_id": "default", "name": "old", "state": "Stopped", "since": None, "change": None, "error": None},
    ],
    "events": [
        {"at": _at(seconds=12), "org_id": "default", "name": "demo", "state": "Creating", "change": "Create",
         "error": None},
        {"at": _at(seconds=95), "org_id": "default", "name": "shop", "state": "Up", "change": "Restart", "error": None},
        {"at": _at(minutes=3), "org_id": "acme", "name": "northern-sales-analytics-warehouse-2026",
         "state": "Error", "change": None, "error": "could not start: port 5433 is taken"},
    ],
    "workflows": {"running": 2, "pending": 1},
    "queues": {"howdah_state": 3},
}  # fmt: skip


def test_the_panel_fits_80_columns_and_shows_progress_and_events() -> None:
    text = render(live_view(live_data(RECORD), NOW, "default"))
    if UPDATE:
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), f"differs from {GOLDEN.name}; if intended, regenerate (HOWDAH_UPDATE_GOLDEN=1)"
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "\x1b" not in text and "\\x1b[2J" in text  # a tenant's escape shown, never sent to the terminal
    assert "… and 9 more" in text  # 13 instances, 4 shown


def test_an_empty_platform() -> None:
    empty = {"counts": {}, "instances": [], "events": [], "workflows": {}, "queues": {}}
    text = render(live_view(live_data(empty), NOW, "default"))
    assert text.splitlines() == ["instances: 0", "workflows not finished: -",
                                 "queues holding messages (last minute's sample): -"]  # fmt: skip
