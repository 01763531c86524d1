"""The control plane's schema as a migrations component (schema ``control``; needs ``pgmq``)."""

from __future__ import annotations

from howdah.pg.migrations import Component

COMPONENT = Component(name="control", package="howdah.control")
