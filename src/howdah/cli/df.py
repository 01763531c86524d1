"""``howdah df``: pg_durable's SQL API (schema ``df``: install, upgrade, verify, sql) on one's own Postgres.

SQL-defined workflows run on the durable layer and the queue, so the commands install and check those schemas
first; a role with CREATE on the database is enough."""

from __future__ import annotations

import typer

from howdah.cli._schema import add_schema_commands
from howdah.df import COMPONENT
from howdah.durable import COMPONENT as DURABLE
from howdah.queue import COMPONENT as QUEUE

app = typer.Typer(
    help="Install and check the df schema (workflows defined in SQL, as pg_durable's) and the schemas it runs on.",
    no_args_is_help=True,
)
add_schema_commands(app, (QUEUE, DURABLE, COMPONENT))
