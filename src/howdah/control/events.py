"""The messages between the control plane and data planes (pure: building and checking them).

CRUD events go from the control plane to a data plane's queue; state events come back on ``STATE_QUEUE``.
Both carry the instance's ``generation``: a state event for an older generation than the instance's current
one acknowledges work that was superseded, and only updates the observed status.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from howdah.control.failures import Failure

STATE_QUEUE = "control_state_events"

CrudKind = Literal["Create", "Update", "Restart", "Stop", "Start", "Delete", "Backup", "DeleteBackup", "VerifyBackup"]
StateKind = Literal["Created", "Updated", "Restarted", "Stopped", "Started", "Deleted", "Error", "Recovered"]
# not state-machine events: they only fill control.backups, or an instance's last_verified_restore
BackupKind = Literal["BackupCompleted", "BackupFailed", "RestoreVerified"]


def data_plane_queue(data_plane: str) -> str:
    return f"dp_{data_plane.replace('-', '_')}_crud"


class CrudEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    kind: CrudKind
    instance_id: str
    org_id: str
    name: str
    generation: int
    spec: dict[str, Any]
    settings: dict[str, str] = Field(default_factory=dict)
    extensions: list[str] = Field(default_factory=list)
    backup_id: str | None = None  # Backup: the backup to take; DeleteBackup: the one to remove
    # Create: a backup to start from (backup_id, location, instance_id), or a point in time of another instance
    # (source_instance_id, target_time, target_lsn: both None for the latest point archived)
    restore_from: dict[str, Any] | None = None
    sent_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


def retried_event(pending: dict[str, Any], generation: int) -> dict[str, Any]:
    """The CRUD event that runs ``pending`` again as generation ``generation``: a new ``event_id``, because a
    data plane carries out each event id once (the workflow of the first one has finished)."""
    fresh = {key: value for key, value in pending.items() if key not in ("event_id", "sent_at")}
    return CrudEvent.model_validate({**fresh, "generation": generation}).model_dump(mode="json")


class StateEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    instance_id: str
    event: StateKind | BackupKind
    generation: int | None = None
    data_plane: str  # the sender: the reconciler hears a data plane only about its own instances and backups
    actual_spec: dict[str, Any] | None = None
    status: dict[str, Any] = Field(default_factory=dict)
    connection: dict[str, Any] | None = None
    error: str | None = None
    failure: Failure | None = None  # Error: permanent or transient (see howdah.control.failures)
    backup: dict[str, Any] | None = None  # BackupCompleted / BackupFailed: backup_id, location, size_bytes
    verification: dict[str, Any] | None = None  # RestoreVerified: at, ok, seconds, error
