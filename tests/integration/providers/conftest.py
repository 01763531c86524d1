"""Fixtures of the provider tests: a private data-plane home and a local provider in it (its instances deleted
after the test)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from howdah.providers.local import LocalProvider


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="howdah-local-", dir="/tmp"))
    os.chmod(path, 0o755)  # the server OS user must traverse it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def provider(home: Path) -> Iterator[LocalProvider]:
    local = LocalProvider(home, durable=False)
    try:
        yield local
    finally:
        for instance_id in local.list_instances():
            local.delete(instance_id)
