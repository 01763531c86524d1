"""Read replicas of a local instance: streaming standbys cloned with pg_basebackup, one physical slot each.

The primary gets a ``replicator`` role (REPLICATION, its own SCRAM password) and a slot per replica, so that
it keeps the WAL a stopped replica still needs; a removed replica's slot is dropped with it. Each replica's
``howdah.conf`` carries its ``primary_conninfo`` (the password in a passfile, never in the configuration) and
is rewritten at every start, so a primary that moved to another port is followed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from psycopg import sql

from howdah.pg._binaries import OsUser, run_tool
from howdah.pg.files import write_atomic
from howdah.providers import _local_sql as q
from howdah.providers._local_files import InstancePaths, make_instance_dir, make_server_dir
from howdah.providers.base import ProviderError, TransientProviderError

REPLICATION_ROLE = "replicator"
_SLOT_PREFIX = "howdah_"


def slot_name(replica: str) -> str:
    return _SLOT_PREFIX + replica.replace("-", "_")


def passfile(replica_paths: InstancePaths) -> str:
    return str(replica_paths.root / "pgpass")


def prepare_primary(conn: q.Connection, password: str, replicas: Iterable[str]) -> None:
    """The replication role, a slot for each of ``replicas``, and no slot left for replicas that are gone."""
    role = sql.Identifier(REPLICATION_ROLE)
    row = conn.execute(
        "SELECT rolreplication, rolpassword FROM pg_catalog.pg_authid WHERE rolname = %s", (REPLICATION_ROLE,)
    )
    found = row.fetchone()
    verifier = sql.Literal(q.scram_verifier(password))
    if found is None:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(role, verifier))
    elif not found[0] or not q.scram_matches(found[1], password):
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN REPLICATION PASSWORD {}").format(role, verifier))
    slots = [slot_name(name) for name in replicas]
    conn.execute(
        "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots "
        "WHERE slot_name LIKE %s AND NOT (slot_name = ANY(%s)) AND NOT active",
        (_SLOT_PREFIX + "replica%", slots),
    )
    for slot in slots:
        conn.execute(
            "SELECT pg_catalog.pg_create_physical_replication_slot(%s, true) "
            "WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name = %s)",
            (slot, slot),
        )


def clone(
    home: Path, host: str, primary_port: int, replica: InstancePaths, name: str, password: str, user: OsUser
) -> None:
    """pg_basebackup (as the instance's OS ``user``) of the primary into the replica's data folder, marked as a
    standby. A clone interrupted by a crash is redone (``.initdb`` marker)."""
    make_instance_dir(replica.root, user)
    replica.initdb_marker.touch()
    shutil.rmtree(replica.data_dir, ignore_errors=True)
    make_server_dir(replica.data_dir, user)
    write_atomic(replica.root / "pgpass", f"{host}:*:*:{REPLICATION_ROLE}:{password}\n", owner_of=replica.data_dir)
    conninfo = f"host={host} port={primary_port} user={REPLICATION_ROLE} passfile={passfile(replica)}"
    done = run_tool(
        home,
        "pg_basebackup",
        ["-d", conninfo, "-D", str(replica.data_dir), "-X", "stream", "-S", slot_name(name), "-c", "fast", "-w"],
        timeout=24 * 3600,
        user=user,
    )
    if done.returncode != 0:
        raise ProviderError(f"cloning {name} with pg_basebackup failed: {(done.stderr or done.stdout).strip()}")
    write_atomic(replica.data_dir / "standby.signal", "", owner_of=replica.data_dir)
    replica.initdb_marker.unlink()


def standby_conf(host: str, primary_port: int, replica: InstancePaths, name: str) -> dict[str, str]:
    conninfo = (
        f"host={host} port={primary_port} user={REPLICATION_ROLE} passfile={passfile(replica)} application_name={name}"
    )
    return {
        "primary_conninfo": conninfo,
        "primary_slot_name": slot_name(name),
        "hot_standby": "on",
        # Reconnect soon after the primary restarts (the default waits 5 s); the primary is on this machine.
        "wal_retrieve_retry_interval": "500ms",
    }


def drop_slot(conn: q.Connection, name: str, timeout: float = 30) -> None:
    """Drop a removed replica's slot once its walsender has noticed the replica is gone (terminated if it has
    not within ``timeout``)."""
    slot = slot_name(name)
    deadline = time.monotonic() + timeout
    terminated = False
    while True:
        row = conn.execute(
            "SELECT active, active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = %s", (slot,)
        )
        found = row.fetchone()
        if found is None:
            return
        if not found[0]:
            conn.execute("SELECT pg_catalog.pg_drop_replication_slot(%s)", (slot,))
            return
        if time.monotonic() > deadline:
            if terminated:
                raise TransientProviderError(f"the replication slot {slot} stays in use")
            conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (found[1],))
            terminated, deadline = True, time.monotonic() + timeout
        time.sleep(0.02)


def replayed(conn: q.Connection, lsn: str) -> bool:
    """Whether the replica on ``conn`` has replayed the primary's WAL up to ``lsn``, or paused its recovery
    (a record it cannot apply with its current settings: only a restart with new ones moves it on)."""
    row = conn.execute(
        "SELECT pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_catalog.pg_lsn "
        "OR pg_catalog.pg_get_wal_replay_pause_state() <> 'not paused'",
        (lsn,),
    ).fetchone()
    return bool(row and row[0])
