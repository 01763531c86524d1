"""The control plane from the command line: `howdah api`, tokens, instances and `howdah apply`.

No conductor exists yet, so the test plays the data plane: it answers CRUD events with state events on the
queue, which the reconciler inside `howdah api` applies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from howdah.control.events import STATE_QUEUE, data_plane_queue
from howdah.control.server import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "howdah.cli", *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Iterator[Cli]:
    port = free_port()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200",
           "HOWDAH_DATABASE_URL": db_url}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "howdah.cli", "api", "--port", str(port)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_until(lambda: _healthy(port), what="the API to answer")
    run = Cli(env)
    run("token", "create", "--org", "acme", "--role", "admin", "--save", "--api-url", f"http://127.0.0.1:{port}")
    httpx.post(
        f"http://127.0.0.1:{port}/api/v1/data-planes", json={"name": "local"},
        headers={"Authorization": f"Bearer {_saved_token(tmp_path)}"},
    ).raise_for_status()  # fmt: skip
    yield run
    server.send_signal(signal.SIGTERM)
    out, _ = server.communicate(timeout=30)
    assert server.returncode == 0, out


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _saved_token(tmp_path: Path) -> str:
    text = (tmp_path / "config" / "howdah" / "config.toml").read_text()
    return next(json.loads(line.split("=", 1)[1]) for line in text.splitlines() if line.startswith("token"))


class FakeDataPlane:
    """Answers every CRUD event of the 'local' data plane with the matching state event."""

    ANSWERS = {"Create": "Created", "Update": "Updated", "Restart": "Restarted", "Stop": "Stopped",
               "Start": "Started", "Delete": "Deleted"}  # fmt: skip

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.stop = threading.Event()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute("SELECT msg_id, message FROM pgmq.read(%s, 30, 10)", (data_plane_queue("local"),))
                for msg_id, event in rows.fetchall():
                    self.seen.append(event["kind"])
                    answer = {"instance_id": event["instance_id"], "event": self.ANSWERS[event["kind"]],
                              "generation": event["generation"], "actual_spec": event["spec"],
                              "connection": {"host": "127.0.0.1", "port": 6000, "user": "app",
                                             "password": "pw", "dbname": "app"}}  # fmt: skip
                    conn.execute("SELECT pgmq.send(%s, %s::jsonb)", (STATE_QUEUE, json.dumps(answer)))
                    conn.execute("SELECT pgmq.delete(%s, %s::bigint)", (data_plane_queue("local"), msg_id))
                self.stop.wait(0.05)


def test_instances_and_apply_through_the_cli(cli: Cli, db_url: str, tmp_path: Path) -> None:
    plane = FakeDataPlane(db_url)
    plane.thread.start()
    try:
        created = cli("instance", "create", "shop", "--stack", "oltp", "--config", "work_mem=16MB", "--wait")
        assert "Up" in created.stdout and "oltp" in created.stdout
        listed = cli("instance", "list")
        assert "shop" in listed.stdout and "Up" in listed.stdout
        got = json.loads(cli("instance", "get", "shop", "--json").stdout)
        assert got["desired_spec"]["postgres_configs"] == {"work_mem": "16MB"}
        assert got["connection"]["password"] == "pw"
        assert cli("instance", "connect", "shop", "--print").stdout.strip().startswith("postgresql://app:pw@")

        manifest = tmp_path / "howdah.toml"
        manifest.write_text(
            '[shop]\nstack = "oltp"\nmemory = "2Gi"\n[shop.postgres_configs]\nwork_mem = "32MB"\n\n'
            '[search]\nstack = "vectordb"\nextensions = ["vector"]\n'
        )
        applied = cli("apply", "-f", str(manifest))
        assert "update shop" in applied.stdout and "create" in applied.stdout and "search" in applied.stdout
        again = cli("apply", "-f", str(manifest))
        assert "up to date" in again.stdout
        got = json.loads(cli("instance", "get", "shop", "--json").stdout)
        assert got["desired_spec"]["memory"] == "2Gi" and got["state"] == "Up"

        cli("instance", "stop", "shop", "--wait")
        cli("instance", "start", "shop", "--wait")
        cli("instance", "delete", "search", "--wait")
        assert "search" not in cli("instance", "list", "--state", "Up").stdout
        assert plane.seen.count("Create") == 2 and "Stop" in plane.seen and "Delete" in plane.seen
    finally:
        plane.stop.set()
        plane.thread.join(timeout=10)


def test_cli_errors_are_one_clear_line(cli: Cli) -> None:
    bad = cli("instance", "create", "Bad_Name", check=False)
    assert bad.returncode == 1 and "DNS label" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli("instance", "get", "nothing-here", check=False)
    assert missing.returncode == 1 and "no instance named" in missing.stderr
    forbidden = cli("instance", "create", "x1", "--config", "port=1", check=False)
    assert forbidden.returncode == 1 and "port" in forbidden.stderr
    broken = cli("instance", "create", "x2", "--config", "oops", check=False)
    assert broken.returncode != 0 and "name=value" in broken.stderr
