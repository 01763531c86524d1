"""Workers and workflows from the command line: `howdah worker`, `howdah workflow …`, SQL starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from howdah.cli import app
from tests.waiting import wait_until

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def scalar(db_url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


@pytest.fixture
def worker(db_url: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "howdah.cli", "worker", "--app", "examples.hello:app", "--concurrency", "4",
         "--database-url", db_url],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()  # printed once its signal handlers are in place and it is registered
    assert "started" in first, first + proc.stdout.read()
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def test_sql_start_worker_runs_cli_shows(db_url: str, worker: subprocess.Popen[str]) -> None:
    # Started from SQL inside a transaction that rolls back: nothing happens.
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT howdah.start_workflow('greet', '{\"name\": \"ghost\", \"pause\": 0}', 'wf-ghost')")
        conn.rollback()
    # Committed: the worker runs it.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT howdah.start_workflow('greet', '{\"name\": \"ada\", \"pause\": 0}', 'wf-ada')")
    wait_until(
        lambda: scalar(db_url, "SELECT status FROM howdah.workflows WHERE id = 'wf-ada'") == "succeeded",
        what="wf-ada to succeed",
    )
    assert scalar(db_url, "SELECT result FROM howdah.workflows WHERE id = 'wf-ada'") == "Hello, Ada!"
    assert scalar(db_url, "SELECT count(*) FROM howdah.workflows WHERE id = 'wf-ghost'") == 0

    listed = runner.invoke(app, ["workflow", "list", "--database-url", db_url])
    assert listed.exit_code == 0 and "wf-ada" in listed.output and "succeeded" in listed.output
    shown = runner.invoke(app, ["workflow", "show", "wf-ada", "--database-url", db_url], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "look up" in shown.output and "greet" in shown.output and "Hello, Ada!" in shown.output
    scripted = runner.invoke(app, ["workflow", "list", "-o", "json", "--database-url", db_url])
    ada = next(w for w in json.loads(scripted.stdout) if w["id"] == "wf-ada")
    assert ada["status"] == "succeeded" and ada["result"] == "Hello, Ada!" and ada["finished_at"]
    detailed = runner.invoke(app, ["workflow", "show", "wf-ada", "--json", "--database-url", db_url])
    record = json.loads(detailed.stdout)
    assert record["id"] == "wf-ada" and "look up" in [step["name"] for step in record["steps"]]
    as_yaml = runner.invoke(app, ["workflow", "show", "wf-ada", "-o", "yaml", "--database-url", db_url])
    assert yaml.safe_load(as_yaml.stdout) == record

    late = runner.invoke(app, ["workflow", "signal", "wf-ada", "reply", '"hi"', "--database-url", db_url])
    assert late.exit_code == 4 and "has finished" in late.output  # 410 gone: the wrong state for a signal
    unknown = runner.invoke(app, ["workflow", "show", "no-such-workflow", "--database-url", db_url])
    assert unknown.exit_code == 3 and "no workflow named 'no-such-workflow'" in unknown.output


def test_workflow_ids_are_taken_by_unique_prefix(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:  # no worker: they stay pending
        for workflow_id in ("batch-7f00-a", "batch-7f00-b", "nightly-report"):
            conn.execute("SELECT howdah.start_workflow('greet', '{\"name\": \"x\"}', %s)", (workflow_id,))
    shown = runner.invoke(app, ["workflow", "show", "nigh", "-o", "json", "--database-url", db_url])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["id"] == "nightly-report"
    ambiguous = runner.invoke(app, ["workflow", "cancel", "batch-7f", "--database-url", db_url])
    assert ambiguous.exit_code == 2 and "batch-7f00-a" in ambiguous.output and "batch-7f00-b" in ambiguous.output
    assert scalar(db_url, "SELECT count(*) FROM howdah.workflows WHERE status = 'cancelled'") == 0
    cancelled = runner.invoke(app, ["workflow", "cancel", "batch-7f00-b", "--database-url", db_url])
    assert cancelled.exit_code == 0 and "cancelled 1" in cancelled.output
    assert scalar(db_url, "SELECT status FROM howdah.workflows WHERE id = 'batch-7f00-b'") == "cancelled"
    too_short = runner.invoke(app, ["workflow", "show", "nig", "--database-url", db_url])
    assert too_short.exit_code == 3 and "at least 4 characters" in too_short.output


def test_signal_and_cancel_from_cli(db_url: str, worker: subprocess.Popen[str]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('SELECT howdah.start_workflow(\'greet\', \'{"name": "bo", "pause": 0, "wait": 60}\', \'wf-bo\')')
        conn.execute("SELECT howdah.start_workflow('greet', '{\"name\": \"cy\", \"pause\": 60}', 'wf-cy')")
    wait_until(
        lambda: scalar(db_url, "SELECT status FROM howdah.workflows WHERE id = 'wf-bo'") == "waiting",
        what="wf-bo to wait for its signal",
    )
    sent = runner.invoke(app, ["workflow", "signal", "wf-bo", "reply", '"yes"', "--database-url", db_url])
    assert sent.exit_code == 0, sent.output
    wait_until(
        lambda: scalar(db_url, "SELECT status FROM howdah.workflows WHERE id = 'wf-bo'") == "succeeded",
        what="wf-bo to succeed",
    )
    assert scalar(db_url, "SELECT result FROM howdah.workflows WHERE id = 'wf-bo'") == "Hello, Bo! You said 'yes'."

    wait_until(
        lambda: scalar(db_url, "SELECT status FROM howdah.workflows WHERE id = 'wf-cy'") == "sleeping",
        what="wf-cy to sleep",
    )
    cancelled = runner.invoke(app, ["workflow", "cancel", "wf-cy", "--database-url", db_url])
    assert cancelled.exit_code == 0 and "cancelled 1" in cancelled.output
    assert scalar(db_url, "SELECT status FROM howdah.workflows WHERE id = 'wf-cy'") == "cancelled"
    retried = runner.invoke(app, ["workflow", "retry", "wf-cy", "--database-url", db_url])
    assert retried.exit_code == 0, retried.output
    assert scalar(db_url, "SELECT status FROM howdah.workflows WHERE id = 'wf-cy'") in (
        "pending",
        "running",
        "sleeping",
    )


def test_worker_stops_on_sigterm(db_url: str, worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out
    assert "worker stopped" in out


def test_bad_app_spec_is_a_clear_error(db_url: str) -> None:
    result = runner.invoke(app, ["worker", "--app", "no_such_module:app", "--database-url", db_url])
    assert result.exit_code == 1 and "cannot import" in result.output
    result = runner.invoke(app, ["worker", "--app", "examples.hello", "--database-url", db_url])
    assert result.exit_code == 1 and "package.module:app" in result.output


def test_one_worker_runs_the_df_workflows_of_several_databases(db_url: str, pg_cluster: Any, template_db: str) -> None:
    """`howdah worker --database URL` (repeatable): one process serves the SQL-defined workflows of each."""
    name = f"second_{os.getpid()}_{id(db_url) % 100000}"
    second = pg_cluster.create_database(name, template=template_db)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "howdah.cli", "worker", "--concurrency", "4", "--database-url", db_url,
         "--database", second],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "started" in first, first + proc.stdout.read()
        ids = [scalar(url, "SELECT df.start('SELECT current_database() AS db')") for url in (db_url, second)]
        for url, instance in zip((db_url, second), ids, strict=True):
            assert scalar(url, "SELECT df.await_instance(%s, 30)", instance) == "completed"
        assert scalar(second, "SELECT df.result(%s)::jsonb #>> '{rows,0,db}'", ids[1]) == name
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        out = proc.stdout.read()  # what readline() buffered too (communicate() would skip it)
        assert proc.returncode == 0 and "worker stopped" in out, out
        assert "1 more database" in " ".join((first + out).split())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        pg_cluster.drop_database(name)
