"""Named errors of the durable-workflow layer."""

from __future__ import annotations

from typing import Any

from howdah.errors import HowdahError


class DurableError(HowdahError):
    """Root of the durable layer's errors."""


class TransientError(DurableError):
    """Raise from a step for a failure worth retrying (timeouts, 5xx, lock conflicts…)."""


class StepTimeout(TransientError):
    """A step attempt ran longer than its ``timeout``: retried by the step's policy like any transient error."""

    def __init__(self, step: str, seconds: float) -> None:
        super().__init__(f"step {step!r} did not finish within its timeout of {seconds:g}s")
        self.step = step
        self.seconds = seconds


class PermanentError(DurableError):
    """Raise from a step for a failure that retrying cannot fix: the workflow fails at once."""


class NotSerializable(DurableError, TypeError):
    """Arguments or a result cannot be stored as JSON."""


class UnknownWorkflow(DurableError, LookupError):
    """No workflow of that name is registered."""


class WorkflowNotFound(DurableError, LookupError):
    """No workflow with that id exists."""


class WorkflowConflict(DurableError):
    """Another workflow with the same key is active (``on_conflict="reject"``): map it to HTTP 409."""

    def __init__(self, message: str, key: str | None = None, active_id: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.active_id = active_id


class WorkflowFinished(DurableError):
    """The workflow has finished, so it takes no more signals."""


class NonDeterminismError(DurableError):
    """A replay reached a different step than the recorded run did at the same position."""


class DuplicateStepName(DurableError):
    """Two steps of one workflow run have the same name."""


class WorkflowFailed(DurableError):
    """``handle.result()`` of a workflow that failed; ``error`` is the stored error."""

    def __init__(self, workflow_id: str, error: dict[str, Any] | None) -> None:
        detail = (error or {}).get("message", "failed")
        kind = (error or {}).get("type", "Error")
        super().__init__(f"workflow {workflow_id!r} failed: {kind}: {detail}")
        self.workflow_id = workflow_id
        self.error = error or {}


class WorkflowCancelled(DurableError):
    """``handle.result()`` of a cancelled workflow."""


class StepFailed(DurableError):
    """A step failed permanently or ran out of attempts; replays raise it again from the checkpoint."""

    def __init__(self, step: str, error: dict[str, Any]) -> None:
        super().__init__(f"step {step!r} failed: {error.get('type', 'Error')}: {error.get('message', '')}")
        self.step = step
        self.error = error
