"""The instance spec: what a user asks for, validated strictly (pydantic, no I/O).

Sizes follow Kubernetes quantities, as Tembo's API does: ``cpu`` in cores (``"1"``, ``"0.5"``, ``"500m"``),
``memory`` and ``storage`` as ``"512Mi"``, ``"2Gi"``, ``"10Gi"``. Their parsed values are available as
``cpu_millicores``, ``memory_bytes`` and ``storage_bytes``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import ip_network
from typing import Annotated, Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_EXTENSION_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
_QUANTITY = re.compile(r"^(?P<number>\d+(\.\d+)?)(?P<unit>m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {
    None: 1, "m": 0.001, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip

MIN_MEMORY = 256 * 2**20
MAX_MEMORY = 1024 * 2**30
MIN_STORAGE = 1 * 2**30
MAX_STORAGE = 64 * 2**40
SUPPORTED_PG_VERSIONS = (18,)
_CRON_NAMES = frozenset((
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    "sun", "mon", "tue", "wed", "thu", "fri", "sat",
))  # fmt: skip
_CRON_ITEM = re.compile(r"^(\*|[0-9a-z]+(-[0-9a-z]+)?)(/[0-9]+)?$")


def cron_problem(schedule: str) -> str | None:
    """Why ``schedule`` is not a five-field cron every data plane reads alike (None: it is one): numbers, month
    and weekday names, ``*``, ``,``, ``-`` and ``/`` only (CloudNativePG's parser knows no ``L``, ``W``, ``#`` or
    ``?``), and weekday 7 (Sunday) only on its own, not in a range (0 is Sunday to every parser)."""
    fields = schedule.split()
    if len(fields) != 5 or not croniter.is_valid(schedule):
        return f"{schedule!r} is not a five-field cron expression like '0 3 * * *'"
    for position, field in enumerate(fields):
        for item in field.lower().split(","):
            if not _CRON_ITEM.match(item) or any(w not in _CRON_NAMES for w in re.findall(r"[a-z]+", item)):
                return f"{schedule!r}: {item!r} is not a plain cron item (numbers, names, '*', '-', '/' only)"
            if position == 4 and item != "7" and re.search(r"(?<![0-9])7(?![0-9])", item):
                return f"{schedule!r}: weekday 7 only on its own; write Sunday as 0 in a range"
    return None


# What a spec may need of its data plane's provider beyond running Postgres (data planes report what they have).
FEATURE_POOLER = "connection_pooler"
FEATURE_ALLOW_LIST = "ip_allow_list"
FEATURE_PITR = "pitr"  # continuous WAL archiving and restores from it (what verifying a backup runs)


def parse_quantity(text: str, what: str) -> float:
    """A Kubernetes quantity as a number of base units (cores, bytes); ValueError naming ``what``."""
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{what} must be a quantity like '1', '500m', '512Mi' or '10Gi', not {text!r}")
    return float(match["number"]) * _UNITS[match["unit"]]


def _within(value: str, what: str, low: float, high: float, bounds: str) -> str:
    """``value`` if the quantity it spells lies in [low, high]; otherwise a ValueError naming the bounds."""
    if not low <= parse_quantity(value, what) <= high:
        raise ValueError(f"{what} must be between {bounds}, not {value!r}")
    return value


class Stack(StrEnum):
    standard = "standard"
    oltp = "oltp"
    olap = "olap"
    vectordb = "vectordb"
    messagequeue = "messagequeue"


class Extension(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr = Field(min_length=1, max_length=63)
    enabled: StrictBool = True
    version: str | None = Field(default=None, max_length=32, pattern=r"^[0-9A-Za-z._-]+$")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _EXTENSION_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid extension name")
        return value


class ConnectionPooler(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = False
    pool_mode: Annotated[StrictStr, Field(pattern="^(session|transaction)$")] = "transaction"
    max_client_connections: StrictInt = Field(default=1000, ge=10, le=100_000)
    default_pool_size: StrictInt = Field(default=20, ge=1, le=1000)


class BackupPolicy(BaseModel):
    """Continuous WAL archiving and base backups. ``enabled: false`` turns archiving off: the instance can then be
    restored only to the moment of one of its base backups, never to a point in time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = True
    schedule: StrictStr = Field(default="0 3 * * *", max_length=100, description="cron (UTC) of base backups")
    retention_days: StrictInt = Field(default=7, ge=1, le=3650)
    verify_schedule: StrictStr | None = Field(
        default=None, max_length=100, description="cron (UTC) of restore verifications (none: only on demand)"
    )

    @field_validator("schedule", "verify_schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        problem = None if value is None else cron_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _verified_needs_archiving(self) -> BackupPolicy:
        if self.verify_schedule is not None and not self.enabled:
            raise ValueError("verify_schedule needs enabled: true (a verification restores the archived WAL)")
        return self


class InstanceSpec(BaseModel):
    """The desired shape of one Postgres instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr = Field(min_length=1, max_length=40, description="DNS label: lowercase letters, digits, '-'.")
    stack: Stack = Stack.standard
    pg_version: StrictInt = 18
    cpu: str = "1"
    memory: StrictStr = "1Gi"
    storage: StrictStr = "10Gi"
    replicas: StrictInt = Field(default=1, ge=1, le=5)
    extensions: tuple[Extension, ...] = ()
    postgres_configs: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    ip_allow_list: tuple[StrictStr, ...] = Field(default=(), description="CIDRs, e.g. 10.0.0.0/8 or 2001:db8::/32")
    connection_pooler: ConnectionPooler = ConnectionPooler()
    backup: BackupPolicy = BackupPolicy()

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(
                f"{value!r} is not a DNS label: use lowercase letters, digits and '-', starting with a letter"
            )
        return value

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu_number(cls, value: object) -> object:
        """cpu may be given as a number of cores (1, 0.5) as well as a quantity string ("500m")."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{value:g}"
        if not isinstance(value, str):
            raise ValueError(f"cpu must be a quantity like '1' or '500m', not {type(value).__name__}")
        return value

    @field_validator("ip_allow_list")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for entry in value:
            try:
                out.append(str(ip_network(entry.strip(), strict=True)))
            except ValueError:
                raise ValueError(f"{entry!r} is not a valid IPv4/IPv6 CIDR (e.g. 10.0.0.0/8)") from None
        return tuple(out)

    @field_validator("pg_version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value not in SUPPORTED_PG_VERSIONS:
            raise ValueError(f"Postgres {value} is not available; supported: {list(SUPPORTED_PG_VERSIONS)}")
        return value

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str) -> str:
        return _within(value, "cpu", 0.25, 64, "0.25 and 64 cores")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return _within(value, "memory", MIN_MEMORY, MAX_MEMORY, "256Mi and 1024Gi")

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        return _within(value, "storage", MIN_STORAGE, MAX_STORAGE, "1Gi and 64Ti")

    @field_validator("postgres_configs")
    @classmethod
    def _configs(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 200:
            raise ValueError("at most 200 postgres_configs")
        for name, setting in value.items():
            if not _SETTING_NAME.match(name) or len(name) > 63:
                raise ValueError(f"{name!r} is not a valid Postgres setting name")
            if not isinstance(setting, str) or len(setting) > 1024 or "\x00" in setting or "\n" in setting:
                raise ValueError(f"the value of {name!r} must be a single-line string of at most 1024 characters")
        return value

    @model_validator(mode="after")
    def _unique_extensions(self) -> InstanceSpec:
        names = [e.name for e in self.extensions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"extensions listed twice: {duplicates}")
        if len(self.ip_allow_list) > 100:
            raise ValueError("at most 100 ip_allow_list entries")
        if self.ip_allow_list and self.connection_pooler.enabled:
            raise ValueError(
                "ip_allow_list cannot be combined with connection_pooler: pooled connections reach Postgres from the "
                "pooler's own addresses, which an allow list of client addresses would refuse"
            )
        return self

    def features(self) -> frozenset[str]:
        """What this spec needs of its data plane beyond Postgres itself (:data:`FEATURE_POOLER`, …)."""
        needs = {
            FEATURE_POOLER: self.connection_pooler.enabled, FEATURE_ALLOW_LIST: bool(self.ip_allow_list),
            FEATURE_PITR: self.backup.verify_schedule is not None,
        }  # fmt: skip
        return frozenset(name for name, needed in needs.items() if needed)

    @property
    def cpu_millicores(self) -> int:
        return round(parse_quantity(self.cpu, "cpu") * 1000)

    @property
    def memory_bytes(self) -> int:
        return int(parse_quantity(self.memory, "memory"))

    @property
    def storage_bytes(self) -> int:
        return int(parse_quantity(self.storage, "storage"))

    def enabled_extensions(self) -> list[str]:
        return sorted(e.name for e in self.extensions if e.enabled)

    def patched(self, changes: dict[str, Any]) -> InstanceSpec:
        """A new spec with ``changes`` applied and validated as a whole (name cannot change)."""
        if "name" in changes and changes["name"] != self.name:
            raise ValueError("an instance cannot be renamed")
        spec = InstanceSpec.model_validate({**self.model_dump(mode="json"), **changes})
        if spec.storage_bytes < self.storage_bytes:  # no provider can shrink a volume (Kubernetes refuses to)
            raise ValueError(f"storage can only grow: {spec.storage} is less than the {self.storage} it has")
        return spec
