"""The failures of a df node (one place, so the graph walk and the node steps agree)."""

from __future__ import annotations

from howdah.durable import PermanentError, TransientError


class NodeFailed(PermanentError):
    """A node of the graph failed; the instance fails with this message."""


class NodeError(TransientError):
    """An attempt of a SQL or HTTP node failed (the statement's error, a network error, a 5xx answer): tried
    again while the instance's ``max_attempts`` allow, then the node fails with this message."""
