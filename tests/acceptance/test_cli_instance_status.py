"""``howdah instance status`` against a real `howdah api` and Postgres: the record with -o json|yaml, the view at
80 columns, a prefix of the id, and 3 for an instance that is not there."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.acceptance.conftest import Cli, FakeDataPlane

pytestmark = pytest.mark.slow


def test_instance_status_for_scripts_and_for_people(cli: Cli, plane: FakeDataPlane) -> None:
    created = json.loads(cli("instance", "create", "statusy", "--config", "work_mem=64MB", "--wait", "-o",
                             "json").stdout)  # fmt: skip
    record = json.loads(cli("instance", "status", "statusy", "-o", "json").stdout)
    assert record["id"] == created["id"] and record["state"] == "Up" and record["work_in_flight"] is False
    assert record["settings_changed"]["work_mem"]["value"] == "64MB"
    assert record["settings_changed"]["work_mem"]["stack_default"] != "64MB"
    assert record["last_backup"] is None and record["backups"] == {"completed": 0, "failed": 0, "pending": 0}
    assert yaml.safe_load(cli("instance", "status", created["id"][:8], "-o", "yaml").stdout) == record

    narrow = Cli({**cli.env, "COLUMNS": "80"}, cli.url, cli.platform)
    shown = narrow("instance", "status", "statusy").stdout
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 80, shown
    assert created["id"] in shown and "work_mem" in shown and "Settings changed" in shown

    missing = cli("instance", "status", "nothing-here", check=False)
    assert missing.returncode == 3 and "nothing-here" in missing.stderr


def test_a_setting_larger_than_memory_is_accepted_with_a_warning(cli: Cli, plane: FakeDataPlane) -> None:
    cli("instance", "create", "roomy", "--memory", "2Gi", "--wait")
    updated = cli("instance", "update", "roomy", "--config", "work_mem=64GB", "-o", "json")
    assert "warning: work_mem = 64GB is more than the instance's memory (2Gi)" in updated.stderr
    record = json.loads(updated.stdout)  # stdout is still only the record
    assert record["desired_spec"]["postgres_configs"] == {"work_mem": "64GB"} and len(record["warnings"]) == 1
