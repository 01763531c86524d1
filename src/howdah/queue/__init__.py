"""A PGMQ-compatible message queue in Postgres, with sync and async clients."""

from howdah.queue._schema import COMPONENT

__all__ = ["COMPONENT"]
