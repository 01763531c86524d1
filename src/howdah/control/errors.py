"""Named errors of the control plane; each maps to one HTTP status."""

from __future__ import annotations

from howdah.errors import HowdahError


class ControlError(HowdahError):
    """Root of the control plane's errors."""

    status_code = 400
    code = "bad_request"


class NotFound(ControlError):
    status_code = 404
    code = "not_found"


class Unauthorized(ControlError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ControlError):
    status_code = 403
    code = "forbidden"


class Conflict(ControlError):
    status_code = 409
    code = "conflict"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Invalid(ControlError):
    status_code = 422
    code = "invalid"
