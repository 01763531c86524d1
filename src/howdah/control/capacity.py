"""What a data plane can hold, and the check that no instance asks for more (pure, no I/O).

A data plane's capacity is what the whole data plane has (cpu cores, memory and storage bytes), as its conductor
reports it when it registers; ``None`` means unknown, and an unknown dimension is not checked. The check is per
instance: an instance whose servers together ask for more than the whole data plane has can never run there.
Every one of its ``replicas`` is a full server with its own memory, cpu and copy of the data (on the local
provider they all run on the one host), so each counts against the capacity. What other instances already use is
not counted: this refuses the impossible, it does not place or reserve. A data plane also reports the features
its provider offers (``features``: a connection pooler, client address allow lists); a spec that needs one it
lacks is refused the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from howdah.control.errors import Invalid
from howdah.control.spec import FEATURE_ALLOW_LIST, FEATURE_PITR, FEATURE_POOLER, InstanceSpec

_BINARY = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_LACKING = {
    FEATURE_POOLER: "connection_pooler: its provider runs no connection pooler",
    FEATURE_ALLOW_LIST: "ip_allow_list: its provider cannot restrict client addresses (local instances accept "
    "connections on 127.0.0.1 only)",
    FEATURE_PITR: "backup.verify_schedule: its provider archives no WAL, so it cannot verify backups",
}


@dataclass(frozen=True)
class Capacity:
    """A data plane's resources in all: ``cpu`` in cores, ``memory_bytes``, ``storage_bytes`` (None: unknown)."""

    cpu: float | None = None
    memory_bytes: int | None = None
    storage_bytes: int | None = None
    features: frozenset[str] | None = None  # what its provider offers (None: unknown, not checked)


def check_capacity(
    spec: InstanceSpec, capacity: Capacity | None, data_plane: str, *, previous: InstanceSpec | None = None
) -> None:
    """Raise :class:`Invalid` naming every resource of ``spec`` beyond ``capacity`` (the request and the capacity).

    ``previous`` is the stored spec of a change: a resource whose demand the change leaves as it was is not
    checked, so a spec stored before the check existed can still be stopped, configured and fixed."""
    if capacity is None:
        return
    servers = spec.replicas
    problems = []
    if capacity.cpu is not None and _changed(spec, previous, "cpu"):
        demand, has_millicores = _demand(spec, "cpu"), round(capacity.cpu * 1000)
        if demand > has_millicores:
            cores = f"{demand / 1000:g} cores"
            alone = cores if spec.cpu == f"{demand / 1000:g}" else f"{spec.cpu} ({cores})"
            requested = alone if servers == 1 else f"{servers} replicas of {spec.cpu} each = {cores}"
            problems.append(_refusal("cpu", requested, data_plane, f"{has_millicores / 1000:g} cores"))
    for field, has, asked in (
        ("memory", capacity.memory_bytes, spec.memory),
        ("storage", capacity.storage_bytes, spec.storage),
    ):
        if has is None or not _changed(spec, previous, field):
            continue
        demand = _demand(spec, field)
        if demand > has:
            requested = asked if servers == 1 else f"{servers} replicas of {asked} each = {format_bytes(demand)}"
            problems.append(_refusal(field, requested, data_plane, format_bytes(has)))
    if capacity.features is not None:
        before = previous.features() if previous is not None else frozenset()
        for feature in sorted(spec.features() - capacity.features - before):
            problems.append(f"data plane {data_plane!r} cannot provide {_LACKING.get(feature, feature)}")
    if problems:
        raise Invalid("; ".join(problems))


def format_bytes(size: int) -> str:
    """``size`` in the largest binary unit it reaches, as specs write it: ``16Gi``, ``23.54Gi``, ``512Mi``."""
    for unit, step in _BINARY:
        if size >= step:
            return f"{size / step:.2f}".rstrip("0").rstrip(".") + unit
    return f"{size}"


def _demand(spec: InstanceSpec, field: str) -> int:
    each = {"cpu": spec.cpu_millicores, "memory": spec.memory_bytes, "storage": spec.storage_bytes}[field]
    return each * spec.replicas


def _changed(spec: InstanceSpec, previous: InstanceSpec | None, field: str) -> bool:
    return previous is None or _demand(spec, field) != _demand(previous, field)


def _refusal(field: str, requested: str, data_plane: str, has: str) -> str:
    return f"{field}: {requested} is more than data plane {data_plane!r} has ({has})"
