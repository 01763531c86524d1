"""The extension catalog of a data plane: which extensions its Postgres offers and what each needs (pure: no I/O).

A catalog belongs to the data plane that runs the instances: each provider builds its own (the local provider from
the control files of the binaries it runs, the Kubernetes provider declares its image's), its conductor reports it
when it registers, and the control plane validates every change against the catalog of the instance's data plane.

Per extension it says the libraries the extension needs in ``shared_preload_libraries`` (in load order), the
extensions it requires, the schema its control file fixes (``CREATE EXTENSION … SCHEMA`` must not be used for it),
and whether the operator puts its libraries in ``shared_preload_libraries`` itself (CloudNativePG does so for
pg_stat_statements and pgaudit as soon as a setting of theirs is set). The catalog also carries the contexts of the
settings that extensions' libraries define, which ``postgres --describe-config`` cannot show.

What a control file does not say (which library to preload) comes from one table of upstream facts,
:data:`KNOWN_EXTENSIONS`; every catalog is that table merged with what the data plane has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

__all__ = [
    "FALLBACK_CATALOG",
    "KNOWN_EXTENSIONS",
    "SETTING_CONTEXTS",
    "ExtensionCatalog",
    "ExtensionInfo",
    "catalog_from_control_files",
    "declared_catalog",
    "parse_control_file",
]


@dataclass(frozen=True)
class ExtensionInfo:
    """One extension a data plane offers, and what it needs.

    ``preload``: libraries it needs in ``shared_preload_libraries`` before CREATE EXTENSION is useful, in load
    order. ``requires``: the extensions its control file requires (CREATE … CASCADE installs them). ``schema``: the
    schema its control file fixes, or None when it may go into any schema. ``operator_preload``: the data plane's
    operator adds ``preload`` to ``shared_preload_libraries`` itself whenever one of the libraries' settings is set.
    """

    name: str
    version: str | None = None
    preload: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    schema: str | None = None
    relocatable: bool = True
    operator_preload: bool = False

    @property
    def fixed_schema(self) -> bool:
        """Whether its control file fixes its schema (so it is created without ``SCHEMA``)."""
        return self.schema is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "preload": list(self.preload),
            "requires": list(self.requires), "schema": self.schema, "relocatable": self.relocatable,
            "operator_preload": self.operator_preload,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Any) -> ExtensionInfo:
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str) or not data["name"]:
            raise ValueError(f"an extension must be an object with a name, not {data!r:.80}")
        version, schema = data.get("version"), data.get("schema")
        relocatable, managed = data.get("relocatable", True), data.get("operator_preload", False)
        if not (_optional_str(version) and _optional_str(schema)):
            raise ValueError(f"extension {data['name']!r}: version and schema must be strings or null")
        if not (isinstance(relocatable, bool) and isinstance(managed, bool)):
            raise ValueError(f"extension {data['name']!r}: relocatable and operator_preload must be booleans")
        return cls(
            name=data["name"], version=version, preload=_names(data, "preload"), requires=_names(data, "requires"),
            schema=schema, relocatable=relocatable, operator_preload=managed,
        )  # fmt: skip


def _optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _names(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"extension {data['name']!r}: {key} must be a list of names")
    return tuple(value)


# --- upstream facts -------------------------------------------------------------------------------------------
def _table(*entries: ExtensionInfo) -> Mapping[str, ExtensionInfo]:
    return MappingProxyType({entry.name: entry for entry in entries})


#: What Howdah knows of well-known extensions that their control files do not say (the libraries to preload, in
#: load order) or that a declared catalog cannot read (the schema a control file fixes, the requirements). Every
#: catalog merges it with what the data plane reports. Extensions absent from it (vector, pg_trgm, pg_prewarm
#: used without its autoprewarm worker …) need no preloading. ``pg_partman`` maps to its background worker, which
#: runs partition maintenance without an outside scheduler.
KNOWN_EXTENSIONS: Mapping[str, ExtensionInfo] = _table(
    ExtensionInfo("citus", preload=("citus",)),
    ExtensionInfo("earthdistance", requires=("cube",)),
    ExtensionInfo("pg_cron", preload=("pg_cron",), schema="pg_catalog", relocatable=False),
    ExtensionInfo("pg_net", preload=("pg_net",)),
    ExtensionInfo("pg_partman", preload=("pg_partman_bgw",)),
    ExtensionInfo("pg_qualstats", preload=("pg_qualstats",)),
    ExtensionInfo("pg_squeeze", preload=("pg_squeeze",)),
    ExtensionInfo("pg_stat_kcache", preload=("pg_stat_statements", "pg_stat_kcache"), requires=("pg_stat_statements",)),
    ExtensionInfo("pg_stat_monitor", preload=("pg_stat_monitor",)),
    ExtensionInfo("pg_stat_statements", preload=("pg_stat_statements",)),
    ExtensionInfo("pg_tle", preload=("pg_tle",)),
    ExtensionInfo("pg_wait_sampling", preload=("pg_wait_sampling",)),
    ExtensionInfo("pgaudit", preload=("pgaudit",)),
    ExtensionInfo("pglogical", preload=("pglogical",)),
    ExtensionInfo("pgml", preload=("pgml",)),
    ExtensionInfo("plpgsql", schema="pg_catalog", relocatable=False),
    ExtensionInfo("postgis_tiger_geocoder", requires=("postgis", "fuzzystrmatch"), schema="tiger", relocatable=False),
    ExtensionInfo("postgis_topology", requires=("postgis",), schema="topology", relocatable=False),
    ExtensionInfo("timescaledb", preload=("timescaledb",)),
)

_AUTO_EXPLAIN_SETTINGS = (
    "log_analyze", "log_buffers", "log_format", "log_level", "log_min_duration", "log_nested_statements",
    "log_parameter_max_length", "log_settings", "log_timing", "log_triggers", "log_verbose", "log_wal", "sample_rate",
)  # fmt: skip
_PGAUDIT_SETTINGS = (
    "log", "log_catalog", "log_client", "log_level", "log_parameter", "log_parameter_max_size", "log_relation",
    "log_rows", "log_statement", "log_statement_once", "role",
)  # fmt: skip

#: Contexts of settings that preloaded libraries define, which ``--describe-config`` cannot show (the binary
#: loads no library to describe itself). pg_stat_statements and auto_explain as read from a PG 18 server's
#: ``pg_settings``; pg_cron, pgaudit and pg_partman_bgw from their ``DefineCustom*Variable`` calls;
#: timescaledb.max_background_workers from its documentation (it takes effect at server start).
SETTING_CONTEXTS: Mapping[str, str] = MappingProxyType(
    {
        "pg_stat_statements.max": "postmaster",
        "pg_stat_statements.save": "sighup",
        "pg_stat_statements.track": "superuser",
        "pg_stat_statements.track_planning": "superuser",
        "pg_stat_statements.track_utility": "superuser",
        **{f"auto_explain.{name}": "superuser" for name in _AUTO_EXPLAIN_SETTINGS},
        "cron.database_name": "postmaster",
        "cron.host": "postmaster",
        "cron.log_run": "postmaster",
        "cron.log_statement": "postmaster",
        "cron.max_running_jobs": "postmaster",
        "cron.use_background_workers": "postmaster",
        "cron.enable_superuser_jobs": "user",
        "cron.launch_active_jobs": "sighup",
        "cron.log_min_messages": "sighup",
        **{f"pgaudit.{name}": "superuser" for name in _PGAUDIT_SETTINGS},
        **{
            f"pg_partman_bgw.{name}": "sighup"
            for name in ("analyze", "dbname", "interval", "jobmon", "maintenance_wait", "role")
        },
        "timescaledb.max_background_workers": "postmaster",
    }
)


# --- the catalog ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtensionCatalog:
    """The extensions one data plane offers (by name), the contexts of their libraries' settings, and where the
    catalog comes from (``source``, for messages)."""

    extensions: Mapping[str, ExtensionInfo]
    setting_contexts: Mapping[str, str] = field(default_factory=lambda: SETTING_CONTEXTS)
    source: str = ""

    def __contains__(self, name: object) -> bool:
        return name in self.extensions

    def get(self, name: str) -> ExtensionInfo | None:
        return self.extensions.get(name)

    def names(self) -> list[str]:
        return sorted(self.extensions)

    def missing(self, names: Iterable[str]) -> list[str]:
        """The given names (in order) this data plane does not offer."""
        return [name for name in names if name not in self.extensions]

    def fixed_schema(self, name: str) -> bool:
        """Whether ``name``'s control file fixes its schema (unknown extensions: no)."""
        info = self.extensions.get(name)
        return info is not None and info.fixed_schema

    def with_requirements(self, names: Iterable[str]) -> list[str]:
        """``names`` and the extensions they require, each after its requirements (the order in which
        ``CREATE EXTENSION`` without ``CASCADE`` succeeds), each once."""
        ordered: dict[str, None] = {}
        seen: set[str] = set()  # a cycle (no control file should have one) ends where it closes

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            info = self.extensions.get(name)
            for required in info.requires if info is not None else ():
                visit(required)
            ordered[name] = None

        for name in names:
            visit(name)
        return list(ordered)

    def preload(self, names: Iterable[str]) -> tuple[str, ...]:
        """The libraries the extensions ``names`` need preloaded, in load order: an extension's requirements'
        libraries before its own, each library once."""
        infos = (self.extensions.get(name) for name in self.with_requirements(names))
        return tuple(dict.fromkeys(lib for info in infos if info is not None for lib in info.preload))

    def preload_map(self) -> dict[str, tuple[str, ...]]:
        """Extension → the libraries it needs preloaded (requirements' first), for those that need any."""
        return {name: libraries for name in self.extensions if (libraries := self.preload([name]))}

    def operator_preloaded(self, settings: Iterable[str]) -> tuple[str, ...]:
        """The libraries the operator preloads by itself because one of ``settings`` (names) is one of theirs
        (``pg_stat_statements.track`` → ``pg_stat_statements``), in catalog order."""
        prefixes = {name.split(".", 1)[0].lower() for name in settings if "." in name}
        managed = [self.extensions[name] for name in self.names() if self.extensions[name].operator_preload]
        return tuple(dict.fromkeys(lib for info in managed for lib in info.preload if lib in prefixes))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (extensions sorted by name); :meth:`from_json` reads it back."""
        return {
            "source": self.source,
            "extensions": [self.extensions[name].to_json() for name in self.names()],
            "setting_contexts": dict(sorted(self.setting_contexts.items())),
        }

    @classmethod
    def from_json(cls, data: Any) -> ExtensionCatalog:
        """The catalog :meth:`to_json` wrote, or :class:`ValueError` naming what is wrong with ``data``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("extensions"), list):
            raise ValueError("an extension catalog must be an object with a list of extensions")
        contexts = data.get("setting_contexts", {})
        if not isinstance(contexts, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in contexts.items()
        ):
            raise ValueError("setting_contexts must map setting names to contexts")
        source = data.get("source", "")
        if not isinstance(source, str):
            raise ValueError("source must be a string")
        infos = [ExtensionInfo.from_json(item) for item in data["extensions"]]
        return cls(_table(*infos), MappingProxyType(dict(contexts)), source)


#: The facts used where a data plane has reported no catalog (a conductor older than catalogs): Howdah's table of
#: well-known extensions. It is not a list of what the data plane has, so extension names are not checked then.
FALLBACK_CATALOG = ExtensionCatalog(KNOWN_EXTENSIONS, SETTING_CONTEXTS, "Howdah's table of well-known extensions")


def _merged(name: str, found: ExtensionInfo | None = None) -> ExtensionInfo:
    """``found`` (what the data plane says) completed with the known preload libraries of ``name``."""
    known = KNOWN_EXTENSIONS.get(name)
    if found is None:
        return known or ExtensionInfo(name)
    return replace(found, preload=known.preload if known else found.preload)


def declared_catalog(
    names: Iterable[str],
    *,
    operator_preload: Iterable[str] = (),
    setting_contexts: Mapping[str, str] = SETTING_CONTEXTS,
    source: str = "",
) -> ExtensionCatalog:
    """A catalog declared by name (an image whose files cannot be read from here): each extension with what
    :data:`KNOWN_EXTENSIONS` says of it; those in ``operator_preload`` have their libraries preloaded by the
    operator."""
    managed = set(operator_preload)
    infos = [replace(_merged(name), operator_preload=name in managed) for name in dict.fromkeys(names)]
    return ExtensionCatalog(_table(*infos), setting_contexts, source)


def catalog_from_control_files(control_files: Mapping[str, str], *, source: str = "") -> ExtensionCatalog:
    """The catalog of a Postgres installation from its ``share/extension/<name>.control`` files (name → text):
    version, requirements, schema and relocatability from each file, preload libraries from
    :data:`KNOWN_EXTENSIONS`. Secondary control files (``<name>--<version>.control``) are not extensions."""
    infos = []
    for name, text in sorted(control_files.items()):
        if "--" in name:
            continue
        fields = parse_control_file(text)
        relocatable = _control_bool(fields.get("relocatable", "false"))
        found = ExtensionInfo(
            name=name,
            version=fields.get("default_version"),
            requires=tuple(item.strip() for item in fields.get("requires", "").split(",") if item.strip()),
            schema=fields.get("schema") or None,
            relocatable=relocatable,
        )
        infos.append(_merged(name, found))
    return ExtensionCatalog(_table(*infos), SETTING_CONTEXTS, source)


_CONTROL_LINE = re.compile(r"^\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=?\s*(?P<value>.*?)\s*$")


def parse_control_file(text: str) -> dict[str, str]:
    """The ``key = value`` parameters of an extension control file (keys in lower case, quotes removed).

    The syntax of ``postgresql.conf``: ``#`` starts a comment outside quotes, a value is a bare word or a
    single-quoted string in which ``''`` and ``\\'`` stand for a quote. Raises :class:`ValueError` on a line of
    another shape."""
    parameters: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        body = _strip_comment(line)
        if not body.strip():
            continue
        match = _CONTROL_LINE.match(body)
        if match is None:
            raise ValueError(f"line {number} of the control file is not 'name = value': {line[:80]!r}")
        parameters[match["key"].lower()] = _unquote(match["value"], number)
    return parameters


def _strip_comment(line: str) -> str:
    quoted = False
    for index, char in enumerate(line):
        if char == "'" and (index == 0 or line[index - 1] != "\\"):
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:index]
    return line


def _unquote(value: str, number: int) -> str:
    if not value.startswith("'"):
        return value
    if len(value) < 2 or not value.endswith("'"):
        raise ValueError(f"line {number} of the control file has an unterminated quoted value")
    return value[1:-1].replace("''", "'").replace("\\'", "'")


def _control_bool(value: str) -> bool:
    return value.strip().lower() in ("true", "on", "yes", "1", "t", "y")
