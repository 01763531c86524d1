"""The df schema as a migrations component (schema ``df``; needs the durable layer's ``howdah`` and ``pgmq``)."""

from __future__ import annotations

from typing import Any

import psycopg

from howdah.pg.migrations import Component, refuse_extension_or_foreign_schema


def _preflight(conn: psycopg.Connection[Any]) -> None:
    """Refuse to install over pg_durable's extension or over a ``df`` schema that Howdah did not create."""
    refuse_extension_or_foreign_schema(conn, extension="pg_durable", schema="df", what="Howdah's df schema")


COMPONENT = Component(name="df", package="howdah.df", preflight=_preflight)
