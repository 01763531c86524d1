"""Postgres's setting facts for the API, read in a worker thread at start-up, never on the event loop.

The contexts and metadata of Postgres's settings come from its binary (``postgres --describe-config``, see
:mod:`howdah.control.restart`): a subprocess, which a request must not wait for on the event loop. The API's
start-up runs :func:`warm_up`, which reads them for every supported major version in a thread, and its requests
wait for that (without blocking) before they render a spec; :func:`facts` then only looks them up. A version
whose facts cannot be read is remembered with the reason, raised again on each lookup without running the
binary again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from howdah.control import restart
from howdah.control.extensions import ExtensionCatalog
from howdah.control.settings_check import SettingInfo
from howdah.control.spec import SUPPORTED_PG_VERSIONS
from howdah.errors import ConfigurationError

__all__ = ["SettingFacts", "cache_clear", "contexts", "facts", "warm_up"]

log = logging.getLogger("howdah.control")


@dataclass(frozen=True)
class SettingFacts:
    """What a Postgres major version says of its settings: name → context (:func:`restart.setting_contexts`)
    and name → type, unit and range (:func:`restart.setting_metadata`)."""

    contexts: Mapping[str, str]
    metadata: Mapping[str, SettingInfo]


_known: dict[int, SettingFacts | str] = {}  # major version → its facts, or why they cannot be read


def _read(pg_version: int) -> SettingFacts | str:
    """Blocking: runs the binary (``restart`` keeps its output, so only the first read of a version does)."""
    try:
        return SettingFacts(restart.setting_contexts(pg_version), restart.setting_metadata(pg_version))
    except ConfigurationError as exc:
        return str(exc)


async def warm_up(versions: Iterable[int] = SUPPORTED_PG_VERSIONS) -> None:
    """Read the facts of ``versions`` not read yet, in a worker thread."""
    missing = [version for version in versions if version not in _known]
    if not missing:
        return
    read = await asyncio.to_thread(lambda: {version: _read(version) for version in missing})
    for version, found in read.items():
        if isinstance(found, str):
            log.error("the settings of Postgres %s cannot be read; instances of it cannot be created or changed: %s",
                      version, found)  # fmt: skip
    _known.update(read)


def facts(pg_version: int) -> SettingFacts:
    """The facts of Postgres ``pg_version``, or :class:`ConfigurationError` when they cannot be read.

    A version :func:`warm_up` has not read is read here, blocking the caller: the API warms every supported
    version up at start-up and its requests wait for that, so only direct callers of the control plane (tools,
    tests) ever read here."""
    found = _known.get(pg_version)
    if found is None:
        found = _known[pg_version] = _read(pg_version)
    if isinstance(found, str):
        raise ConfigurationError(found)
    return found


def contexts(pg_version: int, catalog: ExtensionCatalog | None) -> Mapping[str, str]:
    """Setting name → context on a data plane with ``catalog`` (see :func:`restart.setting_contexts`): the
    binary's part comes from :func:`facts`, so nothing runs once the version is warm."""
    known = facts(pg_version)
    return known.contexts if catalog is None else restart.setting_contexts(pg_version, catalog)


def cache_clear() -> None:
    """Forget every version's facts (and the binary's output ``restart`` keeps): the next use reads afresh."""
    _known.clear()
    restart.clear_caches()
