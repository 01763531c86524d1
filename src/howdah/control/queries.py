"""The control plane's SQL: the named queries of ``howdah/control/sql/queries/*.sql``, loaded once."""

from howdah.pg.queries import load_queries

QUERIES = load_queries("howdah.control")
