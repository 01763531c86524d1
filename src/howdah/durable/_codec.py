"""JSON in and out of checkpoints, and errors as data (pure)."""

from __future__ import annotations

import json
import traceback
from typing import Any

from howdah.durable._errors import NotSerializable


def check_json(value: Any, what: str) -> Any:
    """Return ``value`` if it survives a strict JSON round trip unchanged in kind, else raise NotSerializable."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotSerializable(f"{what} is not JSON-serialisable: {exc}") from exc
    return value


def error_to_json(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }
