"""Which failures are worth retrying, and what the reconciler does after one (pure, I/O-free).

A data plane reports a failed change as an ``Error`` state event whose ``failure`` says what kind it was:

- **permanent**: the same request cannot succeed (a value Postgres rejects, an extension that is not there).
  The instance stays in Error with the data plane's message (Postgres's own) until the user changes something.
- **transient**: the same request may succeed later (a port race, a server still starting, a Kubernetes API
  that does not answer). The reconciler runs it again with exponential backoff, at most
  ``policy.max_attempts`` runs in all, then leaves the instance in Error with the reason.

A report without a classification (from a data plane that predates it) counts as transient: retried, but
never more than the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from howdah.durable import RetryPolicy

__all__ = ["PERMANENT_ERRORS", "ErrorVerdict", "Failure", "after_error", "classify", "unanswered"]

Failure = Literal["permanent", "transient"]

#: The error types (class names, as durable checkpoints record them) that no retry can fix: a provider's
#: permanent error, durable's explicit ``PermanentError``, and a value JSON cannot hold. Every other type is
#: transient, ``TransientProviderError`` first among them; an unexpected type is retried, within the cap.
PERMANENT_ERRORS: frozenset[str] = frozenset({"ProviderError", "PermanentError", "NotSerializable"})


def classify(error_type: str | None) -> Failure:
    """The kind of a failure, from the name of the exception type that caused it."""
    return "permanent" if error_type in PERMANENT_ERRORS else "transient"


@dataclass(frozen=True, slots=True)
class ErrorVerdict:
    """What to record for an instance that just failed: its count of consecutive failed runs, the seconds
    until it is run again (None: not until the user changes something), and its ``last_error``."""

    attempts: int
    retry_in: float | None
    message: str


def after_error(failure: Failure | None, attempts: int, message: str, policy: RetryPolicy) -> ErrorVerdict:
    """The verdict for a failed run, ``attempts`` being the consecutive failed runs before it."""
    attempts += 1
    if failure == "permanent":
        return ErrorVerdict(attempts, None, message)
    if attempts < policy.max_attempts:
        return ErrorVerdict(attempts, policy.delay(attempts), message)
    return ErrorVerdict(attempts, None, f"{message} (a transient failure; gave up after {attempts} attempts)")


def unanswered(resends: int, max_resends: int, kind: str, data_plane: str, ack_timeout: float) -> str | None:
    """Work its data plane has not acknowledged within ``ack_timeout`` seconds of its last send, after
    ``resends`` re-sends: None to send it again (the conductor is idempotent), or, once ``max_resends`` went
    unanswered too, the Error message to give up with (a conductor that is down must not keep an instance busy
    forever)."""
    if resends < max_resends:
        return None
    sends = resends + 1
    return (
        f"data plane {data_plane!r} did not answer the {kind} (sent {sends} times over about "
        f"{sends * ack_timeout:.0f} s): its conductor may be down; send the change again once it runs"
    )
