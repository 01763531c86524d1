"""The create-instance form, free of I/O: form text to the API's request body, and the API's validation errors
back to the field each one concerns."""

from __future__ import annotations

import re
from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError

__all__ = [
    "FIELDS", "by_state", "extension_list", "field_errors", "instance_fields", "int_bounds", "message_field", "names",
    "parse_settings", "settings_text",
]  # fmt: skip

FIELDS = ("name", "stack", "cpu", "memory", "storage", "extensions", "data_plane", "replicas", "ip_allow_list",
          "connection_pooler")  # fmt: skip
GENERAL = "form"  # an error that concerns no one field


def instance_fields(values: dict[str, str]) -> dict[str, Any]:
    """The API body for a create form: extensions are names separated by commas or spaces; empty fields keep
    the API's defaults."""
    body: dict[str, Any] = {name: values[name] for name in ("name", "stack", "cpu", "memory", "storage")
                            if values.get(name)}  # fmt: skip
    body.setdefault("name", "")
    wanted = names(values.get("extensions", ""))
    if wanted:
        body["extensions"] = [{"name": name} for name in wanted]
    if values.get("data_plane"):
        body["data_plane"] = values["data_plane"]
    return body


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Each field's validation messages, in words (an error of the whole body goes under ``form``)."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        location = error.get("loc", ())
        field = str(location[0]) if location and str(location[0]) in FIELDS else GENERAL
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if field == "extensions" and len(location) > 1:
            message = f"extension {int(location[1]) + 1}: {message}"
        elif field == "connection_pooler" and len(location) > 1:
            message = f"{location[1]}: {message}"  # which of the pooler's fields
        errors.setdefault(field, []).append(message)
    return {field: "; ".join(messages) for field, messages in errors.items()}


_MENTIONS = (
    ("ip_allow_list", "ip_allow_list"), ("allow list", "ip_allow_list"), ("connection_pooler", "connection_pooler"),
    ("pooler", "connection_pooler"), ("extension", "extensions"), ("data plane", "data_plane"), ("cpu", "cpu"),
    ("core", "cpu"), ("memory", "memory"), ("storage", "storage"), ("stack", "stack"), ("named", "name"),
    ("name", "name"),
)  # fmt: skip


def message_field(message: str) -> str:
    """The form field a service error speaks of (the first one it mentions), else ``form``."""
    lowered = message.lower()
    found = [(lowered.find(word), field) for word, field in _MENTIONS if word in lowered]
    return min(found)[1] if found else GENERAL


def settings_text(configs: dict[str, str]) -> str:
    """Overridden settings as the form shows them: one ``name = value`` a line, sorted."""
    return "\n".join(f"{name} = {value}" for name, value in sorted(configs.items()))


def parse_settings(text: str) -> dict[str, str]:
    """``name = value`` lines (blank lines and ``#`` comments skipped) as the API's ``postgres_configs``; a line
    without ``=``, without a name or repeating one is a :class:`ValueError` naming its line."""
    configs: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, equals, value = stripped.partition("=")
        name = name.strip()
        if not equals or not name:
            raise ValueError(f"line {number}: write a setting as name = value")
        if name in configs:
            raise ValueError(f"line {number}: {name} is set twice")
        configs[name] = value.strip().strip("'")
    return configs


def names(text: str) -> list[str]:
    """Words separated by commas or spaces (extension names, CIDRs)."""
    return [part for part in re.split(r"[\s,]+", text) if part]


def extension_list(enabled: str, disabled: str) -> list[dict[str, Any]]:
    """The API's ``extensions`` from two lists of names (commas or spaces): enabled, and disabled ones (a stack's
    default extension is turned off by listing it as disabled)."""
    on, off = names(enabled), names(disabled)
    both = sorted(set(on) & set(off))
    if both:
        raise ValueError(f"listed both as enabled and disabled: {', '.join(both)}")
    return [{"name": name} for name in on] + [{"name": name, "enabled": False} for name in off]


def int_bounds(model: type[BaseModel], field: str) -> tuple[int, int]:
    """The least and greatest whole number ``model`` takes in ``field`` (its ``ge`` and ``le``): a number input's
    min and max, so that the form and the API say the same."""
    metadata = model.model_fields[field].metadata
    low = next(m.ge for m in metadata if isinstance(m, annotated_types.Ge) and isinstance(m.ge, int))
    high = next(m.le for m in metadata if isinstance(m, annotated_types.Le) and isinstance(m.le, int))
    return low, high


def by_state(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """How many of ``rows`` are in each state, most first (ties by name): the chart's bars."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))
