"""The local provider against real Postgres 18 servers: lifecycle, settings, extensions, crashes, adoption."""

from __future__ import annotations

import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from howdah.pg.processes import port_open, postmaster_pid
from howdah.providers import ConnectionInfo, ProviderError, TransientProviderError
from howdah.providers.local import LocalProvider
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"


def app_connect(info: ConnectionInfo, **overrides: Any) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(**{**info.as_dict(), **overrides}, connect_timeout=5, autocommit=True)


def show(info: ConnectionInfo, setting: str) -> str:
    with app_connect(info) as conn:
        row = conn.execute(f"SHOW {setting}").fetchone()
        assert row is not None
        return str(row[0])


def up(provider: LocalProvider, instance_id: str, settings: dict[str, str] | None = None) -> ConnectionInfo:
    provider.ensure_created(instance_id, f"db-{instance_id}", settings or {})
    provider.ensure_running(instance_id)
    return provider.ensure_app_database(instance_id)


def test_create_run_connect_with_password_only(provider: LocalProvider, home: Path) -> None:
    started = time.monotonic()
    for _ in range(2):  # every call twice: idempotent
        provider.ensure_created("one", "first", {"work_mem": "4MB"})
    assert provider.list_instances() == ["one"]
    assert provider.status("one").exists and not provider.status("one").running
    first = provider.ensure_running("one")
    again = provider.ensure_running("one")
    created_to_accepting = time.monotonic() - started
    assert first.accepting_connections and first.running and first.exists
    assert again.postmaster_start_time == first.postmaster_start_time  # not restarted
    assert first.server_version and first.server_version.startswith("18")
    assert first.port is not None and 20000 <= first.port <= 29999
    assert first.settings == {"work_mem": "4MB"}
    assert first.size_bytes and first.size_bytes > 0
    info = provider.ensure_app_database("one")
    assert provider.ensure_app_database("one") == info
    assert (info.host, info.port, info.user, info.dbname) == (HOST, first.port, "app", "app")

    with app_connect(info) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("app", "app")
        conn.execute("CREATE TABLE kept (v text)")
        assert conn.execute("SHOW listen_addresses").fetchone() == (HOST,)
        assert conn.execute("SHOW work_mem").fetchone() == ("4MB",)
        assert conn.execute("SHOW cluster_name").fetchone() == ("first",)
    # no trust anywhere: a wrong password, no password, and the Unix socket without a password are refused
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        app_connect(info, password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password"):
        app_connect(info, password="")
    socket_dir = home / "instances" / "one" / "run"
    assert (socket_dir / f".s.PGSQL.{info.port}").exists()
    for user in ("app", "postgres"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            app_connect(info, host=str(socket_dir), user=user, password="")
    # secrets are kept private, and the superuser's password works over TCP
    instance_dir = home / "instances" / "one"
    for secret in ("superuser.password", "app.password"):
        assert stat.S_IMODE((instance_dir / secret).stat().st_mode) == 0o600
    superuser = (instance_dir / "superuser.password").read_text().strip()
    with app_connect(info, user="postgres", password=superuser) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
    print(f"\ncreate -> accepting connections: {created_to_accepting:.2f} s")


def test_settings_reload_or_restart_and_rejected_values(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "cfg", {"work_mem": "4MB"})
    start_time = provider.status("cfg").postmaster_start_time
    # a user-context setting: reload only
    for _ in range(2):
        assert provider.apply_settings("cfg", {"work_mem": "8MB"}) is False
    assert show(info, "work_mem") == "8MB"
    assert provider.status("cfg").postmaster_start_time == start_time
    # a postmaster-context setting: needs a restart, and the restart is real
    wanted = {"work_mem": "8MB", "max_connections": "50"}
    assert provider.apply_settings("cfg", wanted) is True
    assert provider.status("cfg").pending_restart
    restarted = provider.restart("cfg")
    assert restarted.postmaster_start_time and start_time and restarted.postmaster_start_time > start_time
    assert not restarted.pending_restart
    assert show(info, "max_connections") == "50"
    assert provider.apply_settings("cfg", wanted) is False
    # a value Postgres rejects: its own message, nothing applied, the server still runs with the old values
    auto_conf = home / "instances" / "cfg" / "pgdata" / "postgresql.auto.conf"
    before = auto_conf.read_text()
    with pytest.raises(ProviderError, match='invalid value for parameter "work_mem": "lots"') as rejected:
        provider.apply_settings("cfg", {"max_connections": "60", "work_mem": "lots"})
    assert not isinstance(rejected.value, TransientProviderError)
    with pytest.raises(ProviderError, match='unrecognized configuration parameter "no_such_setting"'):
        provider.apply_settings("cfg", {"no_such_setting": "1"})
    with pytest.raises(ProviderError, match="managed by the local provider"):
        provider.apply_settings("cfg", {"port": "5432"})
    assert auto_conf.read_text() == before
    status = provider.status("cfg")
    assert status.running and status.accepting_connections and not status.pending_restart
    assert show(info, "work_mem") == "8MB"
    # a setting Howdah set and no longer wants is reset to the server default
    assert provider.apply_settings("cfg", {"max_connections": "50"}) is False
    assert show(info, "work_mem") == "4MB"
    assert "work_mem" not in auto_conf.read_text()
    # values may come quoted as in postgresql.conf
    assert provider.apply_settings("cfg", {"max_connections": "50", "search_path": "'\"$user\", public'"}) is False
    assert show(info, "search_path") == '"$user", public'


def test_extension_needing_a_preload(provider: LocalProvider) -> None:
    info = up(provider, "ext")
    with pytest.raises(ProviderError, match=r"pg_stat_statements.*shared_preload_libraries"):
        provider.ensure_extensions("ext", ["pg_stat_statements"], [])
    with pytest.raises(ProviderError, match="'no_such_extension' is not available"):
        provider.ensure_extensions("ext", ["no_such_extension"], [])
    with pytest.raises(ProviderError, match='could not access file "no_such_library"'):
        provider.apply_settings("ext", {"shared_preload_libraries": "no_such_library"})
    # two libraries given as 'a,b' (ALTER SYSTEM needs them as two literals)
    preload = {"shared_preload_libraries": "pg_stat_statements,auto_explain"}
    assert provider.apply_settings("ext", preload) is True
    with pytest.raises(ProviderError, match="not been restarted"):
        provider.ensure_extensions("ext", ["pg_stat_statements"], [])
    provider.restart("ext")
    assert provider.status("ext").settings["shared_preload_libraries"] == "pg_stat_statements, auto_explain"
    assert provider.apply_settings("ext", preload) is False
    for _ in range(2):
        provider.ensure_extensions("ext", ["pg_stat_statements", "pg_trgm"], [])
    with app_connect(info) as conn:
        conn.execute("SELECT 1")
        row = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
        assert row is not None and row[0] >= 1
        assert conn.execute("SELECT similarity('howdah', 'howdy') > 0").fetchone() == (True,)
    # a name under a loaded library's reserved prefix passes the offline check but ALTER SYSTEM rejects it:
    # what was applied before it is rolled back
    with pytest.raises(ProviderError, match="pg_stat_statements"):
        provider.apply_settings("ext", {**preload, "work_mem": "16MB", "pg_stat_statements.no_such": "1"})
    assert provider.status("ext").settings.get("work_mem") is None
    assert show(info, "work_mem") == "4MB"
    for _ in range(2):
        provider.ensure_extensions("ext", [], ["pg_trgm"])
    with app_connect(info) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").fetchone() == (0,)


def test_stop_start_kill_and_adoption(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "life")
    with app_connect(info) as conn:
        conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    for _ in range(2):
        provider.stop("life")
    status = provider.status("life")
    assert status.exists and not status.running and not status.accepting_connections
    assert not port_open(HOST, info.port)
    with pytest.raises(psycopg.OperationalError):
        app_connect(info)
    provider.ensure_running("life")
    with app_connect(info) as conn:
        assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)

    # the postmaster killed from outside: seen as not running, then brought back with the data
    data_dir = home / "instances" / "life" / "pgdata"
    pid = postmaster_pid(data_dir)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not provider.status("life").running, what="killed server seen as not running")
    back = provider.ensure_running("life")
    assert back.running and back.accepting_connections
    with app_connect(info) as conn:
        assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)

    # a new provider on the same home (a restarted conductor) adopts the running server
    adopted = LocalProvider(home, durable=False)
    assert adopted.list_instances() == ["life"]
    seen = adopted.status("life")
    assert seen.running and seen.postmaster_start_time == back.postmaster_start_time and seen.port == info.port
    assert adopted.ensure_running("life").postmaster_start_time == back.postmaster_start_time
    assert adopted.ensure_app_database("life") == info


def test_delete_removes_data_and_releases_the_port(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "gone")
    for _ in range(2):
        provider.delete("gone")
    assert not (home / "instances" / "gone").exists()
    assert list((home / "instances").iterdir()) == []
    assert not port_open(HOST, info.port)
    assert provider.list_instances() == []
    status = provider.status("gone")
    assert not status.exists and not status.running
    provider.delete("never-existed")
    assert not provider.status("never-existed").exists
    assert not provider.status("../escape").exists  # an invalid id is reported missing, never raised
    with pytest.raises(ProviderError, match="does not exist"):
        provider.ensure_running("gone")


def test_concurrent_creates_get_their_own_ports(provider: LocalProvider) -> None:
    errors: list[BaseException] = []

    def create(instance_id: str) -> None:
        try:
            up(provider, instance_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(f"c{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    ports = {provider.status(f"c{n}").port for n in range(2)}
    assert len(ports) == 2 and all(provider.status(f"c{n}").accepting_connections for n in range(2))


def test_port_taken_at_start_is_transient_and_moves(provider: LocalProvider) -> None:
    provider.ensure_created("race", "race", {})
    port = provider.status("race").port
    assert port is not None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((HOST, port))
        squatter.listen()
        with pytest.raises(TransientProviderError, match=f"port {port}"):
            provider.ensure_running("race")
        status = provider.ensure_running("race")
    assert status.accepting_connections and status.port not in (None, port)


def test_bad_start_reports_postgres_log_and_recovers(provider: LocalProvider) -> None:
    # each value is valid alone; together Postgres refuses to start, and says why in its log
    provider.ensure_created("bad", "bad", {"wal_level": "minimal"})
    # (with archiving on, Postgres names that first; without it, WAL streaming)
    with pytest.raises(ProviderError, match=r'(WAL archival cannot be enabled when|requires) "wal_level"') as refused:
        provider.ensure_running("bad")
    assert not isinstance(refused.value, TransientProviderError)
    assert not provider.status("bad").running
    # a value Postgres rejects outright is refused before anything is written
    with pytest.raises(ProviderError, match='invalid value for parameter "work_mem": "lots"'):
        provider.ensure_created("bad", "bad", {"work_mem": "lots"})
    # corrected settings: the same create converges
    provider.ensure_created("bad", "bad", {"wal_level": "replica"})
    assert provider.ensure_running("bad").accepting_connections


def test_interrupted_initdb_is_redone(provider: LocalProvider, home: Path) -> None:
    provider.ensure_created("half", "half", {})
    instance_dir = home / "instances" / "half"
    # simulate a crash in the middle of initdb: the marker is back and the cluster is incomplete
    (instance_dir / ".initdb").touch()
    (instance_dir / "pgdata" / "global" / "pg_control").unlink()
    assert not provider.status("half").exists
    provider.ensure_created("half", "half", {})
    assert not (instance_dir / ".initdb").exists()
    assert provider.ensure_running("half").accepting_connections


def test_backup_and_restore_into_a_new_instance(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "src", {"work_mem": "6MB"})
    with app_connect(info) as conn:
        conn.execute("CREATE TABLE kept AS SELECT g AS n FROM generate_series(1, 1000) AS g")
    backup = provider.backup("src", "first")
    assert provider.backup("src", "first") == backup  # the same id: the same backup, not another one
    assert backup.instance_id == "src" and backup.size_bytes > 0
    assert Path(backup.location) == home / "backups" / "src" / "first"
    assert provider.list_backups("src") == [backup]
    with app_connect(info) as conn:
        conn.execute("INSERT INTO kept VALUES (1001)")  # after the backup: not in the copy

    for _ in range(2):
        provider.restore(backup, "copy")
    restored = provider.ensure_running("copy")
    assert restored.accepting_connections and restored.port != info.port
    assert restored.settings == {"work_mem": "6MB"}
    copy = provider.ensure_app_database("copy")
    assert copy.port == restored.port
    # the copy has passwords of its own: the source's no longer open it
    assert copy.password != info.password
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        app_connect(copy, password=info.password)
    source_superuser = (home / "instances" / "src" / "superuser.password").read_text().strip()
    copy_superuser = (home / "instances" / "copy" / "superuser.password").read_text().strip()
    assert copy_superuser != source_superuser
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        app_connect(copy, user="postgres", password=source_superuser)
    with app_connect(copy, user="postgres", password=copy_superuser) as conn:
        conn.execute("SELECT 1")
    assert provider.ensure_app_database("copy") == copy  # rotated once, then stable
    # a password change cut short after the server took the new one: the next connection finishes it
    upcoming = home / "instances" / "copy" / "superuser.password.next"
    upcoming.write_text("cut-short-password\n")
    with app_connect(copy, user="postgres", password=copy_superuser) as conn:
        conn.execute("ALTER ROLE postgres PASSWORD 'cut-short-password'")
    assert provider.status("copy").accepting_connections
    assert (home / "instances" / "copy" / "superuser.password").read_text().strip() == "cut-short-password"
    assert not upcoming.exists()
    # backups are Howdah's alone: no other user lists or reads them (an instance's OS user passes through the
    # folders to its WAL archive, as root: nobody else, and nobody lists them)
    for path in [home / "backups", home / "backups" / "src"]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o066 == 0, path
    assert stat.S_IMODE((home / "backups" / "src").stat().st_mode) & 0o007 == 0
    assert stat.S_IMODE(Path(backup.location).stat().st_mode) & 0o077 == 0
    with app_connect(copy) as conn:
        assert conn.execute("SELECT count(*), max(n) FROM kept").fetchone() == (1000, 1000)
        conn.execute("INSERT INTO kept VALUES (-1)")
    with app_connect(info) as conn:  # the source is untouched
        assert conn.execute("SELECT count(*) FROM kept WHERE n < 0").fetchone() == (0,)
    with pytest.raises(ProviderError, match="already exists"):
        provider.restore(backup, "src")
    # a backup outlives its instance
    provider.delete("src")
    assert provider.list_backups("src") == [backup]


def test_read_replicas_stream_from_the_primary(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "rep")
    with app_connect(info) as conn:
        conn.execute("CREATE TABLE kept AS SELECT 1 AS n")
    for _ in range(2):
        replicas = provider.ensure_replicas("rep", 2)  # the primary and one read replica
    assert [r["name"] for r in replicas] == ["replica-1"] and replicas[0]["running"]
    replica = ConnectionInfo(HOST, replicas[0]["port"], info.user, info.password, info.dbname)
    assert replica.port != info.port
    with app_connect(info) as conn:
        conn.execute("INSERT INTO kept VALUES (2)")

    def replica_rows() -> bool:
        with app_connect(replica) as conn:
            return conn.execute("SELECT count(*) FROM kept").fetchone() == (2,)

    wait_until(replica_rows, what="the replica replays the primary's insert")
    with app_connect(replica) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO kept VALUES (3)")
    streaming = wait_until(
        lambda: [r for r in provider.status("rep").replicas if r["state"] == "streaming" and r["lag_bytes"] == 0],
        what="the replica is streaming and caught up",
    )
    assert streaming[0]["name"] == "replica-1"

    # settings follow the primary; stop and start take the replica along
    assert provider.apply_settings("rep", {"work_mem": "12MB"}) is False
    wait_until(lambda: show(replica, "work_mem") == "12MB", what="the replica reloads the primary's settings")
    assert provider.apply_settings("rep", {"work_mem": "12MB", "max_connections": "60"}) is True
    provider.restart("rep")  # the replica too: a hot standby needs max_connections >= the primary's
    assert show(replica, "max_connections") == "60"
    provider.stop("rep")
    assert not port_open(HOST, replica.port) and not provider.status("rep").replicas[0]["running"]
    provider.ensure_running("rep")
    wait_until(replica_rows, what="the replica is back")
    # a replica killed from outside is seen, and brought back by ensure_running
    replica_pid = postmaster_pid(home / "instances" / "rep" / "replica-1" / "pgdata")
    assert replica_pid is not None
    os.kill(replica_pid, signal.SIGKILL)
    wait_until(lambda: not provider.status("rep").replicas[0]["running"], what="the killed replica seen as down")
    assert provider.ensure_running("rep").replicas[0]["running"]
    wait_until(replica_rows, what="the replica is back after kill -9")

    # fewer replicas: the replica, its slot and its port go
    for _ in range(2):
        assert provider.ensure_replicas("rep", 1) == []
    assert not (home / "instances" / "rep" / "replica-1").exists()
    assert not port_open(HOST, replica.port)
    superuser = (home / "instances" / "rep" / "superuser.password").read_text().strip()
    with app_connect(info, user="postgres", password=superuser) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
    provider.ensure_replicas("rep", 2)
    provider.delete("rep")  # takes its replicas along
    assert not (home / "instances" / "rep").exists()
    assert provider.list_instances() == []
