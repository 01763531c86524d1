"""Where Howdah keeps its files and which database it talks to (environment-driven, no I/O beyond reads)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_DATABASE_URL = "HOWDAH_DATABASE_URL"
ENV_HOME = "HOWDAH_HOME"
ENV_PG_PORT = "HOWDAH_PG_PORT"

# When Howdah runs as root, Postgres runs as this unprivileged OS user (Postgres refuses to run as root).
SERVER_OS_USER = "howdah"


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def howdah_home() -> Path:
    """The per-user data folder: ``$HOWDAH_HOME``, else the platform's user data dir.

    As root the default is ``/var/lib/howdah`` so that the unprivileged server user can reach it.
    """
    explicit = os.environ.get(ENV_HOME)
    if explicit:
        return Path(explicit).expanduser().resolve()
    if is_root():
        return Path("/var/lib/howdah")
    return Path(platformdirs.user_data_dir("howdah", appauthor=False))


def external_database_url() -> str | None:
    """``$HOWDAH_DATABASE_URL`` when set: Howdah then uses that server and starts no embedded one."""
    url = os.environ.get(ENV_DATABASE_URL, "").strip()
    return url or None
