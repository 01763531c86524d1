"""The queue's schema as a migrations component (schema ``pgmq``, written by Howdah in plain SQL)."""

from __future__ import annotations

from typing import Any

import psycopg

from howdah.pg.migrations import Component, refuse_extension_or_foreign_schema


def _preflight(conn: psycopg.Connection[Any]) -> None:
    """Refuse to install over the pgmq extension or over a ``pgmq`` schema that Howdah did not create."""
    refuse_extension_or_foreign_schema(conn, extension="pgmq", schema="pgmq", what="Howdah's queue schema")


COMPONENT = Component(name="queue", package="howdah.queue", preflight=_preflight)
