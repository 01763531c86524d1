"""Every Howdah component's migrations, in dependency order, and one call to install them all."""

from __future__ import annotations

from typing import Any

import psycopg

from howdah.control._schema import COMPONENT as CONTROL
from howdah.df import COMPONENT as DF
from howdah.durable import COMPONENT as DURABLE
from howdah.pg.migrations import Component, Migration, upgrade
from howdah.queue import COMPONENT as QUEUE

ALL_COMPONENTS: tuple[Component, ...] = (QUEUE, DURABLE, DF, CONTROL)


def install_all(conn: psycopg.Connection[Any]) -> list[Migration]:
    """Install or upgrade every component (idempotent). ``conn`` must be in autocommit mode."""
    applied: list[Migration] = []
    for component in ALL_COMPONENTS:
        applied += upgrade(conn, component)
    return applied
