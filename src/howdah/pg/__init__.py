"""Postgres plumbing: the embedded server, where to connect, and the migrations runner."""

from howdah.pg._server import EmbeddedPostgres, ServerError, ServerStatus
from howdah.pg._settings import external_database_url, howdah_home
from howdah.pg.migrations import Component, Migration, MigrationError, SchemaConflict, SchemaState

__all__ = [
    "Component",
    "EmbeddedPostgres",
    "Migration",
    "MigrationError",
    "SchemaConflict",
    "SchemaState",
    "ServerError",
    "ServerStatus",
    "database_url",
    "external_database_url",
    "howdah_home",
]


def database_url(*, start: bool = True) -> str:
    """The URL Howdah connects to: ``$HOWDAH_DATABASE_URL``, else the embedded server (started if needed)."""
    url = external_database_url()
    if url:
        return url
    server = EmbeddedPostgres()
    if start:
        server.start()
    return server.url()
