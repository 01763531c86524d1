"""The embedded Postgres server: lifecycle, adoption, and clear errors when it cannot start."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from howdah.pg import EmbeddedPostgres, ServerError
from howdah.pg._binaries import server_os_user
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="howdah-pg-"))
    os.chmod(path, 0o755)
    yield path
    EmbeddedPostgres(path).stop(mode="immediate")
    shutil.rmtree(path, ignore_errors=True)


def test_start_connect_stop_and_adopt(home: Path) -> None:
    server = EmbeddedPostgres(home)
    status = server.start()
    assert status.running and status.pid
    with psycopg.connect(server.url()) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None and int(str(version[0])) >= 180000
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
    # a second handle on the same home adopts the running server instead of starting another
    again = EmbeddedPostgres(home).start()
    assert again.pid == status.pid
    # the server runs as the unprivileged user when we are root
    uid_line = next(
        line for line in Path(f"/proc/{status.pid}/status").read_text().splitlines() if line.startswith("Uid:")
    )
    assert int(uid_line.split()[1]) == server_os_user().uid
    if os.geteuid() == 0:
        assert server_os_user().uid != 0
    server.stop()
    assert not server.status().running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url(), connect_timeout=2)


def test_wrong_password_is_refused(home: Path) -> None:
    server = EmbeddedPostgres(home)
    server.start()
    bad = server.url().replace(server.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=5)


def test_port_taken_is_a_clear_error(home: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} on 127.0.0.1 is taken"):
            EmbeddedPostgres(home, port=port).start()


def test_data_dir_owned_by_someone_else(home: Path) -> None:
    server = EmbeddedPostgres(home)
    server.init()
    other = 12345 if server_os_user().uid != 12345 else 12346
    if os.geteuid() != 0:
        pytest.skip("changing a folder's owner needs root")
    os.chown(server.data_dir, other, other)
    with pytest.raises(ServerError, match=f"owned by uid {other}"):
        server.start()


def test_broken_config_reports_the_log(home: Path) -> None:
    server = EmbeddedPostgres(home, settings={"shared_buffers": "not-a-size"})
    with pytest.raises(ServerError, match="did not start") as info:
        server.start(timeout=20)
    assert "shared_buffers" in str(info.value)


def test_setting_values_with_quotes_and_backslashes_reach_postgres_unchanged(home: Path) -> None:
    value = "it's C:\\temp\\ 'quoted'"
    server = EmbeddedPostgres(home, settings={"howdah.note": value, "application_name": "o'neil"})
    server.start(timeout=20)
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("SELECT current_setting('howdah.note')").fetchone() == (value,)
        row = conn.execute("SELECT reset_val FROM pg_catalog.pg_settings WHERE name = 'application_name'").fetchone()
        assert row == ("o'neil",)


def test_a_zombie_in_postmaster_pid_is_not_a_running_server(home: Path, tmp_path: Path) -> None:
    server = EmbeddedPostgres(home)
    server.init()
    named_postgres = tmp_path / "postgres"
    named_postgres.symlink_to(shutil.which("true") or "/bin/true")
    child = subprocess.Popen([str(named_postgres)])  # exits at once; not waited for: a zombie
    try:
        wait_until(lambda: _state(child.pid) == "Z", timeout=10, what="the child to exit")
        (server.data_dir / "postmaster.pid").write_text(f"{child.pid}\n{server.data_dir}\n")
        assert server.pid() is None
        assert not server.status().running
    finally:
        child.wait()
        (server.data_dir / "postmaster.pid").unlink(missing_ok=True)


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2 :].split(" ", 1)[0]
