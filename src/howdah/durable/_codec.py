"""JSON in and out of checkpoints, and errors as data (pure)."""

from __future__ import annotations

import json
import traceback
from typing import Any

from howdah._json import has_non_string_key
from howdah.durable._errors import NotSerializable


def check_json(value: Any, what: str) -> Any:
    """``value`` as it comes back from a checkpoint (a strict JSON round trip: tuples become lists, keys must be
    strings), so a first run and its replays see the same thing; NotSerializable when JSON cannot hold it."""
    bad, key = has_non_string_key(value)
    if bad:
        raise NotSerializable(f"{what} is not JSON-serialisable: object key {key!r} is not a string")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise NotSerializable(f"{what} is not JSON-serialisable: {exc}") from exc


def error_to_json(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }
