"""Stacks: named Postgres flavours (extensions, preloaded libraries, sized settings) and the settings of a spec.

Pure functions, no I/O. :func:`render_settings` turns an :class:`~howdah.control.spec.InstanceSpec` into the
``postgresql.conf`` values a data plane applies: the stack's computed settings, overridden by the user's
``postgres_configs``, with ``shared_preload_libraries`` the union of the stack's libraries, those enabled
extensions need (as the data plane's :class:`~howdah.control.extensions.ExtensionCatalog` says) and the
user's. Settings that would break the platform raise :class:`ForbiddenSetting` naming the setting, values
Postgres itself would refuse (given its setting metadata) raise :class:`InvalidSettingValue`; the API answers
both with a 422.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from howdah.control.config_engines import GB, MB, ConfigEngine, Resources
from howdah.control.extensions import FALLBACK_CATALOG, ExtensionCatalog
from howdah.control.settings_check import SettingInfo, SettingProblem, check_settings, parse_bool, parse_integer
from howdah.control.spec import InstanceSpec, Stack
from howdah.errors import HowdahError

# Reserved beyond superuser_reserved_connections + reserved_connections so the platform and the user can connect.
MIN_USABLE_CONNECTIONS = 10
_DEFAULT_SUPERUSER_RESERVED = 3


class StackError(HowdahError):
    """A stack, extension or setting that the platform cannot provide; the API answers with a 422."""

    status_code = 422
    code = "invalid"


class UnknownStack(StackError, LookupError):
    """No stack has this name; the API answers with a 404."""

    status_code = 404
    code = "not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown stack {name!r}; stacks: {', '.join(STACKS)}")
        self.name = name


class ForbiddenSetting(StackError, ValueError):
    """A postgres_configs entry the platform must control or that would keep Postgres from running."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"setting {setting!r} is not allowed: {reason}")
        self.setting = setting
        self.reason = reason


class InvalidSettingValue(StackError, ValueError):
    """A value Postgres would refuse for its setting (wrong type, unit or enum value, out of range)."""

    def __init__(self, problem: SettingProblem, origin: str = "") -> None:
        super().__init__(f"{problem}{origin}")
        self.setting = problem.name
        self.problem = problem


class UnknownExtension(StackError, ValueError):
    """An extension that the data plane's Postgres does not have."""

    def __init__(self, extension: str, detail: str = "") -> None:
        super().__init__(f"extension {extension!r} is not available{detail}")
        self.extension = extension


class ExtensionConflict(StackError, ValueError):
    """An extension that cannot be installed next to one of the stack's components."""

    def __init__(self, extension: str, reason: str) -> None:
        super().__init__(f"extension {extension!r} cannot be enabled: {reason}")
        self.extension = extension


@dataclass(frozen=True)
class StackDefinition:
    """One stack: what it installs and how it sizes Postgres."""

    name: Stack
    description: str
    extensions: tuple[str, ...]
    shared_preload_libraries: tuple[str, ...]
    engine: ConfigEngine
    # Howdah schemas the data plane installs into the instance (migration components, e.g. "queue").
    install_components: tuple[str, ...] = ()
    conflicting_extensions: Mapping[str, str] = field(default_factory=dict)

    def settings(self, resources: Resources) -> dict[str, str]:
        """The stack's settings for ``resources``, without user overrides or shared_preload_libraries."""
        return self.engine.settings(resources)


STACKS: dict[str, StackDefinition] = {
    stack.name: stack
    for stack in (
        StackDefinition(
            name=Stack.standard,
            description="General-purpose Postgres with query statistics.",
            extensions=("pg_stat_statements",),
            shared_preload_libraries=("pg_stat_statements",),
            engine=ConfigEngine(),
        ),
        StackDefinition(
            name=Stack.oltp,
            description=(
                "Many short transactions: more connections, small work_mem, no JIT, buffer cache warmed after a "
                "restart (pg_prewarm)."
            ),
            extensions=("pg_stat_statements", "pg_trgm", "btree_gin"),
            shared_preload_libraries=("pg_stat_statements", "pg_prewarm"),
            engine=ConfigEngine(
                connections_per_gib=150,
                min_connections=30,
                max_connections=800,
                work_mem_divisor=4,
                extra={"jit": "off"},
            ),
        ),
        StackDefinition(
            name=Stack.olap,
            description=(
                "Analytics: few connections with large work_mem, parallel query sized from the cpu, larger "
                "statistics targets and WAL for bulk loads."
            ),
            extensions=("pg_stat_statements", "tablefunc", "postgres_fdw"),
            shared_preload_libraries=("pg_stat_statements",),
            engine=ConfigEngine(
                connections_per_gib=25,
                max_connections=100,
                work_mem_divisor=2,
                max_work_mem=2 * GB,
                maintenance_work_mem=Fraction(1, 8),
                max_maintenance_work_mem=4 * GB,
                cap_autovacuum_work_mem=True,
                max_max_wal_size=32 * GB,
                min_parallel_per_gather=1,
                max_parallel_per_gather=32,
                min_parallel_maintenance=1,
                max_parallel_maintenance=8,
                extra={"default_statistics_target": "500", "jit": "on"},
            ),
        ),
        StackDefinition(
            name=Stack.vectordb,
            description=(
                "Vector search with pgvector (extension 'vector') and trigram text search; more memory and "
                "parallel workers for index builds."
            ),
            extensions=("pg_stat_statements", "vector", "pg_trgm"),
            shared_preload_libraries=("pg_stat_statements",),
            engine=ConfigEngine(
                maintenance_work_mem=Fraction(1, 8),
                max_maintenance_work_mem=8 * GB,
                cap_autovacuum_work_mem=True,
                min_parallel_maintenance=1,
                max_parallel_maintenance=8,
            ),
        ),
        StackDefinition(
            name=Stack.messagequeue,
            description=(
                "Howdah's PGMQ-compatible queue (schema pgmq, no extension needed) with 30% of memory for "
                "shared_buffers and eager autovacuum for the queue tables' churn."
            ),
            extensions=("pg_stat_statements",),
            shared_preload_libraries=("pg_stat_statements",),
            install_components=("queue",),
            conflicting_extensions={
                "pgmq": "the messagequeue stack installs Howdah's queue in schema pgmq, which the extension also uses"
            },
            engine=ConfigEngine(
                shared_buffers=Fraction(3, 10),
                work_mem_divisor=4,
                max_work_mem=64 * MB,
                extra={
                    "jit": "off",
                    "autovacuum_naptime": "20s",
                    "autovacuum_vacuum_scale_factor": "0.05",
                    "autovacuum_vacuum_insert_scale_factor": "0.05",
                    "autovacuum_vacuum_cost_limit": "2000",
                },
            ),
        ),
    )
}

EXAMPLE_RESOURCES = Resources(cpu_millicores=1000, memory_bytes=1024**3, storage_bytes=10 * 1024**3)


def get_stack(name: str) -> StackDefinition:
    """The stack called ``name`` (case-insensitive; a :class:`Stack` works too), or :class:`UnknownStack`."""
    stack = STACKS.get(name.strip().lower())
    if stack is None:
        raise UnknownStack(str(name))
    return stack


def describe_stack(name: str) -> dict[str, Any]:
    """A JSON-able description of one stack, with its settings for a 1 cpu / 1Gi / 10Gi instance."""
    stack = get_stack(name)
    return {
        "name": stack.name.value,
        "description": stack.description,
        "extensions": list(stack.extensions),
        "shared_preload_libraries": list(stack.shared_preload_libraries),
        "install_components": list(stack.install_components),
        "formulas": {
            **stack.engine.formulas(),
            "rounding": "sizes round down to a step of at most 1/16 of the value (64kB to 1GB); cores are whole, ≥ 1",
        },
        "example": {
            "cpu": "1",
            "memory": "1Gi",
            "storage": "10Gi",
            "settings": {
                **stack.settings(EXAMPLE_RESOURCES),
                "shared_preload_libraries": ",".join(stack.shared_preload_libraries),
            },
        },
    }


def describe_stacks() -> list[dict[str, Any]]:
    """Every stack, as :func:`describe_stack` describes it."""
    return [describe_stack(name) for name in STACKS]


def extensions_to_enable(
    spec: InstanceSpec,
    stack: StackDefinition | None = None,
    catalog: ExtensionCatalog | None = None,
    *,
    data_plane: str | None = None,
) -> list[str]:
    """The extensions to CREATE, in order: the stack's defaults, then the user's enabled ones; minus disabled.

    With a ``catalog`` (the data plane's), every extension to create must be in it (:class:`UnknownExtension`,
    naming ``data_plane``); disabled ones are not checked, so a stack default the data plane lacks can be disabled.
    An extension that conflicts with the stack's components raises :class:`ExtensionConflict`.
    """
    stack = stack or get_stack(spec.stack)
    disabled = {e.name for e in spec.extensions if not e.enabled}
    wanted = [*stack.extensions, *(e.name for e in spec.extensions if e.enabled)]
    result = list(dict.fromkeys(name for name in wanted if name not in disabled))
    for name in result:
        if name in stack.conflicting_extensions:
            raise ExtensionConflict(name, stack.conflicting_extensions[name])
    if catalog is not None:
        defaults = set(stack.extensions)
        where = f" on data plane {data_plane!r}" if data_plane else ""
        for name in catalog.missing(result):
            if name in defaults:
                raise UnknownExtension(
                    name, f" (a default of the {stack.name.value} stack; disable it in the instance's extensions)"
                )
            raise UnknownExtension(name, where + _available_hint(catalog.names()))
    return result


def _available_hint(names: list[str]) -> str:
    shown = ", ".join(names[:60])
    return f"; available: {shown}{', …' if len(names) > 60 else ''}"


def render_settings(
    spec: InstanceSpec,
    catalog: ExtensionCatalog | None = None,
    *,
    data_plane: str | None = None,
    check_extensions: bool = True,
    available_libraries: Iterable[str] | None = None,
    setting_metadata: Mapping[str, SettingInfo] | None = None,
) -> dict[str, str]:
    """The settings to apply to ``spec``'s instance, sorted by name.

    Stack settings computed from cpu/memory/storage, then the user's ``postgres_configs`` (they win), then
    ``shared_preload_libraries``: the stack's, then those enabled extensions need, then the user's, without
    duplicates. ``catalog`` is the extension catalog of the instance's data plane (``data_plane``): every
    extension to create must be in it, and it says which libraries each needs. Without one (a data plane that has
    reported none) names are not checked and the libraries come from
    :data:`~howdah.control.extensions.FALLBACK_CATALOG`; ``check_extensions=False`` uses the catalog's facts
    without checking names (a stored spec, which can always be stopped or deleted).
    Raises :class:`ForbiddenSetting`, :class:`UnknownExtension` or :class:`ExtensionConflict`. With
    ``available_libraries`` (library names installed on the data plane), user-listed libraries must be in it.
    With ``setting_metadata`` (:func:`howdah.control.restart.setting_metadata` of the instance's Postgres), every
    value, the user's and the stack's, must be one Postgres accepts (:class:`InvalidSettingValue`).
    """
    stack = get_stack(spec.stack)
    extensions = extensions_to_enable(spec, stack, catalog if check_extensions else None, data_plane=data_plane)
    facts = catalog or FALLBACK_CATALOG
    configs = spec.postgres_configs
    libraries = None if available_libraries is None else {_library_stem(name) for name in available_libraries}
    for name, value in configs.items():
        if setting_metadata is not None and forbidden_reason(name) is None:
            for problem in check_settings(setting_metadata, {name: value}):
                raise InvalidSettingValue(problem)
        check_setting(name, value, spec, libraries)
    computed = stack.settings(Resources.of(spec))
    if setting_metadata is not None:
        for problem in check_settings(setting_metadata, {k: v for k, v in computed.items() if k not in configs}):
            origin = f" (the {stack.name.value} stack computes it from cpu {spec.cpu}, memory {spec.memory})"
            raise InvalidSettingValue(problem, origin)
    settings = {**computed, **configs}
    _check_connections(settings, configs)
    _check_wal_sizes(settings, configs)
    _check_failover_slots(settings)
    level = settings.get("wal_level", "").strip().lower()
    if level in _WAL_LEVEL_ALIASES:  # Postgres reads them as replica; CloudNativePG refuses them
        settings["wal_level"] = "replica"
    # A stack library that only serves extensions the user disabled is left out with them.
    needed = facts.preload(extensions)
    dropped = set(facts.preload(e.name for e in spec.extensions if not e.enabled)) - set(needed)
    preload = [
        *(lib for lib in stack.shared_preload_libraries if lib not in dropped),
        *needed,
        *split_libraries("shared_preload_libraries", configs.get("shared_preload_libraries", "")),
    ]
    settings["shared_preload_libraries"] = ",".join(dict.fromkeys(preload))
    return dict(sorted(settings.items()))


# --- what users may not set -------------------------------------------------------------------------------

_NETWORK = "the platform manages how clients connect"
_FILES = "the platform manages the server's files, directories and commands"
_ARCHIVE = "the platform manages WAL archiving, backups and recovery"
_REPLICATION = "the platform manages replication"
_LOGGING = "the platform collects the server log"
_CODE = "the platform controls which code the server loads"
# CloudNativePG fixes these (its webhook refuses a Cluster that sets them); they are refused on every provider so
# that a spec means the same wherever it runs.
_FIXED = "the platform fixes it on every provider (CloudNativePG manages it)"

FORBIDDEN_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        "port": _NETWORK,
        "listen_addresses": _NETWORK,
        "data_directory": _FILES,
        "config_file": _FILES,
        "hba_file": _FILES,
        "ident_file": _FILES,
        "external_pid_file": _FILES,
        "krb_server_keyfile": _FILES,
        "cluster_name": "the platform names the cluster",
        "restore_command": _ARCHIVE,
        "recovery_end_command": _ARCHIVE,
        "primary_conninfo": _REPLICATION,
        "primary_slot_name": _REPLICATION,
        "synchronous_standby_names": _REPLICATION,
        "synchronized_standby_slots": _REPLICATION,
        "full_page_writes": "base backups and replicas need full-page writes",
        "allow_alter_system": "the platform applies settings with ALTER SYSTEM",
        "logging_collector": _LOGGING,
        "log_destination": _LOGGING,
        "log_directory": _LOGGING,
        "log_filename": _LOGGING,
        "log_file_mode": _LOGGING,
        "dynamic_library_path": _CODE,
        "extension_control_path": _CODE,
        "jit_provider": _CODE,
        "hot_standby": _FIXED,
        "temp_tablespaces": _FIXED,
        "log_rotation_age": _LOGGING,
        "log_rotation_size": _LOGGING,
        "log_truncate_on_rotation": _LOGGING,
        "restart_after_crash": _FIXED,
        "recovery_min_apply_delay": _REPLICATION,
        "data_sync_retry": _FIXED,
        "allow_system_table_mods": "it lets a superuser rewrite the system catalogs",
        "pg_failover_slots.primary_dsn": _REPLICATION,
        "pg_failover_slots.standby_slot_names": _REPLICATION,
        "bonjour": _NETWORK,
        "bonjour_name": _NETWORK,
        "event_source": _LOGGING,
    }
)
FORBIDDEN_PREFIXES: Mapping[str, str] = MappingProxyType(
    {
        "unix_socket_": _NETWORK,
        "ssl": "the platform manages TLS",
        "archive_": _ARCHIVE,
        "recovery_target": _ARCHIVE,
        "syslog_": _LOGGING,
    }
)
# A setting whose name ends like this names a file, directory or command (extensions' settings included).
_PATH_SUFFIXES = ("_file", "_dir", "_directory", "_directories", "_path", "_command", "keyfile")
_PATH_ALLOWED = frozenset({"search_path"})
_LIBRARY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def forbidden_reason(name: str) -> str | None:
    """Why the platform never lets users set ``name``, or None when it may be set (subject to its value)."""
    if name in FORBIDDEN_SETTINGS:
        return FORBIDDEN_SETTINGS[name]
    for prefix, reason in FORBIDDEN_PREFIXES.items():
        if name.startswith(prefix):
            return reason
    if name not in _PATH_ALLOWED and name.endswith(_PATH_SUFFIXES):
        return _FILES
    return None


def check_setting(name: str, value: str, spec: InstanceSpec, available_libraries: set[str] | None = None) -> None:
    """Raise :class:`ForbiddenSetting` when ``name = value`` would break the platform for ``spec``."""
    reason = forbidden_reason(name)
    if reason is not None:
        raise ForbiddenSetting(name, reason)
    replicas = spec.replicas
    if name == "wal_level":
        level = value.strip().lower()
        if level == "minimal":
            raise ForbiddenSetting(name, "'minimal' cannot stream WAL to replicas or base backups; use replica")
        if level not in ("replica", "logical", *_WAL_LEVEL_ALIASES):
            raise ForbiddenSetting(name, f"{value!r} is not a wal_level; use replica or logical")
    elif name in ("max_wal_senders", "max_replication_slots"):
        number = parse_integer(value)
        if number is None or number < replicas:
            raise ForbiddenSetting(name, f"{value!r} must be an integer of at least {replicas} (the replica count)")
    elif name == "wal_log_hints":
        enabled = parse_bool(value)
        if enabled is None:
            raise ForbiddenSetting(name, f"{value!r} is not a boolean")
        if not enabled and replicas > 1:
            raise ForbiddenSetting(name, f"a failed primary rejoins as a replica only with it on ({replicas} replicas)")
    elif name == "shared_buffers":
        pages = parse_integer(value, "8kB")  # read as Postgres reads it: 8kB pages, or a size with a unit
        if pages is None or pages < 0:
            raise ForbiddenSetting(name, f"{value!r} is not a size like '256MB'")
        if pages * 8192 >= spec.memory_bytes:
            raise ForbiddenSetting(name, f"{value} does not fit in the instance's memory ({spec.memory})")
    elif name.endswith("_libraries"):
        for library in split_libraries(name, value):
            if available_libraries is not None and _library_stem(library) not in available_libraries:
                raise ForbiddenSetting(name, f"library {library!r} is not installed on the data plane")


_WAL_LEVEL_ALIASES = ("archive", "hot_standby")


def _check_wal_sizes(settings: Mapping[str, str], configs: Mapping[str, str]) -> None:
    """min_wal_size must stay below max_wal_size, whichever of them the user set (the stack computes the other)."""
    low, high = (parse_integer(settings.get(name, ""), "MB") for name in ("min_wal_size", "max_wal_size"))
    if low is None or high is None or low < high:
        return  # a value that is no size is reported by its own check
    blamed = "min_wal_size" if "min_wal_size" in configs else "max_wal_size"
    raise ForbiddenSetting(
        blamed,
        f"min_wal_size ({settings['min_wal_size']}) must be below max_wal_size ({settings['max_wal_size']}); "
        "set both, or leave both to the stack",
    )


def _check_failover_slots(settings: Mapping[str, str]) -> None:
    """pg_failover_slots only works with hot_standby_feedback on (CloudNativePG refuses it otherwise)."""
    used = sorted(name for name in settings if name.startswith("pg_failover_slots."))
    if used and not parse_bool(settings.get("hot_standby_feedback", "")):
        raise ForbiddenSetting(used[0], "pg_failover_slots needs hot_standby_feedback = on; set both")


def _check_connections(settings: Mapping[str, str], configs: Mapping[str, str]) -> None:
    """max_connections must leave MIN_USABLE_CONNECTIONS beyond the reserved slots (Postgres refuses fewer)."""
    values: dict[str, int] = {}
    for name, default in (
        ("max_connections", None),
        ("superuser_reserved_connections", _DEFAULT_SUPERUSER_RESERVED),
        ("reserved_connections", 0),
    ):
        text = settings.get(name)
        number = default if text is None else parse_integer(text)
        if number is None or number < 0:
            raise ForbiddenSetting(name, f"{text!r} is not a non-negative integer")
        values[name] = number
    reserved = values["superuser_reserved_connections"] + values["reserved_connections"]
    if values["max_connections"] < reserved + MIN_USABLE_CONNECTIONS:
        blamed = next(
            (name for name in ("max_connections", "superuser_reserved_connections") if name in configs),
            "reserved_connections" if "reserved_connections" in configs else "max_connections",
        )
        raise ForbiddenSetting(
            blamed,
            f"max_connections ({values['max_connections']}) must exceed the reserved connections ({reserved}) "
            f"by at least {MIN_USABLE_CONNECTIONS}",
        )


# --- parsing values as Postgres does ------------------------------------------------------------------------


def split_libraries(setting: str, value: str) -> list[str]:
    """The library names in a ``*_libraries`` list; plain names only (no paths), else :class:`ForbiddenSetting`."""
    if not value.strip():
        return []
    names = []
    for item in value.split(","):
        name = item.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        if not _LIBRARY_NAME.match(name):
            raise ForbiddenSetting(
                setting, f"{name!r} is not a plain library name (like pg_stat_statements; no paths, no empty items)"
            )
        names.append(name)
    return names


def _library_stem(name: str) -> str:
    return name.removesuffix(".so")


__all__ = [
    "EXAMPLE_RESOURCES",
    "FORBIDDEN_PREFIXES",
    "FORBIDDEN_SETTINGS",
    "MIN_USABLE_CONNECTIONS",
    "STACKS",
    "ExtensionConflict",
    "ForbiddenSetting",
    "InvalidSettingValue",
    "StackDefinition",
    "StackError",
    "UnknownExtension",
    "UnknownStack",
    "check_setting",
    "describe_stack",
    "describe_stacks",
    "extensions_to_enable",
    "forbidden_reason",
    "get_stack",
    "render_settings",
    "split_libraries",
]
