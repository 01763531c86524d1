"""The first run: ``howdah up`` says it is ready only when /readyz does, keeps its logs in a private file, records
its pid and address; ``howdah status`` reports /readyz; ``howdah down`` stops it and, on request, every local
instance — against a fresh ``$HOWDAH_HOME``, real Postgres and real instances."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from howdah.pg import EmbeddedPostgres
from howdah.pg.processes import postmaster_pid
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
HOWDAH = [sys.executable, "-m", "howdah.cli"]


class Up:
    """A ``howdah up`` subprocess of its own ``$HOWDAH_HOME``: its output, and when it said it was ready."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if k not in ("HOWDAH_DATABASE_URL", "HOWDAH_API_URL")}
        self.env.update(HOWDAH_HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), COLUMNS="200")
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([*HOWDAH, "up", "--api-port", "0"], env=self.env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Press Ctrl-C to stop" in line:
                self.ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*HOWDAH, *args], env=self.env, capture_output=True, text=True, timeout=180)

    def config(self) -> dict[str, str]:
        text = (self.home / "config" / "howdah" / "config.toml").read_text()
        return dict(tomllib.loads(text)["profiles"]["local"])  # `howdah up` writes the profile `local`

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        config = self.config()
        headers = {"Authorization": f"Bearer {config['token']}"}
        return httpx.request(method, config["api_url"] + path, headers=headers, timeout=30, **kwargs)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def fresh() -> Iterator[Up]:
    home = Path(tempfile.mkdtemp(prefix="howdah-first-run-"))
    os.chmod(home, 0o755)  # instances' OS users pass through it when the tests run as root
    up = Up(home)
    yield up
    up.stop()
    subprocess.run([*HOWDAH, "down", "--instances"], env=up.env, capture_output=True, timeout=180)
    EmbeddedPostgres(home).stop(mode="immediate")
    shutil.rmtree(home, ignore_errors=True)


def _postmasters(home: Path) -> list[int]:
    """The postmaster pids of the local data plane's instances (primaries and replicas)."""
    found = [postmaster_pid(d) for d in (home / "dataplane" / "instances").glob("*/pgdata")]
    found += [postmaster_pid(d) for d in (home / "dataplane" / "instances").glob("*/replica-*/pgdata")]
    return [pid for pid in found if pid is not None]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[:1] == ["Z"]


def test_up_is_ready_when_it_says_so_keeps_its_logs_and_down_stops_everything(fresh: Up) -> None:
    # `status --wait` started before `up`: it finds the address `up` records later
    waiting = subprocess.Popen([*HOWDAH, "status", "--wait", "--timeout", "120", "-o", "json"], env=fresh.env,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    fresh.start()
    assert fresh.ready.wait(timeout=120), fresh.output
    # the banner came once /readyz said ready: it still does, and a create is accepted at once
    ready = httpx.get(fresh.config()["api_url"] + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    created = fresh.api("POST", "/api/v1/orgs/default/instances", json={"name": "alpha", "memory": "256Mi"})
    assert created.status_code == 202, created.text
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, out + err
    answer = json.loads(out)
    assert answer["status"] == "ready" and answer["url"] == fresh.config()["api_url"]
    assert all(check["ok"] for check in answer["checks"].values())
    assert "Howdah is up" in fresh.output and "web console: http://127.0.0.1:" in fresh.output

    # the pid file: this `up`, its API's address, private
    pid_file = fresh.home / "state" / "up.pid"
    assert pid_file.read_text().split() == [str(fresh.proc.pid if fresh.proc else 0), fresh.config()["api_url"]]
    assert oct(pid_file.stat().st_mode & 0o777) == "0o600"
    assert oct(pid_file.parent.stat().st_mode & 0o777) == "0o700"

    # uvicorn's warnings go to the private log file, not into the terminal
    log = fresh.home / "logs" / "howdah.log"
    assert oct(log.stat().st_mode & 0o777) == "0o600" and oct(log.parent.stat().st_mode & 0o777) == "0o700"
    port = int(fresh.config()["api_url"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        with contextlib.suppress(OSError):
            raw.recv(1024)
    wait_until(lambda: "Invalid HTTP request received" in log.read_text(), timeout=30, what="uvicorn's warning")
    assert "Invalid HTTP request" not in fresh.output

    instance = fresh.api("GET", f"/api/v1/orgs/default/instances/{created.json()['id']}")
    wait_until(lambda: fresh.api("GET", f"/api/v1/orgs/default/instances/{created.json()['id']}").json()["state"]
               == "Up", timeout=120, what="alpha to be Up")  # fmt: skip
    assert instance.status_code == 200
    running = _postmasters(fresh.home)
    assert running, "alpha's Postgres runs"

    # its Postgres log, as the conductor ships it, through the API
    def logged() -> str | None:
        shown = fresh.cli("instance", "logs", "alpha").stdout
        return shown if "ready to accept connections" in shown else None

    assert "database system is ready to accept connections" in wait_until(logged, timeout=60, what="alpha's log")
    lines = json.loads(fresh.cli("instance", "logs", "alpha", "--since", "1h", "-o", "json").stdout)
    assert lines and {"seq", "at", "server", "line"} <= set(lines[0]) and lines[0]["server"] == "primary"

    # `down` stops `up`; the instance keeps running, and both say so and how to stop it
    stopped = fresh.cli("down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert fresh.proc is not None and fresh.proc.wait(timeout=30) == 0
    assert "1 local instance(s) keep running: alpha" in fresh.output
    assert "stop them with: howdah down --instances" in fresh.output
    assert "alpha" in stopped.stderr and "howdah down --instances" in stopped.stderr
    assert not pid_file.exists()
    assert fresh.cli("status").returncode == 4  # nothing answers now

    # `down --instances` with the platform stopped: through the data plane; no Postgres of theirs is left
    swept = fresh.cli("down", "--instances")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "stopped instance alpha" in swept.stderr
    assert all(_gone(pid) for pid in running)
    assert _postmasters(fresh.home) == []


# Each attempt is a fresh platform (~10 s); the check is 20 in a row: HOWDAH_RACE_ATTEMPTS=20.
RACE_ATTEMPTS = int(os.environ.get("HOWDAH_RACE_ATTEMPTS", "1"))


@pytest.mark.parametrize("attempt", range(RACE_ATTEMPTS))
def test_a_create_the_moment_readyz_says_ready_is_accepted(fresh: Up, attempt: int) -> None:
    """The first-run race: a fresh `up`, a script that waits only on readiness (`howdah status --wait`), then a
    create at once; `down --instances` then stops the instance through the API (the platform knows it Stopped)
    and no Postgres of it is left behind."""
    fresh.start()
    waited = fresh.cli("status", "--wait", "--timeout", "120")
    assert waited.returncode == 0, waited.stdout + waited.stderr + fresh.output
    created = fresh.api("POST", "/api/v1/orgs/default/instances", json={"name": f"race{attempt}", "memory": "256Mi"})
    assert created.status_code == 202, created.text + fresh.output
    down = fresh.cli("down", "--instances")
    assert down.returncode == 0, down.stdout + down.stderr + fresh.output
    assert f"instance race{attempt}: Stopped" in down.stderr
    assert fresh.proc is not None and fresh.proc.wait(timeout=30) == 0
    assert "Howdah stopped cleanly" in fresh.output
    assert _postmasters(fresh.home) == []
