"""The one exception root of Howdah and the errors every layer shares.

Each layer adds its own named subclasses next to its code; all of them derive from :class:`HowdahError`, so a
caller can catch everything Howdah raises with one ``except``.
"""

from __future__ import annotations


class HowdahError(Exception):
    """Root of every error Howdah raises on purpose."""


class ConfigurationError(HowdahError):
    """A setting (environment variable, option, file) is missing or invalid."""


class DatabaseError(HowdahError):
    """Postgres refused or failed an operation Howdah asked of it."""
