"""The durable layer's schema as a migrations component (schema ``howdah``; needs the queue's ``pgmq``)."""

from __future__ import annotations

from howdah.pg.migrations import Component

COMPONENT = Component(name="durable", package="howdah.durable")
