"""The whole platform with real processes: the control plane (`howdah api`), a conductor with the local
provider (`howdah conductor`), and real Postgres instances driven through the CLI."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from howdah.pg.processes import LOCALHOST, free_port, port_open, postmaster_pid
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


class Platform:
    def __init__(self, db_url: str, tmp: Path) -> None:
        self.db_url = db_url
        self.home = tmp / "dataplane"
        self.home.mkdir(mode=0o755)
        os.chmod(tmp, 0o755)
        self.port = free_port()
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config"), "COLUMNS": "200",
                    "HOWDAH_DATABASE_URL": db_url,  # one key for both processes, as for a remote conductor
                    "HOWDAH_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()}  # fmt: skip
        self.token = ""  # the acme admin's, also saved as the CLI's profile
        self.procs: list[subprocess.Popen[str]] = []
        self.conductor: subprocess.Popen[str] | None = None

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "howdah.cli", *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        self.procs.append(proc)
        return proc

    def start_conductor(self) -> None:
        # a short lease and status interval: a killed conductor's work and a dead server are taken up sooner
        self.conductor = self.spawn("conductor", "--data-plane", "local", "--home", str(self.home), "--lease", "10",
                                    "--status-interval", "0.5")  # fmt: skip
        assert self.conductor.stdout is not None
        line = self.conductor.stdout.readline()
        assert "started" in line, line

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "howdah.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done

    def live(self) -> list[dict[str, Any]]:
        """The org's instances that are not deleted, as the API shows them (what ``howdah instance list -o json``
        prints; asked over HTTP: the tests look often, and a CLI process per look would cost a second each)."""
        listed = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/orgs/acme/instances", params={"limit": 200},
                           headers={"Authorization": f"Bearer {self.token}"}, timeout=30)  # fmt: skip
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert page["next_offset"] is None
        return [item for item in page["items"] if item["state"] != "Deleted"]

    def instance(self, name: str) -> dict[str, Any]:
        """The live instance ``name`` (what ``howdah instance get NAME -o json`` prints)."""
        found = [item for item in self.live() if item["name"] == name]
        assert len(found) == 1, (name, found)
        return found[0]

    def connect(self, name: str) -> psycopg.Connection[Any]:
        c = self.instance(name)["connection"]
        return psycopg.connect(host=c["host"], port=c["port"], user=c["user"], password=c["password"],
                               dbname=c["dbname"], autocommit=True, connect_timeout=10)  # fmt: skip

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def running_platform(db_url: str) -> Iterator[Platform]:
    """The API and the conductor, started once for the module (its tests share its database anyway)."""
    tmp = Path(tempfile.mkdtemp(prefix="howdah-platform-"))  # traversable by the server OS user, unlike tmp_path
    p = Platform(db_url, tmp)
    try:
        p.spawn("api", "--port", str(p.port))
        wait_until(lambda: _healthy(p.port), timeout=60, what="the API")
        p.token = p.cli("token", "create", "--via-database", "--org", "acme", "--role", "admin", "--save",
                        "--api-url", f"http://127.0.0.1:{p.port}").stdout.strip()  # fmt: skip
        p.start_conductor()
        yield p
    finally:
        p.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def platform(running_platform: Platform) -> Iterator[Platform]:
    """The module's platform; each test starts with no instance and leaves none behind."""
    p = running_platform
    assert p.conductor is not None and p.conductor.poll() is None, "the conductor stopped"
    assert _live_instances(p) == []
    yield p
    for name in _live_instances(p):
        p.cli("instance", "delete", name, "--wait", check=False)
    assert _live_instances(p) == []
    assert not (p.home / "instances").exists() or list((p.home / "instances").iterdir()) == []


def _live_instances(p: Platform) -> list[str]:
    """The names of the org's instances that are not deleted."""
    return [item["name"] for item in p.live()]


def _start_time(conn: psycopg.Connection[Any]) -> Any:
    row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]


def test_instance_lifecycle_on_real_postgres(platform: Platform) -> None:
    p = platform
    created = p.cli(
        "instance", "create", "shop", "--stack", "standard", "--memory", "512Mi",
        "--extension", "pg_stat_statements=off", "--wait",
    )  # fmt: skip
    assert "Up" in created.stdout
    with p.connect("shop") as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2)")
        started = _start_time(conn)
    instance = p.instance("shop")
    port = instance["connection"]["port"]
    data_dirs = list((p.home / "instances").iterdir())
    assert [d.name for d in data_dirs] == [instance["id"]]

    # a user-context setting: Configuring -> Up, no restart
    p.cli("instance", "update", "shop", "--config", "work_mem=64MB")
    wait_until(lambda: p.instance("shop")["state"] == "Up" and not p.instance("shop")["has_active_work"],
               timeout=120, what="shop to be Up after the work_mem change")  # fmt: skip
    with p.connect("shop") as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("64MB",)
        assert _start_time(conn) == started

    # an extension that needs a preload library: Restarting -> Up, start time changes, extension usable
    updated = p.cli("instance", "update", "shop", "--extension", "pg_stat_statements", "--wait")
    assert updated.returncode == 0
    with p.connect("shop") as conn:
        assert _start_time(conn) != started
        conn.execute("SELECT count(*) FROM pg_stat_statements")

    # a value Postgres's rules refuse is a 422 before anything is accepted
    refused = p.cli("instance", "update", "shop", "--config", "work_mem=lots", check=False)
    assert refused.returncode != 0 and "work_mem" in refused.stdout + refused.stderr
    assert p.instance("shop")["state"] == "Up"
    # a value only the server can judge (a time zone name): the instance goes to Error with Postgres's
    # message, no work stays stuck, and a corrected PATCH brings it back Up
    p.cli("instance", "update", "shop", "--config", "timezone=Mars/Olympus")
    wait_until(lambda: p.instance("shop")["state"] == "Error", timeout=120, what="shop to report the bad value")
    failed = p.instance("shop")
    assert "TimeZone" in failed["last_error"] and not failed["has_active_work"]
    p.cli("instance", "update", "shop", "--config", "timezone=UTC", "--config", "work_mem=32MB", "--wait")
    with p.connect("shop") as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("32MB",)

    # a backup, then more writes, then a restore into a new instance: it has the data as of the backup
    backup_id = p.cli("instance", "backup", "shop", "--wait").stdout.strip()
    with p.connect("shop") as conn:
        conn.execute("INSERT INTO orders VALUES (3)")
        between = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO orders VALUES (4)")
    p.cli("instance", "restore", backup_id, "shop-copy", "--wait")
    with p.connect("shop-copy") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    p.cli("instance", "delete", "shop-copy", "--wait")
    # and to a point in time between the two inserts, once the archive holds the second
    superuser = (p.home / "instances" / instance["id"] / "superuser.password").read_text().strip()
    with p.connect("shop") as conn, psycopg.connect(conn.info.dsn, password=superuser, user="postgres") as su:
        su.execute("SELECT pg_switch_wal()")

    def window() -> dict[str, Any] | None:
        shown = json.loads(p.cli("instance", "backups", "shop", "--json").stdout)
        span = shown["recovery_window"]
        return shown if span and datetime.fromisoformat(span["latest"]) > between else None

    shown = wait_until(window, timeout=120, what="the window reaching the second insert")
    assert [b["id"] for b in shown["backups"]] == [backup_id] and shown["last_archive_error"] is None
    table = p.cli("instance", "backups", "shop").stdout
    assert "recoverable from" in table and backup_id[:8] in table  # as short as it is unique, never cut
    p.cli("instance", "restore", "--from", "shop", "--to-time", between.isoformat(sep=" "), "shop-pit", "--wait")
    with p.connect("shop-pit") as conn:
        assert conn.execute("SELECT array_agg(id ORDER BY id) FROM orders").fetchone() == ([1, 2, 3],)
    refused = p.cli("instance", "restore", "--from", "shop", "--to-time", "2001-01-01 00:00:00+00", "x", check=False)
    assert refused.returncode != 0 and "outside the recoverable window" in refused.stdout + refused.stderr
    p.cli("instance", "delete", "shop-pit", "--wait")
    # the latest backup verified: restored into a scratch instance, queried, deleted; the outcome in the status
    verified = json.loads(p.cli("instance", "verify-backup", "shop", "--wait", "-o", "json").stdout)
    assert verified["ok"] is True and verified["error"] is None and verified["seconds"] >= 0
    assert p.instance("shop")["status"]["last_verified_restore"] == verified
    assert "verified restore" in p.cli("instance", "get", "shop").stdout
    with p.connect("shop") as conn:
        conn.execute("DELETE FROM orders WHERE id IN (3, 4)")

    # stop closes the port; start brings the data back
    p.cli("instance", "stop", "shop", "--wait")
    assert p.instance("shop")["state"] == "Stopped"
    assert not port_open(LOCALHOST, port)
    p.cli("instance", "start", "shop", "--wait")
    with p.connect("shop") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)

    # kill -9 the instance's postmaster: reported Error, then recovered to Up
    pid = int((p.home / "instances" / instance["id"] / "pgdata" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: p.instance("shop")["state"] == "Up" and port_open(LOCALHOST, port), timeout=120,
               what="shop to come back after its postmaster was killed")  # fmt: skip
    with p.connect("shop") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)

    # delete: Deleted, data directory and port gone
    p.cli("instance", "delete", "shop", "--wait")
    assert not (p.home / "instances" / instance["id"]).exists()
    assert not port_open(LOCALHOST, port)


def test_read_replica_killed_with_sigkill_is_restarted_and_shown(platform: Platform) -> None:
    p = platform
    p.cli("instance", "create", "shop", "--memory", "256Mi", "--replicas", "2", "--wait")
    replica_dir = p.home / "instances" / p.instance("shop")["id"] / "replica-1" / "pgdata"

    def streaming() -> list[dict[str, Any]]:
        replicas = p.instance("shop")["status"].get("replicas", [])
        return [r for r in replicas if r["running"] and r["state"] == "streaming" and r["lag_bytes"] is not None]

    wait_until(streaming, timeout=60, what="the replica to be reported streaming")
    killed = postmaster_pid(replica_dir)
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: postmaster_pid(replica_dir) not in (None, killed), timeout=60, what="the replica restarted")
    wait_until(streaming, timeout=60, what="the restarted replica to be reported streaming")
    assert p.instance("shop")["state"] == "Up"
    shown = p.cli("instance", "get", "shop").stdout
    assert "replica-1" in shown and "streaming" in shown and "lag" in shown


def test_conductor_killed_during_create_still_converges(platform: Platform) -> None:
    p = platform
    p.cli("instance", "create", "crashy", "--memory", "512Mi")
    instance_id = p.instance("crashy")["id"]
    wait_until(lambda: (p.home / "instances" / instance_id).exists(), timeout=60, what="the create to begin")
    assert p.conductor is not None
    p.conductor.kill()
    p.conductor.wait(timeout=30)
    p.start_conductor()
    wait_until(lambda: p.instance("crashy")["state"] == "Up", timeout=180, what="crashy to be Up after the crash")
    assert [d.name for d in (p.home / "instances").iterdir()] == [instance_id]
    with p.connect("crashy") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_messagequeue_stack_installs_howdahs_queue(platform: Platform) -> None:
    p = platform
    p.cli("instance", "create", "mq", "--stack", "messagequeue", "--memory", "256Mi", "--wait")
    try:
        with p.connect("mq") as conn:
            conn.execute("SELECT pgmq.create('jobs')")
            conn.execute("""SELECT pgmq.send('jobs', '{"hello": 1}')""")
            row = conn.execute("SELECT message FROM pgmq.read('jobs', 30, 1)").fetchone()
            assert row == ({"hello": 1},)
    finally:
        p.cli("instance", "delete", "mq", "--wait", check=False)
