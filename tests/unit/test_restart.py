"""restart_reasons and its helpers: one case per rule, the parser on a sample, and the real PG 18 binary."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from ipaddress import ip_network
from typing import Any

import pytest

from howdah.control import restart
from howdah.control.extensions import (
    FALLBACK_CATALOG,
    KNOWN_EXTENSIONS,
    SETTING_CONTEXTS,
    ExtensionCatalog,
    ExtensionInfo,
    declared_catalog,
)
from howdah.control.restart import (
    KNOWN_CONTEXTS,
    parse_describe_config,
    parse_library_list,
    preload_libraries,
    restart_reason,
    restart_reasons,
    setting_contexts,
    unknown_settings,
)
from howdah.control.spec import Extension, InstanceSpec
from howdah.errors import ConfigurationError

CONTEXTS: Mapping[str, str] = {
    "shared_buffers": "postmaster",
    "max_connections": "postmaster",
    "shared_preload_libraries": "postmaster",
    "work_mem": "user",
    "checkpoint_timeout": "sighup",
    "log_min_duration_statement": "superuser",
    "log_connections": "superuser-backend",
    "pg_stat_statements.max": "postmaster",
    "pg_stat_statements.track": "superuser",
}
BASE = InstanceSpec(name="db", cpu="1", memory="1Gi", storage="10Gi")


def spec(**changes: Any) -> InstanceSpec:
    return BASE.model_copy(update=changes)  # no validation: lets a test build a pg_version the spec refuses


def ext(name: str, enabled: bool = True, version: str | None = None) -> Extension:
    return Extension(name=name, enabled=enabled, version=version)


def reasons(actual: InstanceSpec, desired: InstanceSpec) -> list[str]:
    return restart_reasons(desired, actual, desired.postgres_configs, actual.postgres_configs, CONTEXTS)


# ------------------------------------------------------------------------------------------------ the rules
CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    # id, actual changes, desired changes, expected reasons
    ("nothing changes", {}, {}, []),
    ("pg_version", {"pg_version": 17}, {}, ["pg_version changes from 17 to 18"]),
    ("more cpu", {}, {"cpu": "2"}, ["cpu changes from 1 to 2"]),
    ("less cpu", {"cpu": "2"}, {"cpu": "500m"}, ["cpu changes from 2 to 500m"]),
    ("same cpu spelled in millicores", {}, {"cpu": "1000m"}, []),
    ("more memory", {}, {"memory": "2Gi"}, ["memory changes from 1Gi to 2Gi"]),
    ("same memory spelled in Mi", {}, {"memory": "1024Mi"}, []),
    ("storage grows", {}, {"storage": "100Gi"}, []),
    ("replicas", {}, {"replicas": 3}, []),
    ("ip_allow_list", {}, {"ip_allow_list": (ip_network("10.0.0.0/8"),)}, []),
    ("connection pooler", {}, {"connection_pooler": {"enabled": True}}, []),
    ("stack alone", {}, {"stack": "oltp"}, []),
    ("extension without a library", {}, {"extensions": (ext("vector"), ext("pg_trgm"))}, []),
    (
        "extension that needs preloading",
        {},
        {"extensions": (ext("pg_cron"),)},
        ["shared_preload_libraries gains pg_cron (extension pg_cron needs it)"],
    ),
    (
        "pg_partman needs its background worker",
        {},
        {"extensions": (ext("pg_partman"),)},
        ["shared_preload_libraries gains pg_partman_bgw (extension pg_partman needs it)"],
    ),
    (
        "extension listed but disabled needs nothing",
        {},
        {"extensions": (ext("pg_cron", enabled=False),)},
        [],
    ),
    (
        "disabling a preloaded extension",
        {"extensions": (ext("pgaudit"),)},
        {"extensions": (ext("pgaudit", enabled=False),)},
        ["shared_preload_libraries loses pgaudit"],
    ),
    (
        "removing a preloaded extension",
        {"extensions": (ext("timescaledb"),)},
        {},
        ["shared_preload_libraries loses timescaledb"],
    ),
    (
        "extension version alone",
        {"extensions": (ext("pg_cron", version="1.5"),)},
        {"extensions": (ext("pg_cron", version="1.6"),)},
        [],
    ),
    (
        "extension whose library is already listed",
        {"postgres_configs": {"shared_preload_libraries": "pg_stat_statements"}},
        {
            "postgres_configs": {"shared_preload_libraries": "pg_stat_statements"},
            "extensions": (ext("pg_stat_statements"),),
        },
        [],
    ),
    (
        "library list spelled differently",
        {"postgres_configs": {"shared_preload_libraries": "pg_stat_statements,auto_explain"}},
        {"postgres_configs": {"shared_preload_libraries": ' "pg_stat_statements" , auto_explain,'}},
        [],
    ),
    (
        "library added by hand",
        {},
        {"postgres_configs": {"shared_preload_libraries": "auto_explain"}},
        ["shared_preload_libraries gains auto_explain"],
    ),
    (
        "library order",
        {"postgres_configs": {"shared_preload_libraries": "a,b"}},
        {"postgres_configs": {"shared_preload_libraries": "b,a"}},
        ["shared_preload_libraries changes order from a, b to b, a"],
    ),
    ("user setting", {}, {"postgres_configs": {"work_mem": "64MB"}}, []),
    ("sighup setting", {}, {"postgres_configs": {"checkpoint_timeout": "10min"}}, []),
    ("superuser setting", {}, {"postgres_configs": {"log_min_duration_statement": "1s"}}, []),
    ("superuser-backend setting", {}, {"postgres_configs": {"log_connections": "on"}}, []),
    (
        "postmaster setting changes",
        {"postgres_configs": {"shared_buffers": "128MB"}},
        {"postgres_configs": {"shared_buffers": "256MB"}},
        ["shared_buffers has context postmaster"],
    ),
    (
        "postmaster setting set",
        {},
        {"postgres_configs": {"max_connections": "200"}},
        ["max_connections has context postmaster"],
    ),
    (
        "postmaster setting removed",
        {"postgres_configs": {"max_connections": "200"}},
        {},
        ["max_connections has context postmaster"],
    ),
    (
        "postmaster setting unchanged beside a user one",
        {"postgres_configs": {"shared_buffers": "128MB", "work_mem": "4MB"}},
        {"postgres_configs": {"shared_buffers": "128MB", "work_mem": "8MB"}},
        [],
    ),
    (
        "a library's postmaster setting",
        {},
        {"postgres_configs": {"pg_stat_statements.max": "10000"}},
        ["pg_stat_statements.max has context postmaster"],
    ),
    ("a library's superuser setting", {}, {"postgres_configs": {"pg_stat_statements.track": "all"}}, []),
    (
        "a setting of unknown context",
        {},
        {"postgres_configs": {"cron.timezone": "UTC"}},
        ["cron.timezone has no known context (only a restart is sure to apply it)"],
    ),
    (
        "several reasons at once",
        {},
        {
            "cpu": "4",
            "memory": "8Gi",
            "extensions": (ext("pg_stat_statements"),),
            "postgres_configs": {"shared_buffers": "2GB"},
        },
        [
            "cpu changes from 1 to 4",
            "memory changes from 1Gi to 8Gi",
            "shared_preload_libraries gains pg_stat_statements (extension pg_stat_statements needs it)",
            "shared_buffers has context postmaster",
        ],
    ),
]


@pytest.mark.parametrize(("actual", "desired", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rules(actual: dict[str, Any], desired: dict[str, Any], expected: list[str]) -> None:
    before, after = spec(**actual), spec(**desired)
    assert reasons(before, after) == expected
    args = (after, before, after.postgres_configs, before.postgres_configs, CONTEXTS)
    assert bool(restart_reasons(*args)) is bool(expected)
    assert restart_reason(*args) == ("; ".join(expected) or None)


def test_nothing_running_means_nothing_restarts() -> None:
    desired = spec(cpu="4", extensions=(ext("pg_cron"),), postgres_configs={"shared_buffers": "1GB"})
    assert not restart_reasons(desired, None, desired.postgres_configs, {}, CONTEXTS)
    assert restart_reason(desired, None, desired.postgres_configs, {}, CONTEXTS) is None


def test_the_effective_settings_decide_not_the_spec_alone() -> None:
    # Same postgres_configs, but the stack computed another shared_buffers from the new size.
    assert restart_reasons(BASE, BASE, {"shared_buffers": "256MB"}, {"shared_buffers": "128MB"}, CONTEXTS)
    assert not restart_reasons(BASE, BASE, {"work_mem": "8MB"}, {"work_mem": "4MB"}, CONTEXTS)
    # A stack that lists the libraries itself.
    assert (
        restart_reason(BASE, BASE, {"shared_preload_libraries": "pg_stat_statements"}, {}, CONTEXTS)
        == "shared_preload_libraries gains pg_stat_statements"
    )


def test_names_are_case_insensitive_and_values_stripped() -> None:
    assert not restart_reasons(BASE, BASE, {"Shared_Buffers": "128MB "}, {"shared_buffers": "128MB"}, CONTEXTS)
    assert restart_reasons(BASE, BASE, {"SHARED_BUFFERS": "256MB"}, {"shared_buffers": "128MB"}, CONTEXTS)


# ---------------------------------------------------------------------------------------- preload libraries
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("pg_stat_statements", ["pg_stat_statements"]),
        ("a, b ,c", ["a", "b", "c"]),
        ('"a",b', ["a", "b"]),
        ("a,,a, ,b", ["a", "b"]),
        ('""', []),
    ],
)
def test_parse_library_list(text: str, expected: list[str]) -> None:
    assert parse_library_list(text) == expected


def test_preload_libraries_lists_first_then_what_extensions_need() -> None:
    s = spec(
        extensions=(ext("vector"), ext("pg_stat_kcache"), ext("pg_cron"), ext("pgaudit", enabled=False)),
        postgres_configs={"shared_preload_libraries": "auto_explain, pg_stat_statements"},
    )
    assert preload_libraries(s) == ("auto_explain", "pg_stat_statements", "pg_cron", "pg_stat_kcache")
    assert preload_libraries(s, {}) == ("pg_cron", "pg_stat_statements", "pg_stat_kcache")


def test_preload_facts_without_a_catalog() -> None:
    preload = FALLBACK_CATALOG.preload_map()
    assert "vector" not in preload
    assert preload["pg_stat_statements"] == ("pg_stat_statements",)
    assert preload["pg_cron"] == ("pg_cron",)
    assert preload["timescaledb"] == ("timescaledb",)
    assert preload["pgaudit"] == ("pgaudit",)
    assert preload["pg_partman"] == ("pg_partman_bgw",)
    assert all(libraries and all(libraries) for libraries in preload.values())
    with pytest.raises(TypeError):
        KNOWN_EXTENSIONS["x"] = ExtensionInfo("x")  # type: ignore[index]


def test_the_data_planes_catalog_decides_what_needs_a_restart() -> None:
    # a data plane whose pg_cron build needs no preloading: enabling it restarts nothing there
    catalog = ExtensionCatalog({"pg_cron": ExtensionInfo("pg_cron")})
    cron = spec(extensions=(ext("pg_cron"),))
    assert restart_reasons(cron, BASE, {}, {}, CONTEXTS, catalog) == []
    assert restart_reasons(cron, BASE, {}, {}, CONTEXTS) == [
        "shared_preload_libraries gains pg_cron (extension pg_cron needs it)"
    ]


def test_libraries_the_operator_preloads_for_their_settings_count() -> None:
    # CloudNativePG preloads pg_stat_statements as soon as one of its settings is set, enabled or not
    catalog = declared_catalog(["pg_stat_statements", "pgaudit"], operator_preload=["pg_stat_statements"])
    tracked = {"pg_stat_statements.track": "all"}
    assert preload_libraries(BASE, tracked, catalog) == ("pg_stat_statements",)
    assert preload_libraries(BASE, {"pgaudit.log": "all"}, catalog) == ()
    assert preload_libraries(BASE, tracked) == ()  # the local data plane's Postgres has no such operator
    assert restart_reason(BASE, BASE, tracked, {}, CONTEXTS, catalog) == (
        "shared_preload_libraries gains pg_stat_statements"
    )


# ------------------------------------------------------------------------------------ describe-config parser
SAMPLE = (
    "allow_alter_system\tsighup\tVersion and Platform Compatibility / Other Platforms and Clients\tBOOLEAN\tFALSE"
    "\t\t\tAllows running the ALTER SYSTEM command.\tCan be set to off for environments where global "
    "configuration changes should be made using a different method.\n"
    "max_connections\tpostmaster\tConnections and Authentication / Connection Settings\tINTEGER\t0\t1\t262143"
    "\tSets the maximum number of concurrent connections.\t\n"
    "\n"
    "work_mem\tuser\tResource Usage / Memory\tINTEGER\t0\t64\t2147483647\tSets the maximum memory to be used "
    "for query workspaces.\tThis much memory can be used by each internal sort operation.\n"
    "DateStyle\tuser\tClient Connection Defaults / Locale and Formatting\tSTRING\t\t\t\tSets the display format."
    "\t\n"
    "log_connections\tsuperuser-backend\tReporting and Logging / What to Log\tSTRING\t\t\t\tLogs connections.\t\n"
    "log_min_duration_statement\tsuperuser\tReporting and Logging / When to Log\tINTEGER\t0\t-1\t2147483647"
    "\tSets the minimum execution time.\t\n"
)


def test_parse_describe_config() -> None:
    assert parse_describe_config(SAMPLE) == {
        "allow_alter_system": "sighup",
        "max_connections": "postmaster",
        "work_mem": "user",
        "datestyle": "user",
        "log_connections": "superuser-backend",
        "log_min_duration_statement": "superuser",
    }
    assert parse_describe_config("") == {}


@pytest.mark.parametrize(
    "bad",
    ["just some words", "work_mem\tsometimes\tgroup", "\tuser\tgroup", "work_mem"],
    ids=["no tabs", "unknown context", "no name", "name only"],
)
def test_parse_describe_config_refuses_other_shapes(bad: str) -> None:
    with pytest.raises(ValueError, match="line 2 of --describe-config"):
        parse_describe_config("work_mem\tuser\tx\n" + bad)


# ----------------------------------------------------------------------------------------- unknown settings
def test_unknown_settings() -> None:
    names = ["work_mem", "shared_bufers", "WORK_MEM", "pg_stat_statements.track", "pg_stat_statements.newer_one",
             "myapp.tenant", "cron", "Sharde"]  # fmt: skip
    assert unknown_settings(names, CONTEXTS) == ["shared_bufers", "myapp.tenant", "cron", "Sharde"]
    assert unknown_settings([], CONTEXTS) == []


# -------------------------------------------------------------------------------- the embedded Postgres 18
@pytest.fixture(scope="module")
def pg18() -> Mapping[str, str]:
    return setting_contexts(18)


@pytest.mark.parametrize(
    ("name", "context"),
    [
        ("shared_buffers", "postmaster"),
        ("max_connections", "postmaster"),
        ("shared_preload_libraries", "postmaster"),
        ("wal_level", "postmaster"),
        ("port", "postmaster"),
        ("work_mem", "user"),
        ("maintenance_work_mem", "user"),
        ("effective_cache_size", "user"),
        ("checkpoint_timeout", "sighup"),
        ("max_wal_size", "sighup"),
        ("log_min_duration_statement", "superuser"),
        ("pg_stat_statements.max", "postmaster"),
        ("cron.database_name", "postmaster"),
    ],
)
def test_real_contexts(pg18: Mapping[str, str], name: str, context: str) -> None:
    assert pg18[name] == context


def test_real_contexts_are_complete_and_read_only(pg18: Mapping[str, str]) -> None:
    described = {name for name in pg18 if name not in SETTING_CONTEXTS}
    assert len(described) > 300
    assert not any("." in name for name in described)  # the binary describes no library's settings
    assert set(pg18.values()) <= KNOWN_CONTEXTS
    assert set(SETTING_CONTEXTS.values()) <= KNOWN_CONTEXTS
    assert all(name == name.lower() for name in pg18)
    with pytest.raises(TypeError):
        pg18["work_mem"] = "postmaster"  # type: ignore[index]


def test_real_unknown_settings(pg18: Mapping[str, str]) -> None:
    # Settings --describe-config leaves out cannot be configured on an instance: internal ones, developer ones.
    names = ["work_mem", "shared_bufers", "server_version", "block_size", "zero_damaged_pages", "pgaudit.log"]
    assert unknown_settings(names, pg18) == ["shared_bufers", "server_version", "block_size", "zero_damaged_pages"]


def test_real_decisions(pg18: Mapping[str, str]) -> None:
    assert not restart_reasons(BASE, BASE, {"work_mem": "64MB"}, {}, pg18)
    assert restart_reason(BASE, BASE, {"shared_buffers": "1GB"}, {}, pg18) == "shared_buffers has context postmaster"
    assert restart_reasons(BASE, BASE, {"max_connections": "500"}, {"max_connections": "100"}, pg18)


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    restart.clear_caches()
    yield
    restart.clear_caches()


def test_the_binary_runs_once_per_version(fresh_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real_run = subprocess.run

    def counting_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting_run)
    first = setting_contexts(18)
    assert setting_contexts(18) is first
    assert [args[1:] for args in calls] == [["--version"], ["--describe-config"]]


def test_another_major_version_is_refused(fresh_cache: None) -> None:
    with pytest.raises(ConfigurationError, match="no Postgres 17 binary"):
        setting_contexts(17)


def test_a_missing_binary_is_a_configuration_error(fresh_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restart, "_postgres_binary", lambda: "/nonexistent/bin/postgres")
    with pytest.raises(ConfigurationError, match="could not run /nonexistent/bin/postgres --version"):
        setting_contexts(18)


def test_unexpected_output_is_a_configuration_error(fresh_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = iter(["postgres (PostgreSQL) 18.1\n", "something else entirely\n"])
    monkeypatch.setattr(restart, "_run", lambda args: next(outputs))
    with pytest.raises(ConfigurationError, match="printed something unexpected"):
        setting_contexts(18)


def test_a_catalog_brings_the_contexts_of_its_libraries_settings() -> None:
    catalog = ExtensionCatalog({}, {"myext.workers": "postmaster"})
    contexts = setting_contexts(18, catalog)
    assert contexts["myext.workers"] == "postmaster" and contexts["work_mem"] == "user"
    assert "cron.database_name" not in contexts  # only what this data plane's catalog knows
    assert unknown_settings(["myext.other", "cron.host"], contexts) == ["cron.host"]
