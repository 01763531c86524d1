"""The queue's schema as a migrations component (schema ``pgmq``, written by Howdah in plain SQL)."""

from __future__ import annotations

from typing import Any

import psycopg

from howdah.pg.migrations import Component, SchemaConflict


def _preflight(conn: psycopg.Connection[Any]) -> None:
    """Refuse to install over the pgmq extension or over a ``pgmq`` schema that Howdah did not create."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmq'").fetchone()
    if row is not None:
        raise SchemaConflict(
            f"this database has the pgmq extension (version {row[0]}) installed; Howdah's queue schema would "
            "replace it, so nothing was changed. Use the extension as it is, or install Howdah's queue in "
            "another database (or DROP EXTENSION pgmq first)."
        )
    row = conn.execute("SELECT to_regnamespace('pgmq') IS NOT NULL").fetchone()
    if row is not None and row[0]:
        raise SchemaConflict(
            "this database already has a schema named pgmq that Howdah did not install; nothing was "
            "changed. Drop or rename that schema first, or install Howdah's queue in another database."
        )


COMPONENT = Component(name="queue", package="howdah.queue", preflight=_preflight)
