"""What the local provider asks of a running instance, in SQL: settings, roles, extensions, observations.

Every session here is a superuser's, and some run in the ``app`` database, which the tenant owns: the tenant
can set that database's ``search_path`` and plant functions, views and operators named like the catalog's.
So each session pins ``search_path`` to ``pg_catalog, pg_temp`` in its startup packet (which outranks
``ALTER DATABASE``/``ALTER ROLE … SET``), every name is schema-qualified, and extensions go into the schema
``extensions``, which the platform owns and the tenant cannot write to (Postgres's secure schema usage
pattern; the CVE-2018-1058 class of attack).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from howdah.backoff import Backoff
from howdah.providers._local_conf import LIST_SETTINGS, list_items
from howdah.providers.base import ProviderError, TransientProviderError

SUPERUSER = "postgres"
APP_ROLE = "app"
APP_DATABASE = "app"
EXTENSION_SCHEMA = "extensions"
# Outranks every per-database and per-role setting: the tenant's objects are never found by name.
SESSION_OPTIONS = "-c search_path=pg_catalog,pg_temp"

Connection = psycopg.Connection[tuple[Any, ...]]


def connect(
    host: str, port: int, password: str, dbname: str = "postgres", *, user: str = SUPERUSER, timeout: float = 5
) -> Connection:
    return psycopg.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=max(1, int(timeout)),
        autocommit=True,
        application_name="howdah-local-provider",
        options=SESSION_OPTIONS,
    )


def pg_message(exc: psycopg.Error) -> str:
    """Postgres's own message for ``exc`` (primary text, then its detail and hint)."""
    diag = exc.diag
    primary = diag.message_primary or str(exc).strip()
    parts = [primary]
    if diag.message_detail:
        parts.append(diag.message_detail)
    if diag.message_hint:
        parts.append(f"hint: {diag.message_hint}")
    return "; ".join(parts)


def _one(conn: Connection, query: sql.SQL | sql.Composed | str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


# ---------------------------------------------------------------------------------------------- settings
def _setting_name(name: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))


def alter_system(conn: Connection, name: str, value: str | None) -> None:
    """``ALTER SYSTEM SET name = value`` (list settings as one literal per item), or ``RESET`` for ``None``."""
    if value is None:
        conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(_setting_name(name)))
        return
    items = list_items(value) if name.lower() in LIST_SETTINGS else [value]
    literal = sql.SQL(", ").join(sql.Literal(item) for item in items)
    conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(_setting_name(name), literal))


def apply_system_settings(conn: Connection, changes: Mapping[str, str | None], previous: Mapping[str, str]) -> None:
    """ALTER SYSTEM every change (``None``: reset), all or nothing: when Postgres rejects one, those already
    applied are put back to ``previous`` (the auto.conf values before) and a :class:`ProviderError` carries
    Postgres's message."""
    done: list[str] = []
    try:
        for name, value in changes.items():
            alter_system(conn, name, value)
            done.append(name)
    except psycopg.Error as exc:
        if conn.broken:
            raise TransientProviderError(f"the connection to the server broke: {str(exc).strip()}") from exc
        for name in reversed(done):
            try:
                alter_system(conn, name, previous.get(name.lower()))
            except psycopg.Error as undo:  # pragma: no cover - the previous values were accepted before
                raise ProviderError(f"{pg_message(exc)} (and undoing {name} failed: {pg_message(undo)})") from exc
        raise ProviderError(pg_message(exc)) from exc


def reload(conn: Connection, timeout: float = 10) -> None:
    """``pg_reload_conf()`` and wait until this session has re-read the files (its ``pg_conf_load_time()``
    moves), so that ``pending_restart`` is up to date."""
    before = _one(conn, "SELECT pg_catalog.pg_conf_load_time()")
    conn.execute("SELECT pg_catalog.pg_reload_conf()")
    deadline = time.monotonic() + timeout
    delays = Backoff(initial=0.005, factor=2.0, cap=0.1).delays()
    while _one(conn, "SELECT pg_catalog.pg_conf_load_time()") == before:
        if time.monotonic() > deadline:
            raise TransientProviderError(f"the server did not reload its configuration within {timeout:.0f} s")
        time.sleep(next(delays))


def restart_needed(conn: Connection, wanted_preload: str | None) -> bool:
    """After a reload: does any setting wait for a restart, or do the loaded libraries differ from those wanted?"""
    if _one(conn, "SELECT coalesce(bool_or(pending_restart), false) FROM pg_catalog.pg_settings"):
        return True
    if wanted_preload is None:
        return False
    loaded = _one(conn, "SELECT pg_catalog.current_setting('shared_preload_libraries')") or ""
    return sorted(set(list_items(loaded)) - {""}) != sorted(set(list_items(wanted_preload)) - {""})


# ------------------------------------------------------------------------------------------ app database
def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for ``password``: the password itself never reaches the
    server (nor its log)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def scram_matches(verifier: str | None, password: str) -> bool:
    """Whether ``verifier`` (``pg_authid.rolpassword``) is the SCRAM verifier of ``password``."""
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        head, _keys = verifier.split("$", 2)[1:]
        iterations, salt = head.split(":")
        expected = scram_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, verifier)


def set_password(conn: Connection, role: str, password: str) -> None:
    """Give ``role`` this password (as a SCRAM verifier made here: the password never reaches the server)."""
    conn.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(scram_verifier(password)))
    )


def ensure_app_role_and_database(conn: Connection, password: str) -> None:
    """Role ``app`` (LOGIN, this password) owning database ``app``; changes only what differs."""
    role = sql.Identifier(APP_ROLE)
    row = conn.execute(
        "SELECT rolcanlogin, rolpassword FROM pg_catalog.pg_authid WHERE rolname = %s", (APP_ROLE,)
    ).fetchone()
    if row is None:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(scram_verifier(password))))
    elif not row[0] or not scram_matches(row[1], password):
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(role))
        set_password(conn, APP_ROLE, password)
    owner = _one(
        conn,
        "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = %s",
        (APP_DATABASE,),
    )
    if owner is None:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(APP_DATABASE), role))
    elif owner != APP_ROLE:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(APP_DATABASE), role))


# -------------------------------------------------------------------------------------------- extensions
def ensure_extension_schema(conn: Connection) -> None:
    """The schema ``extensions`` in the connected (app) database: owned by the superuser, usable by everyone,
    writable by no tenant. Made once, and then the database's default ``search_path`` gains it, so that
    extension objects are found unqualified. A schema of that name that a tenant made is refused: objects
    planted in it would run with the rights of the extension scripts."""
    row = conn.execute(
        """
        SELECT r.rolname, r.rolsuper
        FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
        WHERE n.nspname = %s
        """,
        (EXTENSION_SCHEMA,),
    ).fetchone()
    schema = sql.Identifier(EXTENSION_SCHEMA)
    if row is not None:
        if not row[1]:
            raise ProviderError(
                f'schema "{EXTENSION_SCHEMA}" in database {APP_DATABASE!r} is owned by {row[0]}, not by the platform: '
                "extensions are installed only into a schema no tenant can write to; rename or drop that schema"
            )
        return
    conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(schema, sql.Identifier(SUPERUSER)))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(schema))
    default_path = _one(
        conn,
        """
        SELECT count(*) FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
        WHERE d.datname = pg_catalog.current_database() AND s.setrole = 0
          AND EXISTS (SELECT FROM pg_catalog.unnest(s.setconfig) c WHERE c LIKE 'search\\_path=%%')
        """,
    )
    if not default_path:  # the tenant's own choice of search_path, if any, is left alone
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET search_path = '\"$user\"', public, {}").format(
                sql.Identifier(APP_DATABASE), schema
            )
        )


def ensure_extensions(
    conn: Connection,
    enabled: Iterable[str],
    disabled: Iterable[str],
    libraries_needed: Mapping[str, tuple[str, ...]],
    pending_preload: str | None,
) -> None:
    """CREATE / DROP EXTENSION in the connected database; every check is made before anything changes.

    An extension goes into the schema ``extensions`` unless its control file fixes its schema (plpgsql)."""
    enabled, disabled = list(dict.fromkeys(enabled)), list(dict.fromkeys(disabled))
    both = sorted(set(enabled) & set(disabled))
    if both:
        raise ProviderError(f"extension {both[0]!r} is both enabled and disabled")
    fixed_schema: dict[str, bool] = dict(
        conn.execute(
            """
            SELECT name, bool_or(schema IS NOT NULL) FROM pg_catalog.pg_available_extension_versions
            GROUP BY name
            """
        ).fetchall()
    )
    missing = [name for name in enabled if name not in fixed_schema]
    if missing:
        raise ProviderError(
            f"extension {missing[0]!r} is not available: it is not installed in this server's Postgres "
            f"{_one(conn, 'SHOW server_version')} binaries"
        )
    loaded = set(list_items(_one(conn, "SELECT pg_catalog.current_setting('shared_preload_libraries')") or ""))
    for name in enabled:
        lacking = [lib for lib in libraries_needed.get(name, ()) if lib not in loaded]
        if lacking:
            pending = pending_preload is not None and set(lacking) <= set(list_items(pending_preload))
            why = (
                "it is set but the server has not been restarted since"
                if pending
                else "add it to shared_preload_libraries and restart"
            )
            raise ProviderError(
                f"extension {name!r} needs {', '.join(lacking)} in shared_preload_libraries, which the server has "
                f"not loaded: {why}"
            )
    try:
        if enabled:
            ensure_extension_schema(conn)
        for name in enabled:
            create = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name))
            if not fixed_schema[name]:
                create += sql.SQL(" SCHEMA {}").format(sql.Identifier(EXTENSION_SCHEMA))
            conn.execute(create + sql.SQL(" CASCADE"))
        for name in disabled:
            conn.execute(sql.SQL("DROP EXTENSION IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise ProviderError(pg_message(exc)) from exc


# ----------------------------------------------------------------------------------------- observations
@dataclass(frozen=True)
class Observed:
    server_version: str
    size_bytes: int
    postmaster_start_time: datetime
    pending_restart: bool
    settings: dict[str, str]
    replication: dict[str, dict[str, Any]]


def observe(conn: Connection, names: Iterable[str]) -> Observed:
    row = conn.execute(
        """
        SELECT pg_catalog.current_setting('server_version'),
               (SELECT coalesce(sum(pg_catalog.pg_database_size(oid)), 0) FROM pg_catalog.pg_database),
               pg_catalog.pg_postmaster_start_time(),
               (SELECT coalesce(bool_or(pending_restart), false) FROM pg_catalog.pg_settings)
        """
    ).fetchone()
    assert row is not None
    wanted = sorted(set(names))
    settings = {
        name: value
        for name, value in conn.execute(
            "SELECT n, pg_catalog.current_setting(n, true) FROM pg_catalog.unnest(%s::text[]) AS n", (wanted,)
        ).fetchall()
        if value is not None
    }
    replication = {
        str(name): {"state": state, "lag_bytes": lag, "replay_lag_seconds": seconds}
        for name, state, lag, seconds in conn.execute(
            """
            SELECT application_name, state,
                   pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn)::bigint,
                   extract(epoch FROM replay_lag)::float8
            FROM pg_catalog.pg_stat_replication
            """
        ).fetchall()
    }
    return Observed(str(row[0]), int(row[1]), row[2], bool(row[3]), settings, replication)


def current_wal_lsn(conn: Connection) -> str:
    return str(_one(conn, "SELECT pg_catalog.pg_current_wal_lsn()::text"))


def postmaster_start_time(conn: Connection) -> datetime:
    value = _one(conn, "SELECT pg_catalog.pg_postmaster_start_time()")
    assert isinstance(value, datetime)
    return value


def archiver(conn: Connection) -> tuple[Any, ...] | None:
    """``pg_stat_archiver``: last archived WAL and time, last failed WAL and time, failures."""
    return conn.execute(
        "SELECT last_archived_wal, last_archived_time, last_failed_wal, last_failed_time, failed_count "
        "FROM pg_catalog.pg_stat_archiver"
    ).fetchone()


def in_recovery(conn: Connection) -> bool:
    return bool(_one(conn, "SELECT pg_catalog.pg_is_in_recovery()"))
