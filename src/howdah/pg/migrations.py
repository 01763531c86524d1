"""Versioned plain-SQL migrations shipped in the wheel.

Each Howdah layer that owns tables is a :class:`Component` with a folder of ordered files
``migrations/NNNN_name.sql``. Applied versions are recorded in ``howdah_meta.schema_migrations`` with a
checksum; every file runs in its own transaction under an advisory lock, so concurrent installers and
re-runs are safe and idempotent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg

from howdah.errors import HowdahError

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x486F7764  # "Howd": one advisory lock for every migration run

_VERSION_TABLE = """
CREATE SCHEMA IF NOT EXISTS howdah_meta;
CREATE TABLE IF NOT EXISTS howdah_meta.schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (component, version)
);
"""


class MigrationError(HowdahError):
    """A migration could not be applied, or the recorded schema does not match the shipped files."""


class SchemaConflict(MigrationError):
    """The database holds something Howdah must not overwrite (e.g. the pgmq extension)."""


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def refuse_extension_or_foreign_schema(
    conn: psycopg.Connection[Any], *, extension: str, schema: str, what: str
) -> None:
    """Raise :class:`SchemaConflict` when the database has ``extension`` installed, whose schema ``what`` would
    replace, or a schema named ``schema`` that Howdah did not create (a preflight: nothing is changed)."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = %s", (extension,)).fetchone()
    if row is not None:
        raise SchemaConflict(
            f"this database has the {extension} extension (version {row[0]}) installed; {what} would replace it, "
            f"so nothing was changed. Use the extension as it is, or install {what} in another database (or DROP "
            f"EXTENSION {extension} first)."
        )
    row = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone()
    if row is not None and row[0]:
        raise SchemaConflict(
            f"this database already has a schema named {schema} that Howdah did not install; nothing was changed. "
            f"Drop or rename that schema first, or install {what} in another database."
        )


@dataclass(frozen=True)
class Component:
    """A named set of migrations living in ``<package>/sql/migrations``.

    ``preflight`` runs before anything is applied and raises :class:`SchemaConflict` when the database must
    not be touched.
    """

    name: str
    package: str
    preflight: Callable[[psycopg.Connection[Any]], None] | None = field(default=None, compare=False)

    def migrations(self) -> list[Migration]:
        folder = resources.files(self.package).joinpath("sql", "migrations")
        found: list[Migration] = []
        for entry in folder.iterdir():
            match = _FILE.match(entry.name)
            if match:
                found.append(Migration(self.name, int(match[1]), match[2], entry.read_text(encoding="utf-8")))
        found.sort(key=lambda m: m.version)
        versions = [m.version for m in found]
        if len(set(versions)) != len(versions):
            raise MigrationError(f"component {self.name!r} ships two migrations with one version number")
        return found

    def sql(self) -> str:
        """Every migration of this component, in order, as one script (what ``install`` would run)."""
        return "\n".join(f"-- {m.component} {m.version:04d}_{m.name}\n{m.sql}" for m in self.migrations())


@dataclass(frozen=True)
class SchemaState:
    component: str
    applied: list[int]
    pending: list[int]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.pending and not self.problems


def _applied(conn: psycopg.Connection[Any], component: str) -> dict[int, str]:
    exists = conn.execute("SELECT to_regclass('howdah_meta.schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(
        "SELECT version, checksum FROM howdah_meta.schema_migrations WHERE component = %s", (component,)
    ).fetchall()
    return {int(v): str(c) for v, c in rows}


def state(conn: psycopg.Connection[Any], component: Component) -> SchemaState:
    """Compare what the database recorded with the migrations this version of Howdah ships."""
    shipped = component.migrations()
    applied = _applied(conn, component.name)
    problems = [
        f"migration {m.version:04d}_{m.name} was changed after it was applied (checksum differs)"
        for m in shipped
        if m.version in applied and applied[m.version] != m.checksum
    ]
    known = {m.version for m in shipped}
    problems += [
        f"the database has migration {v:04d}, which this Howdah does not know" for v in applied if v not in known
    ]
    pending = [m.version for m in shipped if m.version not in applied]
    return SchemaState(component.name, sorted(applied), pending, problems)


def upgrade(conn: psycopg.Connection[Any], component: Component, *, target: int | None = None) -> list[Migration]:
    """Apply the pending migrations of ``component`` (up to ``target``), each in its own transaction.

    ``conn`` must be in autocommit mode or idle. Returns what was applied; an up-to-date schema applies
    nothing.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise MigrationError("migrations need a connection that is not inside a transaction")
    done: list[Migration] = []
    for migration in component.migrations():
        if target is not None and migration.version > target:
            break
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(_VERSION_TABLE)
            applied = _applied(conn, component.name)
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {component.name} {migration.version:04d}_{migration.name} was changed "
                        "after it was applied; refusing to go on"
                    )
                continue
            if not applied and component.preflight is not None:
                component.preflight(conn)
            try:
                conn.execute(migration.sql.encode())
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration {component.name} {migration.version:04d}_{migration.name} failed: "
                    f"{exc.diag.message_primary or exc}"
                ) from exc
            conn.execute(
                "INSERT INTO howdah_meta.schema_migrations (component, version, name, checksum) "
                "VALUES (%s, %s, %s, %s)",
                (component.name, migration.version, migration.name, migration.checksum),
            )
        done.append(migration)
    return done
