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
import tomllib
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import Cli, FakeDataPlane
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


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
    assert bad.returncode == 2 and "DNS label" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli("instance", "get", "nothing-here", check=False)
    assert missing.returncode == 3 and "no instance named" in missing.stderr
    forbidden = cli("instance", "create", "x1", "--config", "port=1", check=False)
    assert forbidden.returncode == 2 and "port" in forbidden.stderr
    broken = cli("instance", "create", "x2", "--config", "oops", check=False)
    assert broken.returncode == 2 and "name=value" in broken.stderr


FAKE_PSQL = """#!{python}
import json, os, stat, sys
passfile = os.environ.get("PGPASSFILE", "")
with open({out!r}, "w") as out:
    json.dump({{"argv": sys.argv, "PGPASSWORD": os.environ.get("PGPASSWORD"), "path": passfile,
               "passfile": open(passfile).read() if passfile else None,
               "mode": stat.S_IMODE(os.stat(passfile).st_mode) if passfile else None}}, out)
"""


def test_connect_keeps_the_password_out_of_psqls_argv(cli: Cli, db_url: str, tmp_path: Path) -> None:
    """`ps` shows every process's argv to every user: the password goes through a private passfile."""
    plane = FakeDataPlane(db_url)
    plane.thread.start()
    try:
        cli("instance", "create", "vault", "--wait")
    finally:
        plane.stop.set()
        plane.thread.join(timeout=10)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "psql-saw.json"
    psql = bin_dir / "psql"
    psql.write_text(FAKE_PSQL.format(python=sys.executable, out=str(seen)))
    psql.chmod(0o755)
    cli.env = {**cli.env, "PATH": f"{bin_dir}{os.pathsep}{cli.env['PATH']}"}
    cli("instance", "connect", "vault")
    saw = json.loads(seen.read_text())
    assert not any("pw" in arg for arg in saw["argv"][1:]), saw["argv"]
    assert saw["PGPASSWORD"] is None
    assert saw["passfile"] == "*:*:*:*:pw\n" and saw["mode"] == 0o600
    assert not Path(saw["path"]).exists()  # removed once psql exits


def test_wait_retries_while_the_instance_is_busy(cli: Cli, db_url: str) -> None:
    """A 409 with Retry-After (the data plane is still working) makes `--wait` wait and retry, not exit."""
    cli("instance", "create", "busy")  # no data plane answers yet: the instance stays Submitted, busy
    update = subprocess.Popen(
        [sys.executable, "-m", "howdah.cli", "instance", "update", "busy", "--config", "work_mem=8MB", "--wait"],
        env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert update.stderr is not None
        lines.extend(update.stderr)

    threading.Thread(target=read, daemon=True).start()
    plane = FakeDataPlane(db_url)
    try:
        wait_until(lambda: "retrying" in "".join(lines) or update.poll() is not None, what="the CLI to meet a 409")
        assert update.poll() is None, "".join(lines)
        plane.thread.start()  # the data plane finishes the create; the retried update goes through
        out, _ = update.communicate(timeout=60)
        assert update.returncode == 0, out + "".join(lines)
        assert "instance busy" in out  # shown once the update is through
    finally:
        update.kill()
        plane.stop.set()
        if plane.thread.is_alive():
            plane.thread.join(timeout=10)
    assert plane.seen.count("Update") == 1


def _run_up(env: dict[str, str]) -> str:
    proc = subprocess.Popen(
        [sys.executable, "-m", "howdah.cli", "up", "--no-conductor", "--api-port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(timeout=60), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        proc.kill()
    return "".join(lines)


def test_up_prints_its_platform_token_once(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200", "HOWDAH_DATABASE_URL": db_url,
           "HOWDAH_HOME": str(tmp_path / "home")}  # fmt: skip
    first = _run_up(env)
    config = tmp_path / "config" / "howdah" / "config.toml"
    saved = tomllib.loads(config.read_text())["profiles"]["local"]
    assert saved["token"] in first and str(config) in first.replace("\n", "")
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    second = _run_up(env)
    assert saved["token"] not in second
    assert str(config) in second.replace("\n", "")
    with psycopg.connect(db_url) as conn:
        role = conn.execute(
            "SELECT role FROM control.tokens WHERE prefix = %s AND revoked_at IS NULL", (saved["token"][:12],)
        ).fetchone()
    assert role == ("platform",)
