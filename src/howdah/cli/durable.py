"""``howdah durable``: the durable-workflow schema (install, upgrade, verify, sql) on one's own Postgres.

The durable layer runs on the queue, so its commands install and check the queue schema first."""

from __future__ import annotations

import typer

from howdah.cli._schema import add_schema_commands
from howdah.durable import COMPONENT
from howdah.queue import COMPONENT as QUEUE

app = typer.Typer(
    help="Install and check the durable-workflow schema (and the queue schema it runs on).", no_args_is_help=True
)
add_schema_commands(app, (QUEUE, COMPONENT))
