"""Every command that prints data takes ``-o/--output``: a new command that prints data and forgets it fails here."""

from __future__ import annotations

from typing import Any

import typer.main

from howdah.cli import app

# Commands that print no data (messages and progress go to stderr), or print what is not a record.
NO_DATA = {
    "api": "runs the API until stopped",
    "apply": "prints a plan for people; its effect is the instances, read with instance list -o json",
    "conductor": "runs a conductor until stopped",
    "db start": "starts Postgres",
    "db stop": "stops Postgres",
    "db url": "prints one URL, already a script's value",
    "down": "stops the platform",
    "instance connect": "runs psql, or prints one URI with --print",
    "login": "saves a profile",
    "logout": "removes a profile",
    "queue create": "creates a queue",
    "queue drop": "drops a queue",
    "queue install": "installs a schema",
    "queue upgrade": "upgrades a schema",
    "queue maintain": "maintains partitions",
    "queue sql": "prints SQL",
    "queue tail": "prints each message as one line of JSON already",
    "durable install": "installs a schema",
    "durable upgrade": "upgrades a schema",
    "durable sql": "prints SQL",
    "df install": "installs a schema",
    "df upgrade": "upgrades a schema",
    "df sql": "prints SQL",
    "token revoke": "revokes a token",
    "up": "runs the platform until stopped",
    "worker": "runs a worker until stopped",
    "workflow cancel": "asks for a cancel",
    "workflow retry": "asks for a retry",
    "workflow signal": "sends a signal",
}


def _leaves(group: Any, prefix: str = "") -> dict[str, Any]:
    """The commands under ``group`` (a click group, as Typer builds it) by their full path."""
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):
            found |= _leaves(command, f"{path} ")
        else:
            found[path] = command
    return found


def test_every_command_printing_data_takes_output() -> None:
    leaves = _leaves(typer.main.get_command(app))
    assert set(NO_DATA) <= set(leaves), set(NO_DATA) - set(leaves)  # the list names real commands
    without = {
        path
        for path, command in leaves.items()
        if not any("--output" in getattr(p, "opts", []) for p in command.params)
    }
    assert without == set(NO_DATA)
