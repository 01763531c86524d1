"""The ``howdah`` command line end to end: schema commands, queue commands, errors, and ``howdah up``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from howdah.cli import app
from howdah.pg import EmbeddedPostgres
from howdah.queue import COMPONENT

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_queue_round_trip(db_url: str, queue_name: str) -> None:
    assert run("queue", "create", queue_name, "--database-url", db_url).exit_code == 0
    sent = run("queue", "send", queue_name, '{"hello": "world"}', "--headers", '{"k": 1}', "--database-url", db_url)
    assert sent.exit_code == 0, sent.output
    msg_id = int(sent.output.strip())
    read = run("queue", "read", queue_name, "--json", "--vt", "0", "--database-url", db_url)
    assert read.exit_code == 0
    [row] = json.loads(read.stdout)  # a JSON array of PGMQ's message records
    assert row["msg_id"] == msg_id and row["message"] == {"hello": "world"} and row["headers"] == {"k": 1}
    assert {"read_ct", "enqueued_at", "vt", "last_read_at"} <= set(row)
    as_yaml = run("queue", "read", queue_name, "-o", "yaml", "--vt", "0", "--database-url", db_url)
    assert yaml.safe_load(as_yaml.stdout)[0]["message"] == {"hello": "world"}
    listed = run("queue", "list", "--database-url", db_url)
    assert queue_name in listed.output
    queues = json.loads(run("queue", "list", "-o", "json", "--database-url", db_url).stdout)
    assert next(q for q in queues if q["queue_name"] == queue_name)["is_partitioned"] is False
    metrics = run("queue", "metrics", queue_name, "--database-url", db_url)
    assert metrics.exit_code == 0 and queue_name in metrics.output
    [counted] = json.loads(run("queue", "metrics", queue_name, "--json", "--database-url", db_url).stdout)
    assert counted["queue_name"] == queue_name and counted["queue_length"] == 1 and counted["total_messages"] == 1
    archived = run("queue", "archive", queue_name, str(msg_id), "--database-url", db_url)
    assert archived.exit_code == 0 and f"archived: {msg_id}" in archived.output
    missing = run("queue", "delete", queue_name, str(msg_id), "--database-url", db_url)
    assert missing.exit_code == 3 and "not found" in missing.output
    assert run("queue", "send", queue_name, "1", "--database-url", db_url).exit_code == 0
    popped = run("queue", "pop", queue_name, "--json", "--database-url", db_url)
    assert [m["message"] for m in json.loads(popped.stdout)] == [1]
    nothing = run("queue", "pop", queue_name, "-o", "json", "--database-url", db_url)
    assert json.loads(nothing.stdout) == []
    assert "purged 0" in run("queue", "purge", queue_name, "--database-url", db_url).output
    assert run("queue", "drop", queue_name, "--database-url", db_url).exit_code == 0


def test_queue_commands_that_change_things_answer_scripts_in_json(db_url: str, queue_name: str) -> None:
    assert run("queue", "create", queue_name, "--database-url", db_url).exit_code == 0
    sent = json.loads(run("queue", "send", queue_name, '{"n": 1}', "-o", "json", "--database-url", db_url).stdout)
    also = yaml.safe_load(run("queue", "send", queue_name, "2", "-o", "yaml", "--database-url", db_url).stdout)
    archived = run("queue", "archive", queue_name, str(sent["msg_id"]), "-o", "json", "--database-url", db_url)
    assert archived.exit_code == 0 and json.loads(archived.stdout) == {"archived": [sent["msg_id"]], "not_found": []}
    missing = run("queue", "delete", queue_name, str(sent["msg_id"]), str(also["msg_id"]), "-o", "json",
                  "--database-url", db_url)  # fmt: skip
    assert missing.exit_code == 3  # one was archived already: not found, and the exit code says so
    assert json.loads(missing.stdout) == {"deleted": [also["msg_id"]], "not_found": [sent["msg_id"]]}
    run("queue", "send", queue_name, "3", "--database-url", db_url)
    purged = run("queue", "purge", queue_name, "-o", "json", "--database-url", db_url)
    assert json.loads(purged.stdout) == {"purged": 1}
    verified = run("df", "verify", "-o", "json", "--database-url", db_url)
    assert verified.exit_code == 0, verified.output
    assert [(c["component"], c["ok"], c["pending"]) for c in json.loads(verified.stdout)] == [
        ("queue", True, []), ("durable", True, []), ("df", True, [])
    ]  # fmt: skip
    assert json.loads(run("version", "-o", "json").stdout)["version"] == run("version").stdout.strip()
    assert run("queue", "drop", queue_name, "--database-url", db_url).exit_code == 0


def test_tail_follows_new_messages(db_url: str, queue_name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT pgmq.create(%s)", (queue_name,))
        conn.execute("SELECT pgmq.send(%s, '\"old\"'::jsonb)", (queue_name,))
    tail = subprocess.Popen(
        [sys.executable, "-m", "howdah.cli", "queue", "tail", queue_name, "--limit", "2", "--database-url", db_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(db_url, autocommit=True) as conn:
            # tail starts after the newest message; keep sending until it has shown two new ones
            while tail.poll() is None and time.monotonic() < deadline:
                conn.execute("SELECT pgmq.send(%s, '\"new\"'::jsonb)", (queue_name,))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    tail.wait(timeout=0.5)
        out, err = tail.communicate(timeout=10)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    shown = [json.loads(line)["message"] for line in out.strip().splitlines()]
    assert shown == ["new", "new"]


def test_bad_input_is_one_clear_line(db_url: str, queue_name: str) -> None:
    bad_json = run("queue", "send", queue_name, "{not json", "--database-url", db_url)
    assert bad_json.exit_code != 0 and "not valid JSON" in bad_json.output
    missing = run("queue", "read", "no_such_queue_here", "--database-url", db_url)
    assert missing.exit_code == 3
    assert "does not exist" in missing.output and "Traceback" not in missing.output
    bad_name = run("queue", "create", "bad;name", "--database-url", db_url)
    assert bad_name.exit_code == 2 and "forbidden" in bad_name.output  # invalid input: a usage error
    unreachable = run("queue", "list", "--database-url", "postgresql://nobody@127.0.0.1:1/x?connect_timeout=2")
    assert unreachable.exit_code == 4 and "Traceback" not in unreachable.output  # unavailable: try again later


def test_schema_commands(db_url: str, pg_cluster: Any) -> None:
    verify = run("queue", "verify", "--database-url", db_url)
    assert verify.exit_code == 0 and "queue schema OK" in verify.output
    again = run("queue", "install", "--database-url", db_url)
    assert again.exit_code == 0 and "already installed" in again.output
    printed = run("queue", "sql")
    assert printed.exit_code == 0
    assert printed.output.strip() == COMPONENT.sql().strip()
    assert "CREATE FUNCTION pgmq.howdah_dead_letter" in printed.output
    # a database with a pgmq schema Howdah did not create is refused and left alone
    name = f"foreign_{uuid.uuid4().hex[:8]}"
    url = pg_cluster.create_database(name, template="template0")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA pgmq; CREATE TABLE pgmq.meta (queue_name text)")
        refused = run("queue", "install", "--database-url", url)
        assert refused.exit_code == 1 and "nothing was changed" in refused.output
        not_installed = run("queue", "upgrade", "--database-url", url)
        assert not_installed.exit_code == 1 and "not installed" in not_installed.output
        with psycopg.connect(url, autocommit=True) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'pgmq'").fetchone()
            assert tables == (1,)
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="howdah-up-"))
    os.chmod(home, 0o755)
    yield home
    EmbeddedPostgres(home).stop(mode="immediate")
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_howdah_up_runs_and_stops_cleanly(fresh_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HOWDAH_DATABASE_URL"}
    env.update(HOWDAH_HOME=str(fresh_home), COLUMNS="200", XDG_CONFIG_HOME=str(fresh_home / "config"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "howdah.cli", "up", "--app", "examples.hello:app"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop" in line:
                ready.set()

    threading.Thread(target=reader, daemon=True).start()
    try:
        assert ready.wait(timeout=60), "".join(lines)
        server = EmbeddedPostgres(fresh_home)
        assert server.status().running
        with psycopg.connect(server.url(), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM howdah_meta.schema_migrations WHERE component = 'queue'")
            assert row.fetchone() == (len(COMPONENT.migrations()),)
            # the worker `up` runs for examples.hello:app takes a workflow started from SQL
            conn.execute("SELECT howdah.start_workflow('greet', '{\"name\": \"up\", \"pause\": 0}', 'wf-up')")
            deadline = time.monotonic() + 30
            status = None
            while status != "succeeded" and time.monotonic() < deadline:
                status = conn.execute("SELECT status FROM howdah.workflows WHERE id = 'wf-up'").fetchone()[0]
                time.sleep(0.05)
            assert status == "succeeded", "".join(lines)
        # the control-plane API runs, and `up` saved an admin token the CLI uses
        listed = subprocess.run(
            [sys.executable, "-m", "howdah.cli", "instance", "list"], env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split()[:3] == ["ID", "NAME", "STATE"]  # the table, read with the saved token
        # the web console is served on the API's port, at the address `up` printed
        console_url = re.search(r"web console: (http://127\.0\.0\.1:\d+/)", "".join(lines))
        assert console_url, "".join(lines)
        home = httpx.get(console_url.group(1), timeout=30)
        assert home.status_code == 303 and home.headers["location"].startswith("/sign-in")
        sign_in = httpx.get(console_url.group(1) + "sign-in", timeout=30)
        assert sign_in.status_code == 200 and "API token" in sign_in.text
        # and its conductor provisions a real instance
        howdah_cli = [sys.executable, "-m", "howdah.cli"]
        created = subprocess.run([*howdah_cli, "instance", "create", "demo", "--memory", "256Mi", "--wait"], env=env,
                                 capture_output=True, text=True, timeout=180)  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr + "".join(lines)
        uri = subprocess.run([*howdah_cli, "instance", "connect", "demo", "--print"], env=env, capture_output=True,
                             text=True, timeout=60).stdout.strip()  # fmt: skip
        with psycopg.connect(uri, connect_timeout=10) as instance:
            assert instance.execute("SELECT current_user").fetchone() == ("app",)
        deleted = subprocess.run([*howdah_cli, "instance", "delete", "demo", "--wait"], env=env, capture_output=True,
                                 text=True, timeout=180)  # fmt: skip
        assert deleted.returncode == 0, deleted.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        proc.kill()
    output = "".join(lines)
    assert "Howdah is up" in output and "stopped cleanly" in output
    assert not EmbeddedPostgres(fresh_home).status().running


def test_db_status_for_scripts(tmp_path: Path) -> None:
    """No embedded server initialised under HOWDAH_HOME: the record says so, and the exit code is 3."""
    env = {"HOWDAH_HOME": str(tmp_path), "HOWDAH_DATABASE_URL": None}  # None: unset while the command runs
    shown = runner.invoke(app, ["db", "status", "-o", "json"], env=env)
    assert shown.exit_code == 3
    assert json.loads(shown.stdout) == {"external_database_url": False, "initialised": False, "running": False,
                                        "pid": None, "port": None, "data_dir": None, "log_file": None}  # fmt: skip
    as_table = runner.invoke(app, ["db", "status"], env=env)
    assert as_table.exit_code == 3 and "not initialised" in as_table.stdout
