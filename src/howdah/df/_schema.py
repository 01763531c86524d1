"""The df schema as a migrations component (schema ``df``; needs the durable layer's ``howdah`` and ``pgmq``)."""

from __future__ import annotations

from typing import Any

import psycopg

from howdah.pg.migrations import Component, SchemaConflict


def _preflight(conn: psycopg.Connection[Any]) -> None:
    """Refuse to install over pg_durable's extension or over a ``df`` schema Howdah did not create."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_durable'").fetchone()
    if row is not None:
        raise SchemaConflict(
            f"this database has the pg_durable extension (version {row[0]}) installed; Howdah's df schema would "
            "replace it, so nothing was changed. Use the extension as it is, or DROP EXTENSION pg_durable first."
        )
    row = conn.execute("SELECT to_regnamespace('df') IS NOT NULL").fetchone()
    if row is not None and row[0]:
        raise SchemaConflict(
            "this database already has a schema named df that Howdah did not install; nothing was changed. "
            "Drop or rename that schema first."
        )


COMPONENT = Component(name="df", package="howdah.df", preflight=_preflight)
