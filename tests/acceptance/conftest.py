"""What the CLI's acceptance tests share: the CLI run as a program against a real `howdah api` and a real Postgres,
and a stand-in data plane that answers the control plane's events."""

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
from typer.testing import CliRunner

from howdah.cli import app
from howdah.control.events import STATE_QUEUE, data_plane_queue
from howdah.pg.processes import free_port
from tests.waiting import wait_until


class Cli:
    """``howdah`` run as a program; ``url`` is the API's, ``platform`` a platform admin's token (org default)."""

    def __init__(self, env: dict[str, str], url: str = "", platform: str = "") -> None:
        self.env, self.url, self.platform = env, url, platform

    def __call__(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "howdah.cli", *args], env=self.env, capture_output=True, text=True, timeout=120,
            input=input,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done


class Api:
    """A running ``howdah api`` of the module's database: its address and a platform admin's token (org default)."""

    def __init__(self, url: str, platform: str) -> None:
        self.url, self.platform = url, platform


@pytest.fixture(scope="module")
def api(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One API process per module (the module's tests share its database anyway); each test gets its own
    config folder and token through :func:`cli`."""
    port = free_port()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("api-config")), "COLUMNS": "200",
           "HOWDAH_DATABASE_URL": db_url}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "howdah.cli", "api", "--port", str(port)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: _healthy(port) or server.poll() is not None, what="the API to answer")
        assert server.poll() is None, server.communicate()[0]
        platform = _token(db_url, env["XDG_CONFIG_HOME"], "--org", "default", "--role", "platform")
        added = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/data-planes", json={"name": "local"},
            headers={"Authorization": f"Bearer {platform}"},
        )  # fmt: skip
        assert added.status_code == 201, added.text
        yield Api(f"http://127.0.0.1:{port}", platform)
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
    assert server.returncode == 0, out


@pytest.fixture
def cli(api: Api, db_url: str, tmp_path: Path) -> Cli:
    """The CLI with a config folder of the test's own, holding a fresh admin token of org acme (profile default)."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200",
           "HOWDAH_DATABASE_URL": db_url}  # fmt: skip
    _token(db_url, env["XDG_CONFIG_HOME"], "--org", "acme", "--role", "admin", "--save", "--api-url", api.url)
    return Cli(env, api.url, api.platform)


def _token(db_url: str, config_home: str, *args: str) -> str:
    """``howdah token create --via-database ARGS`` run in this process (a token is where a test starts, not what
    it checks, and a CLI process costs about a second); returns the token."""
    made = CliRunner().invoke(
        app, ["token", "create", "--via-database", *args],
        env={"XDG_CONFIG_HOME": config_home, "HOWDAH_DATABASE_URL": db_url, "HOWDAH_PROFILE": None},
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    return made.stdout.strip()


@pytest.fixture
def plane(db_url: str) -> Iterator[FakeDataPlane]:
    """A stand-in data plane answering the control plane's events for the test's duration."""
    answering = FakeDataPlane(db_url)
    answering.thread.start()
    yield answering
    answering.stop.set()
    answering.thread.join(timeout=10)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


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
                              "generation": event["generation"], "data_plane": "local",
                              "actual_spec": event["spec"],
                              "connection": {"host": "127.0.0.1", "port": 6000, "user": "app",
                                             "password": "pw", "dbname": "app"}}  # fmt: skip
                    conn.execute("SELECT pgmq.send(%s, %s::jsonb)", (STATE_QUEUE, json.dumps(answer)))
                    conn.execute("SELECT pgmq.delete(%s, %s::bigint)", (data_plane_queue("local"), msg_id))
                self.stop.wait(0.05)
