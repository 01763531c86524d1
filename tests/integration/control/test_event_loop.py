"""The API never waits on the event loop for what start-up can read in a thread: Postgres's setting facts
(``postgres --describe-config``) and the sealing key.

Reading the facts takes a few milliseconds here, too little for a timing bound to tell apart from a busy
machine; these tests slow the binary down (a wrapper that sleeps first) so that a read on the event loop
blocks it unmistakably longer than :data:`~.conftest.SLOW_STEP_SECONDS`, and :func:`~.conftest.open_api`
fails the test if it does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from howdah.control import _metadata_cache, restart
from howdah.control.sealing import default_sealer

from .conftest import open_api

BASE = "/api/v1/orgs/acme/instances"
SLOW_RUN_SECONDS = 0.3  # each run of the slowed postgres binary


@pytest.fixture
def slow_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Setting facts not read yet, from a postgres binary that sleeps before each run."""
    script = tmp_path / "postgres"
    script.write_text(f'#!/bin/sh\nsleep {SLOW_RUN_SECONDS}\nexec "{restart._postgres_binary()}" "$@"\n')
    script.chmod(0o755)
    monkeypatch.setattr(restart, "_postgres_binary", lambda: str(script))
    _metadata_cache.cache_clear()
    yield
    _metadata_cache.cache_clear()  # read again from the real binary by whoever needs them next


async def test_requests_before_the_setting_facts_are_read_wait_without_blocking_the_loop(
    db_url: str, slow_postgres: None
) -> None:
    async with open_api(db_url) as api:
        # Start-up is still reading (four runs of the binary, over a second): these requests wait for it.
        created = await api.call("POST", BASE, json={"name": f"db-{uuid.uuid4().hex[:8]}", "stack": "oltp"})
        assert created.status_code == 202, created.text
        unknown = await api.call("POST", BASE, json={"name": "db-x", "postgres_configs": {"no_such_setting": "1"}})
        assert unknown.status_code == 422 and "no_such_setting" in unknown.json()["error"]["message"]
        invalid = await api.call("POST", BASE, json={"name": "db-y", "postgres_configs": {"work_mem": "lots"}})
        assert invalid.status_code == 422 and "work_mem" in invalid.json()["error"]["message"], invalid.text


async def test_the_sealing_key_is_created_at_start_up(db_url: str, tmp_path: Path) -> None:
    async with open_api(db_url, sealer=default_sealer(tmp_path)) as api:
        await api.app.state.warm_up
        assert (tmp_path / "secrets.key").is_file()
