"""Settings that are legal but unwise: a memory setting larger than the instance's whole memory. Postgres
accepts ``work_mem = 64GB`` on a 2 GiB server and fails only later (a sort that spills nothing, then the kernel's
out-of-memory killer), so the API accepts it and says so in its answer (``warnings``). ``shared_buffers`` is
not among them: one that does not fit in the instance's memory is refused outright (``stacks.check_setting``),
since Postgres would allocate it all at start. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from howdah.control.settings_check import parse_integer
from howdah.control.spec import parse_quantity

__all__ = ["MEMORY_SETTINGS", "memory_warnings"]

#: The settings checked, with their base unit and its size in bytes (as ``postgres --describe-config`` says).
MEMORY_SETTINGS: Mapping[str, tuple[str, int]] = {
    "work_mem": ("kB", 1024),
    "maintenance_work_mem": ("kB", 1024),
}
WHY = {
    "work_mem": "each sort or hash of each query may use that much",
    "maintenance_work_mem": "each VACUUM, CREATE INDEX or autovacuum worker may use that much",
}


def memory_warnings(spec: Mapping[str, Any]) -> list[str]:
    """One message per memory setting of ``spec``'s ``postgres_configs`` (an instance spec as the API stores
    it) that is larger than its ``memory``; none for values Postgres would refuse (the API refused those)."""
    configs: Mapping[str, str] = spec.get("postgres_configs") or {}
    try:
        memory = parse_quantity(str(spec.get("memory")), "memory")
    except ValueError:
        return []
    found = []
    for name, (unit, unit_bytes) in MEMORY_SETTINGS.items():
        value = configs.get(name)
        amount = parse_integer(value.strip(), unit) if value is not None else None
        if amount is not None and amount * unit_bytes > memory:
            found.append(
                f"{name} = {value} is more than the instance's memory ({spec['memory']}): {WHY[name]}, so the server "
                "may run out of memory; lower it or give the instance more memory"
            )
    return found
