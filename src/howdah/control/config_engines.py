"""Config engines: Postgres settings computed from an instance's cpu, memory and storage (pure, no I/O).

A :class:`ConfigEngine` holds one stack's sizing parameters (the fraction of memory for ``shared_buffers``,
connections per GiB, …); :meth:`ConfigEngine.settings` turns :class:`Resources` into ``postgresql.conf``
values, formatted as Postgres accepts them (``'256MB'``, ``'2560kB'``, ``'100'``).

Sizes are rounded down to a step of at most 1/16 of the value (a power of two between 64kB and 1GB), so they
read well (``'320MB'`` rather than ``'332.8MB'``) and grow monotonically with the instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from howdah.control.spec import InstanceSpec

# Sizes below are in kB, Postgres's base memory unit (1kB = 1024 bytes, as in postgresql.conf).
KB = 1
MB = 1024 * KB
GB = 1024 * MB
TB = 1024 * GB
GIB_BYTES = 1024**3

WAL_SEGMENT = 16 * MB
MIN_SHARED_BUFFERS = 128 * KB  # 16 pages of 8kB
MIN_WORK_MEM = 1 * MB
MIN_MAINTENANCE_WORK_MEM = 16 * MB
MIN_MAX_WAL_SIZE = 4 * WAL_SEGMENT
MIN_MIN_WAL_SIZE = 2 * WAL_SEGMENT
EXTRA_WORKER_PROCESSES = 8  # background workers beyond parallel query: autoprewarm, logical replication, …

# Settings every stack shares: the platform's volumes are SSDs.
SSD_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        "maintenance_io_concurrency": "200",
    }
)

_UNITS = (("TB", TB), ("GB", GB), ("MB", MB))


def format_size(kb: int) -> str:
    """``kb`` in the largest Postgres memory unit that divides it exactly: ``'4GB'``, ``'2560kB'``."""
    for name, size in _UNITS:
        if kb % size == 0 and kb >= size:
            return f"{kb // size}{name}"
    return f"{kb}kB"


def round_size(kb: int) -> int:
    """``kb`` rounded down to a step of at most 1/16 of it: a power of two between 64kB and 1GB."""
    step = 64 * KB
    while step < 1 * GB and step * 2 * 16 <= kb:
        step *= 2
    return kb - kb % step


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _percent(fraction: Fraction) -> str:
    percent = fraction * 100
    return f"{int(percent)}%" if percent.denominator == 1 else f"{float(percent):.2f}%"


@dataclass(frozen=True)
class Resources:
    """What an instance is given: cpu in millicores, memory and storage in bytes."""

    cpu_millicores: int
    memory_bytes: int
    storage_bytes: int

    @classmethod
    def of(cls, spec: InstanceSpec) -> Resources:
        return cls(spec.cpu_millicores, spec.memory_bytes, spec.storage_bytes)

    @property
    def cores(self) -> int:
        """Whole cores, at least 1 (a 0.5-cpu instance still runs one process at a time)."""
        return max(1, self.cpu_millicores // 1000)

    @property
    def memory_kb(self) -> int:
        return self.memory_bytes // 1024

    @property
    def storage_kb(self) -> int:
        return self.storage_bytes // 1024


@dataclass(frozen=True)
class ConfigEngine:
    """The sizing formulas of one stack; every field is a parameter of :meth:`settings`.

    Sizes (``max_*``) are in kB. Worker counts derive from whole cores: ``cores // 2`` clamped to the bounds.
    """

    shared_buffers: Fraction = Fraction(1, 4)
    effective_cache_size: Fraction = Fraction(3, 4)
    connections_per_gib: int = 100
    min_connections: int = 20
    max_connections: int = 400
    work_mem_divisor: int = 3
    max_work_mem: int = 256 * MB
    maintenance_work_mem: Fraction = Fraction(1, 16)
    max_maintenance_work_mem: int = 2 * GB
    # When maintenance_work_mem is a larger share, each autovacuum worker stays at memory/16 (≤ 1GB).
    cap_autovacuum_work_mem: bool = False
    max_wal_size: Fraction = Fraction(1, 10)
    max_max_wal_size: int = 16 * GB
    min_parallel_per_gather: int = 0
    max_parallel_per_gather: int = 2
    min_parallel_maintenance: int = 0
    max_parallel_maintenance: int = 2
    extra: Mapping[str, str] = field(default_factory=dict)

    def connections(self, resources: Resources) -> int:
        per_memory = resources.memory_bytes * self.connections_per_gib // GIB_BYTES
        return _clamp(per_memory - per_memory % 5, self.min_connections, self.max_connections)

    def settings(self, resources: Resources) -> dict[str, str]:
        """The settings this engine computes for ``resources``, by name (values as Postgres accepts them)."""
        memory = resources.memory_kb
        shared_buffers = max(MIN_SHARED_BUFFERS, round_size(int(memory * self.shared_buffers)))
        cache = round_size(int(memory * self.effective_cache_size))
        connections = self.connections(resources)
        work_mem = round_size((memory - shared_buffers) // (connections * self.work_mem_divisor))
        maintenance = round_size(int(memory * self.maintenance_work_mem))
        max_wal = round_size(int(resources.storage_kb * self.max_wal_size))
        max_wal = _clamp(max_wal - max_wal % WAL_SEGMENT, MIN_MAX_WAL_SIZE, self.max_max_wal_size)
        min_wal = max(MIN_MIN_WAL_SIZE, round_size(max_wal // 4) // WAL_SEGMENT * WAL_SEGMENT)
        cores = resources.cores
        half = cores // 2
        values: dict[str, str] = {
            "shared_buffers": format_size(shared_buffers),
            "effective_cache_size": format_size(cache),
            "max_connections": str(connections),
            "work_mem": format_size(_clamp(work_mem, MIN_WORK_MEM, self.max_work_mem)),
            "maintenance_work_mem": format_size(
                _clamp(maintenance, MIN_MAINTENANCE_WORK_MEM, self.max_maintenance_work_mem)
            ),
            "max_wal_size": format_size(max_wal),
            "min_wal_size": format_size(min_wal),
            "max_worker_processes": str(cores + EXTRA_WORKER_PROCESSES),
            "max_parallel_workers": str(cores),
            "max_parallel_workers_per_gather": str(
                _clamp(half, self.min_parallel_per_gather, self.max_parallel_per_gather)
            ),
            "max_parallel_maintenance_workers": str(
                _clamp(half, self.min_parallel_maintenance, self.max_parallel_maintenance)
            ),
        }
        if self.cap_autovacuum_work_mem:
            autovacuum = round_size(memory // 16)
            values["autovacuum_work_mem"] = format_size(_clamp(autovacuum, MIN_MAINTENANCE_WORK_MEM, 1 * GB))
        return {**values, **SSD_SETTINGS, **self.extra}

    def formulas(self) -> dict[str, str]:
        """How each computed setting is derived, in words (for ``GET /api/v1/stacks/{name}``)."""
        formulas = {
            "shared_buffers": f"{_percent(self.shared_buffers)} of memory",
            "effective_cache_size": f"{_percent(self.effective_cache_size)} of memory",
            "max_connections": (
                f"{self.connections_per_gib} per GiB of memory, rounded down to a multiple of 5, "
                f"between {self.min_connections} and {self.max_connections}"
            ),
            "work_mem": (
                f"(memory - shared_buffers) / (max_connections x {self.work_mem_divisor}), "
                f"between {format_size(MIN_WORK_MEM)} and {format_size(self.max_work_mem)}"
            ),
            "maintenance_work_mem": (
                f"{_percent(self.maintenance_work_mem)} of memory, between "
                f"{format_size(MIN_MAINTENANCE_WORK_MEM)} and {format_size(self.max_maintenance_work_mem)}"
            ),
            "max_wal_size": (
                f"{_percent(self.max_wal_size)} of storage, in 16MB segments, between "
                f"{format_size(MIN_MAX_WAL_SIZE)} and {format_size(self.max_max_wal_size)}"
            ),
            "min_wal_size": f"max_wal_size / 4, at least {format_size(MIN_MIN_WAL_SIZE)}",
            "max_worker_processes": f"cores + {EXTRA_WORKER_PROCESSES}",
            "max_parallel_workers": "cores",
            "max_parallel_workers_per_gather": (
                f"cores / 2, between {self.min_parallel_per_gather} and {self.max_parallel_per_gather}"
            ),
            "max_parallel_maintenance_workers": (
                f"cores / 2, between {self.min_parallel_maintenance} and {self.max_parallel_maintenance}"
            ),
        }
        if self.cap_autovacuum_work_mem:
            formulas["autovacuum_work_mem"] = "6.25% of memory, between 16MB and 1GB"
        return formulas
