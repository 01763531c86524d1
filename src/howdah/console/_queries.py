"""The console's read queries: the named queries of ``howdah/console/sql/queries/*.sql``, loaded once."""

from howdah.pg.queries import load_queries

QUERIES = load_queries("howdah.console")
