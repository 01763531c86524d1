"""JSON checks shared by the layers (pure)."""

from __future__ import annotations

from typing import Any

_NO_KEY = object()


def non_string_key(value: Any) -> object:
    """The first object key in ``value`` (searched through lists and dicts) that is not a string, else
    :data:`_NO_KEY`. ``json.dumps`` would silently turn it into a string — ``{1: "a", "1": "b"}`` into one key."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    return key
                stack.append(inner)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return _NO_KEY


def has_non_string_key(value: Any) -> tuple[bool, object]:
    key = non_string_key(value)
    return key is not _NO_KEY, key
