"""Howdah: a Postgres-native control plane.

Layers, each usable on its own: :mod:`howdah.pg` (embedded Postgres, migrations), :mod:`howdah.queue`
(PGMQ-compatible queue and client).
"""

from howdah.errors import ConfigurationError, DatabaseError, HowdahError

__version__ = "0.1.0"

__all__ = ["ConfigurationError", "DatabaseError", "HowdahError", "__version__"]
