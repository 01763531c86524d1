"""Stacks and config engines (pure): computed settings, user overrides, forbidden settings, extensions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from howdah.control.config_engines import Resources, format_size, round_size
from howdah.control.extensions import ExtensionCatalog, ExtensionInfo, declared_catalog
from howdah.control.settings_check import parse_bool, parse_integer
from howdah.control.spec import Extension, InstanceSpec, Stack
from howdah.control.stacks import (
    EXAMPLE_RESOURCES,
    FORBIDDEN_SETTINGS,
    STACKS,
    ExtensionConflict,
    ForbiddenSetting,
    StackError,
    UnknownExtension,
    UnknownStack,
    describe_stack,
    describe_stacks,
    extensions_to_enable,
    get_stack,
    render_settings,
    split_libraries,
)
from howdah.errors import HowdahError
from howdah.pg._binaries import install_root
from howdah.providers.local import local_extension_catalog

GIB = 1024**3
KB_UNITS = {"kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}
AVAILABLE = {"pg_stat_statements", "pg_trgm", "btree_gin", "tablefunc", "postgres_fdw", "vector", "hstore", "citext"}
CATALOG = declared_catalog(AVAILABLE)


def spec(**fields: Any) -> InstanceSpec:
    return InstanceSpec.model_validate({"name": "db", **fields})


def kb(value: str) -> int:
    match = re.fullmatch(r"(\d+)(kB|MB|GB|TB)", value)
    assert match, f"{value!r} is not a Postgres memory size"
    return int(match[1]) * KB_UNITS[match[2]]


# --- exact values ------------------------------------------------------------------------------------------

KEYS = (
    "shared_buffers",
    "effective_cache_size",
    "max_connections",
    "work_mem",
    "maintenance_work_mem",
    "max_wal_size",
    "min_wal_size",
    "max_parallel_workers_per_gather",
    "max_parallel_maintenance_workers",
)
SMALL = Resources(cpu_millicores=1000, memory_bytes=1 * GIB, storage_bytes=10 * GIB)
LARGE = Resources(cpu_millicores=16000, memory_bytes=64 * GIB, storage_bytes=1024 * GIB)
EXPECTED = {
    (SMALL, "standard"): ("256MB", "768MB", "100", "2560kB", "64MB", "1GB", "256MB", "0", "0"),
    (SMALL, "oltp"): ("256MB", "768MB", "150", "1280kB", "64MB", "1GB", "256MB", "0", "0"),
    (SMALL, "olap"): ("256MB", "768MB", "25", "15MB", "128MB", "1GB", "256MB", "1", "1"),
    (SMALL, "vectordb"): ("256MB", "768MB", "100", "2560kB", "128MB", "1GB", "256MB", "0", "1"),
    (SMALL, "messagequeue"): ("304MB", "768MB", "100", "1792kB", "64MB", "1GB", "256MB", "0", "0"),
    (LARGE, "standard"): ("16GB", "48GB", "400", "40MB", "2GB", "16GB", "4GB", "2", "2"),
    (LARGE, "oltp"): ("16GB", "48GB", "800", "15MB", "2GB", "16GB", "4GB", "2", "2"),
    (LARGE, "olap"): ("16GB", "48GB", "100", "240MB", "4GB", "32GB", "8GB", "8", "8"),
    (LARGE, "vectordb"): ("16GB", "48GB", "400", "40MB", "8GB", "16GB", "4GB", "2", "8"),
    (LARGE, "messagequeue"): ("19GB", "48GB", "400", "28MB", "2GB", "16GB", "4GB", "2", "2"),
}


@pytest.mark.parametrize(("resources", "stack"), list(EXPECTED), ids=lambda v: v if isinstance(v, str) else "")
def test_exact_settings(resources: Resources, stack: str) -> None:
    computed = STACKS[stack].settings(resources)
    assert tuple(computed[key] for key in KEYS) == EXPECTED[resources, stack]


def test_full_standard_rendering_for_the_default_spec() -> None:
    assert render_settings(spec()) == {
        "effective_cache_size": "768MB",
        "effective_io_concurrency": "200",
        "maintenance_io_concurrency": "200",
        "maintenance_work_mem": "64MB",
        "max_connections": "100",
        "max_parallel_maintenance_workers": "0",
        "max_parallel_workers": "1",
        "max_parallel_workers_per_gather": "0",
        "max_wal_size": "1GB",
        "max_worker_processes": "9",
        "min_wal_size": "256MB",
        "random_page_cost": "1.1",
        "shared_buffers": "256MB",
        "shared_preload_libraries": "pg_stat_statements",
        "work_mem": "2560kB",
    }


def test_smallest_instance() -> None:
    small = render_settings(spec(cpu="250m", memory="256Mi", storage="1Gi", stack="oltp"))
    assert small["shared_buffers"] == "64MB"
    assert small["max_connections"] == "35"
    assert small["work_mem"] == "1344kB"
    assert small["maintenance_work_mem"] == "16MB"
    assert (small["max_wal_size"], small["min_wal_size"]) == ("96MB", "32MB")
    assert small["max_worker_processes"] == "9"


def test_largest_instance_stays_within_postgres_limits() -> None:
    big = render_settings(spec(cpu="64", memory="1024Gi", storage="64Ti", stack="olap"))
    assert big["shared_buffers"] == "256GB"
    assert big["effective_cache_size"] == "768GB"
    assert big["work_mem"] == "2GB"
    assert big["max_parallel_workers"] == "64"
    assert big["max_parallel_workers_per_gather"] == "32"
    assert big["max_worker_processes"] == "72"


def test_messagequeue_gives_30_percent_to_shared_buffers() -> None:
    for memory in (10, 20, 40, 640):
        computed = STACKS["messagequeue"].settings(Resources(1000, memory * GIB, 10 * GIB))
        assert kb(computed["shared_buffers"]) == memory * 3 * 1024**2 // 10
    odd = kb(STACKS["messagequeue"].settings(SMALL)["shared_buffers"])
    assert 0.3 * 15 / 16 <= odd / (1024**2) <= 0.3
    assert STACKS["messagequeue"].install_components == ("queue",)


def test_the_queue_component_name_matches_the_migrations() -> None:
    from howdah.queue import COMPONENT

    assert COMPONENT.name in STACKS["messagequeue"].install_components


@pytest.mark.parametrize("stack", list(STACKS))
def test_monotonic_in_memory(stack: str) -> None:
    previous: dict[str, int] = {}
    for mib in range(256, 1024 * 1024 + 1, 2039):
        computed = STACKS[stack].settings(Resources(2000, mib * 2**20, 100 * GIB))
        current = {
            "shared_buffers": kb(computed["shared_buffers"]),
            "effective_cache_size": kb(computed["effective_cache_size"]),
            "maintenance_work_mem": kb(computed["maintenance_work_mem"]),
            "max_connections": int(computed["max_connections"]),
        }
        for name, value in previous.items():
            assert current[name] >= value, (name, mib)
        previous = current


def test_oltp_has_more_connections_and_olap_more_work_mem() -> None:
    for memory in (1, 4, 16, 64):
        resources = Resources(4000, memory * GIB, 100 * GIB)
        oltp, olap = STACKS["oltp"].settings(resources), STACKS["olap"].settings(resources)
        assert int(oltp["max_connections"]) > int(olap["max_connections"])
        assert kb(olap["work_mem"]) > kb(oltp["work_mem"])
        assert oltp["jit"] == "off"


def test_olap_parallel_workers_follow_the_cpu() -> None:
    for cores in (1, 2, 3, 8, 32, 64):
        olap = STACKS["olap"].settings(Resources(cores * 1000, 8 * GIB, 100 * GIB))
        assert olap["max_parallel_workers"] == str(cores)
        assert olap["max_worker_processes"] == str(cores + 8)
        assert olap["max_parallel_workers_per_gather"] == str(max(1, cores // 2))
        assert olap["max_parallel_maintenance_workers"] == str(min(8, max(1, cores // 2)))
    fractional = STACKS["olap"].settings(Resources(1500, 8 * GIB, 100 * GIB))
    assert fractional["max_parallel_workers"] == "1"


def test_wal_sizes_follow_storage_within_bounds() -> None:
    for gib, expected in (
        (1, ("96MB", "32MB")),
        (10, ("1GB", "256MB")),
        (50, ("5GB", "1280MB")),
        (4096, ("16GB", "4GB")),
    ):
        computed = STACKS["standard"].settings(Resources(1000, 1 * GIB, gib * GIB))
        assert (computed["max_wal_size"], computed["min_wal_size"]) == expected


def test_rounding_and_formatting() -> None:
    assert format_size(1024) == "1MB"
    assert format_size(1536) == "1536kB"
    assert format_size(3 * 1024**2) == "3GB"
    assert format_size(2 * 1024**3) == "2TB"
    assert round_size(1000) == 960
    assert round_size(340_000) == 327_680  # 320MB: a step of 16MB
    assert round_size(300 * 1024**2) == 300 * 1024**2


# --- user overrides ---------------------------------------------------------------------------------------


def test_user_configs_override_stack_values() -> None:
    configs = {"work_mem": "64MB", "jit": "on", "max_connections": "50", "statement_timeout": "30s"}
    rendered = render_settings(spec(stack="oltp", postgres_configs=configs))
    for name, value in configs.items():
        assert rendered[name] == value
    assert rendered["shared_buffers"] == "256MB"


def test_rendered_settings_fed_back_render_the_same() -> None:
    for stack in STACKS:
        first = render_settings(spec(stack=stack, memory="3Gi", replicas=2))
        assert render_settings(spec(stack=stack, memory="3Gi", replicas=2, postgres_configs=first)) == first


# --- forbidden settings -----------------------------------------------------------------------------------

PREFIXED = [
    "archive_mode",
    "archive_command",
    "archive_library",
    "archive_timeout",
    "archive_cleanup_command",
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_ciphers",
    "ssl_min_protocol_version",
    "ssl_passphrase_command",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
    "recovery_target_time",
    "recovery_target_lsn",
]
PATHS = ["myext.data_directory", "myext.log_file", "myext.socket_dir", "myext.helper_command", "myext.lib_path"]


@pytest.mark.parametrize("name", sorted(FORBIDDEN_SETTINGS) + PREFIXED + PATHS)
def test_forbidden_settings_are_rejected_by_name(name: str) -> None:
    with pytest.raises(ForbiddenSetting, match=re.escape(repr(name))) as caught:
        render_settings(spec(postgres_configs={name: "x"}))
    assert caught.value.setting == name


@pytest.mark.parametrize(
    "name",
    ["port", "listen_addresses", "unix_socket_directories", "data_directory", "config_file", "hba_file",
     "ident_file", "external_pid_file", "cluster_name", "ssl", "archive_mode"],
)  # fmt: skip
def test_the_platform_settings_of_the_brief_are_forbidden(name: str) -> None:
    with pytest.raises(ForbiddenSetting, match=name):
        render_settings(spec(postgres_configs={name: "on"}))


def test_ordinary_settings_with_path_like_names_are_allowed() -> None:
    rendered = render_settings(spec(postgres_configs={"search_path": '"$user", public', "timezone": "Europe/Paris"}))
    assert rendered["search_path"] == '"$user", public'


@pytest.mark.parametrize("replicas", [1, 3])
def test_wal_level_minimal_is_always_forbidden(replicas: int) -> None:
    with pytest.raises(ForbiddenSetting, match="wal_level"):
        render_settings(spec(replicas=replicas, postgres_configs={"wal_level": "minimal", "max_wal_senders": "0"}))


@pytest.mark.parametrize("level", ["replica", "logical", "Logical"])
def test_wal_levels_that_stream_are_allowed(level: str) -> None:
    assert render_settings(spec(replicas=3, postgres_configs={"wal_level": level}))["wal_level"] == level


def test_unknown_wal_level_is_rejected() -> None:
    with pytest.raises(ForbiddenSetting, match="wal_level"):
        render_settings(spec(postgres_configs={"wal_level": "verbose"}))


@pytest.mark.parametrize("name", ["max_wal_senders", "max_replication_slots"])
def test_wal_senders_and_slots_cover_the_replicas(name: str) -> None:
    assert render_settings(spec(replicas=3, postgres_configs={name: "3"}))[name] == "3"
    for bad in ("2", "0", "ten", "-1"):
        with pytest.raises(ForbiddenSetting, match=name):
            render_settings(spec(replicas=3, postgres_configs={name: bad}))
    with pytest.raises(ForbiddenSetting, match=name):
        render_settings(spec(replicas=1, postgres_configs={name: "0"}))


@pytest.mark.parametrize("value", ["off", "of", "false", "f", "no", "0", "OFF"])
def test_wal_log_hints_off_is_forbidden_with_replicas(value: str) -> None:
    """CloudNativePG needs wal_log_hints on to rewind a failed primary into a replica."""
    with pytest.raises(ForbiddenSetting, match="wal_log_hints"):
        render_settings(spec(replicas=2, postgres_configs={"wal_log_hints": value}))
    assert render_settings(spec(replicas=1, postgres_configs={"wal_log_hints": value}))["wal_log_hints"] == value


def test_wal_log_hints_must_be_a_boolean() -> None:
    assert render_settings(spec(replicas=2, postgres_configs={"wal_log_hints": "on"}))["wal_log_hints"] == "on"
    with pytest.raises(ForbiddenSetting, match="wal_log_hints"):
        render_settings(spec(postgres_configs={"wal_log_hints": "o"}))


# The parameters CloudNativePG fixes (its webhook refuses a Cluster that sets them): refused on every provider.
CNPG_FIXED = [
    "hot_standby", "temp_tablespaces", "log_rotation_age", "log_rotation_size", "log_truncate_on_rotation",
    "restart_after_crash", "recovery_min_apply_delay", "syslog_facility", "syslog_ident", "syslog_sequence_numbers",
    "syslog_split_messages", "data_sync_retry", "bonjour", "bonjour_name", "event_source",
]  # fmt: skip


@pytest.mark.parametrize("name", CNPG_FIXED)
def test_parameters_cloudnativepg_fixes_are_refused_by_name(name: str) -> None:
    with pytest.raises(ForbiddenSetting, match=re.escape(repr(name))) as caught:
        render_settings(spec(postgres_configs={name: "on"}))
    assert "CloudNativePG" in str(caught.value) or "platform" in str(caught.value)


@pytest.mark.parametrize("alias", ["hot_standby", "archive", "ARCHIVE"])
def test_wal_level_aliases_are_rendered_as_replica(alias: str) -> None:
    """Postgres reads both as replica; CloudNativePG refuses them, so the rendered value says replica."""
    assert render_settings(spec(replicas=2, postgres_configs={"wal_level": alias}))["wal_level"] == "replica"


def test_one_wal_size_may_not_cross_the_one_the_stack_computes() -> None:
    computed = render_settings(spec())  # 10Gi storage: the stack's max_wal_size
    assert parse_integer(computed["min_wal_size"], "MB") < parse_integer(computed["max_wal_size"], "MB")  # type: ignore[operator]
    with pytest.raises(ForbiddenSetting, match="'min_wal_size'") as caught:
        render_settings(spec(postgres_configs={"min_wal_size": "64GB"}))
    assert computed["max_wal_size"] in str(caught.value)
    with pytest.raises(ForbiddenSetting, match="'max_wal_size'"):
        render_settings(spec(postgres_configs={"max_wal_size": "32MB"}))
    with pytest.raises(ForbiddenSetting, match="'min_wal_size'"):
        render_settings(spec(postgres_configs={"min_wal_size": "2GB", "max_wal_size": "1GB"}))
    both = render_settings(spec(postgres_configs={"min_wal_size": "2GB", "max_wal_size": "8GB"}))
    assert (both["min_wal_size"], both["max_wal_size"]) == ("2GB", "8GB")


def test_storage_can_only_grow() -> None:
    base = spec(storage="50Gi")
    assert base.patched({"storage": "60Gi"}).storage == "60Gi"
    assert base.patched({"storage": "50Gi"}).storage == "50Gi"
    with pytest.raises(ValueError, match="storage can only grow"):
        base.patched({"storage": "10Gi"})


def test_parse_bool_like_postgres() -> None:
    assert [parse_bool(v) for v in ("on", "t", "TRUE", "y", "yes", "1")] == [True] * 6
    assert [parse_bool(v) for v in ("off", "of", "f", "false", "n", "no", "0")] == [False] * 7
    assert [parse_bool(v) for v in ("o", "", "2", "yess", "nope")] == [None] * 5


def test_shared_buffers_must_fit_in_memory() -> None:
    assert render_settings(spec(postgres_configs={"shared_buffers": "512MB"}))["shared_buffers"] == "512MB"
    assert render_settings(spec(postgres_configs={"shared_buffers": "65536"}))["shared_buffers"] == "65536"
    for bad in ("1GB", "131072", "2TB", "lots", "-1"):
        with pytest.raises(ForbiddenSetting, match="shared_buffers"):
            render_settings(spec(postgres_configs={"shared_buffers": bad}))


def test_connections_must_leave_room_beyond_the_reserved_ones() -> None:
    assert render_settings(spec(postgres_configs={"max_connections": "13"}))["max_connections"] == "13"
    with pytest.raises(ForbiddenSetting, match="max_connections"):
        render_settings(spec(postgres_configs={"max_connections": "12"}))
    with pytest.raises(ForbiddenSetting, match="max_connections"):
        render_settings(spec(postgres_configs={"max_connections": "many"}))
    with pytest.raises(ForbiddenSetting, match="'superuser_reserved_connections'"):
        render_settings(spec(postgres_configs={"superuser_reserved_connections": "95"}))
    with pytest.raises(ForbiddenSetting, match="'reserved_connections'"):
        render_settings(spec(postgres_configs={"reserved_connections": "90"}))


# --- shared_preload_libraries -----------------------------------------------------------------------------


def test_preload_is_the_union_of_stack_extensions_and_user() -> None:
    rendered = render_settings(
        spec(
            stack="oltp",
            extensions=[Extension(name="timescaledb")],
            postgres_configs={"shared_preload_libraries": 'auto_explain, "pg_prewarm"'},
        )
    )
    assert rendered["shared_preload_libraries"] == "pg_stat_statements,pg_prewarm,timescaledb,auto_explain"


def test_a_disabled_extension_takes_its_stack_library_with_it() -> None:
    rendered = render_settings(
        spec(
            extensions=[Extension(name="pg_stat_statements", enabled=False)],
            postgres_configs={"shared_preload_libraries": ""},
        )
    )
    assert rendered["shared_preload_libraries"] == ""
    # an empty user value does not remove the stack's libraries of enabled extensions
    assert render_settings(spec(postgres_configs={"shared_preload_libraries": ""}))["shared_preload_libraries"] == (
        "pg_stat_statements"
    )


def test_the_data_planes_catalog_says_which_libraries_extensions_need() -> None:
    catalog = ExtensionCatalog(
        {
            "pg_stat_statements": ExtensionInfo("pg_stat_statements", preload=("pg_stat_statements",)),
            "hstore": ExtensionInfo("hstore", preload=("hstore_helper",), requires=("base",)),
            "base": ExtensionInfo("base", preload=("base_lib",)),
            "timescaledb": ExtensionInfo("timescaledb"),  # this data plane's build needs no preloading
        }
    )
    rendered = render_settings(spec(extensions=[Extension(name="hstore")]), catalog)
    assert rendered["shared_preload_libraries"] == "pg_stat_statements,base_lib,hstore_helper"  # requirement first
    timescale = spec(extensions=[Extension(name="timescaledb")])
    assert render_settings(timescale, catalog)["shared_preload_libraries"] == "pg_stat_statements"
    # without a catalog (a data plane that reported none) the well-known libraries are used, names unchecked
    assert render_settings(timescale)["shared_preload_libraries"] == "pg_stat_statements,timescaledb"


@pytest.mark.parametrize(
    "value", ["$libdir/auto_explain", "/tmp/evil.so", "../x", "a,,b", "auto_explain,", "a b", '"x/y"']
)
@pytest.mark.parametrize("name", ["shared_preload_libraries", "session_preload_libraries", "local_preload_libraries"])
def test_preload_entries_must_be_plain_library_names(name: str, value: str) -> None:
    with pytest.raises(ForbiddenSetting, match=name):
        render_settings(spec(postgres_configs={name: value}))


def test_preload_libraries_must_be_installed_when_known() -> None:
    installed = {"pg_stat_statements", "auto_explain.so", "pg_prewarm"}
    configs = {"shared_preload_libraries": "auto_explain"}
    assert (
        "auto_explain"
        in render_settings(spec(postgres_configs=configs), available_libraries=installed)["shared_preload_libraries"]
    )
    with pytest.raises(ForbiddenSetting, match="pg_cron"):
        render_settings(spec(postgres_configs={"shared_preload_libraries": "pg_cron"}), available_libraries=installed)


def test_split_libraries() -> None:
    assert split_libraries("x", ' a , "b",c.so ') == ["a", "b", "c.so"]
    assert split_libraries("x", "  ") == []


# --- extensions -------------------------------------------------------------------------------------------


def test_extensions_to_enable_in_order() -> None:
    instance = spec(
        stack="vectordb",
        extensions=[
            Extension(name="hstore"),
            Extension(name="pg_trgm", enabled=False),
            Extension(name="vector"),
            Extension(name="citext"),
        ],
    )
    assert extensions_to_enable(instance) == ["pg_stat_statements", "vector", "hstore", "citext"]
    assert extensions_to_enable(instance, STACKS["standard"]) == ["pg_stat_statements", "hstore", "vector", "citext"]


def test_unknown_extension_is_named() -> None:
    with pytest.raises(UnknownExtension, match="'postgis'") as caught:
        render_settings(spec(extensions=[Extension(name="postgis")]), CATALOG, data_plane="edge")
    assert caught.value.extension == "postgis"
    assert "'postgis' is not available on data plane 'edge'; available: btree_gin, citext" in str(caught.value)
    disabled = spec(extensions=[Extension(name="postgis", enabled=False)])
    assert render_settings(disabled, CATALOG)  # nothing to create, nothing to check
    assert render_settings(spec(extensions=[Extension(name="postgis")]))  # unchecked without a catalog
    assert render_settings(spec(extensions=[Extension(name="postgis")]), CATALOG, check_extensions=False)


def test_a_missing_stack_default_is_named_and_can_be_disabled() -> None:
    available = declared_catalog(AVAILABLE - {"vector"})
    with pytest.raises(UnknownExtension, match="vectordb stack"):
        extensions_to_enable(spec(stack="vectordb"), catalog=available)
    without = spec(stack="vectordb", extensions=[Extension(name="vector", enabled=False)])
    assert extensions_to_enable(without, catalog=available) == ["pg_stat_statements", "pg_trgm"]


def test_pgmq_extension_conflicts_with_the_messagequeue_stack() -> None:
    with pytest.raises(ExtensionConflict, match="pgmq"):
        render_settings(spec(stack="messagequeue", extensions=[Extension(name="pgmq")]))
    assert "pgmq" in extensions_to_enable(spec(stack="standard", extensions=[Extension(name="pgmq")]))


def test_stack_extensions_and_libraries_exist_on_the_local_data_plane() -> None:
    catalog = local_extension_catalog()
    libraries = {path.stem for path in (install_root() / "lib").glob("**/*.so")}
    for stack in STACKS.values():
        assert catalog.missing(stack.extensions) == [], stack.name
        assert set(stack.shared_preload_libraries) <= libraries, stack.name
        assert render_settings(spec(stack=stack.name), catalog, available_libraries=libraries)


# --- the catalogue ----------------------------------------------------------------------------------------


def test_every_stack_is_defined() -> None:
    assert set(STACKS) == {stack.value for stack in Stack}
    assert all(STACKS[stack].name is stack for stack in Stack)


@pytest.mark.parametrize("name", list(STACKS))
def test_describe_stack_is_json_and_matches_rendering(name: str) -> None:
    described = json.loads(json.dumps(describe_stack(name)))
    assert described["name"] == name
    assert described["extensions"] == list(STACKS[name].extensions)
    assert set(described["formulas"]) >= {"shared_buffers", "max_connections", "work_mem", "max_wal_size"}
    assert described["example"]["settings"] == render_settings(spec(stack=name))
    assert (EXAMPLE_RESOURCES.cpu_millicores, EXAMPLE_RESOURCES.memory_bytes) == (1000, GIB)


def test_describe_formulas_state_the_fractions() -> None:
    assert describe_stack("messagequeue")["formulas"]["shared_buffers"] == "30% of memory"
    assert describe_stack("standard")["formulas"]["maintenance_work_mem"].startswith("6.25% of memory")
    assert [d["name"] for d in describe_stacks()] == list(STACKS)


def test_stack_names_are_case_insensitive_and_unknown_ones_are_named() -> None:
    assert get_stack("OLTP") is STACKS["oltp"]
    assert get_stack(Stack.olap) is STACKS["olap"]
    with pytest.raises(UnknownStack, match="'timeseries'") as caught:
        describe_stack("timeseries")
    assert caught.value.status_code == 404


def test_errors_share_the_root() -> None:
    for error in (UnknownStack, ForbiddenSetting, UnknownExtension, ExtensionConflict):
        assert issubclass(error, StackError)
        assert issubclass(error, HowdahError)
    assert issubclass(ForbiddenSetting, ValueError)
    assert StackError.status_code == 422


# --- property: every rendered value is one Postgres accepts -----------------------------------------------

MEMORY = {
    "shared_buffers": (128, 1073741823 * 8),
    "effective_cache_size": (8, 2147483647 * 8),
    "work_mem": (64, 2147483647),
    "maintenance_work_mem": (1024, 2147483647),
    "autovacuum_work_mem": (1024, 2147483647),
    "max_wal_size": (32 * 1024, 2147483647 * 1024),
    "min_wal_size": (32 * 1024, 2147483647 * 1024),
}
INTEGERS = {
    "max_connections": (13, 262143),
    "max_worker_processes": (0, 262143),
    "max_parallel_workers": (0, 1024),
    "max_parallel_workers_per_gather": (0, 1024),
    "max_parallel_maintenance_workers": (0, 1024),
    "effective_io_concurrency": (0, 1000),
    "maintenance_io_concurrency": (0, 1000),
    "default_statistics_target": (1, 10000),
    "autovacuum_vacuum_cost_limit": (-1, 10000),
}
REALS = {"random_page_cost", "autovacuum_vacuum_scale_factor", "autovacuum_vacuum_insert_scale_factor"}
BOOLEANS = {"jit"}
DURATIONS = {"autovacuum_naptime"}
LISTS = {"shared_preload_libraries"}

cpus = st.integers(250, 64_000).map(lambda m: f"{m}m")
memories = st.one_of(
    st.integers(256, 1024 * 1024).map(lambda n: f"{n}Mi"), st.integers(256 * 2**20, 1024 * GIB).map(str)
)
storages = st.one_of(st.integers(1, 64 * 1024).map(lambda n: f"{n}Gi"), st.integers(GIB, 64 * 1024 * GIB).map(str))


@settings(max_examples=300, deadline=None)
@given(stack=st.sampled_from(list(Stack)), cpu=cpus, memory=memories, storage=storages)
def test_every_rendered_value_is_valid_postgres(stack: Stack, cpu: str, memory: str, storage: str) -> None:
    instance = spec(stack=stack, cpu=cpu, memory=memory, storage=storage)
    rendered = render_settings(instance)
    for name, value in rendered.items():
        if name in MEMORY:
            low, high = MEMORY[name]
            assert low <= kb(value) <= high, (name, value)
        elif name in INTEGERS:
            low, high = INTEGERS[name]
            assert re.fullmatch(r"\d+", value) and low <= int(value) <= high, (name, value)
        elif name in REALS:
            assert re.fullmatch(r"\d+(\.\d+)?", value) and float(value) >= 0, (name, value)
        elif name in BOOLEANS:
            assert parse_bool(value) is not None, (name, value)
        elif name in DURATIONS:
            assert re.fullmatch(r"\d+(ms|s|min|h|d)", value), (name, value)
        else:
            assert name in LISTS, f"unclassified setting {name}"
            assert split_libraries(name, value), (name, value)
    memory_kb = instance.memory_bytes // 1024
    assert kb(rendered["shared_buffers"]) < memory_kb
    assert kb(rendered["effective_cache_size"]) < memory_kb
    assert kb(rendered["shared_buffers"]) + kb(rendered["maintenance_work_mem"]) < memory_kb
    assert (
        kb(rendered["min_wal_size"]) <= kb(rendered["max_wal_size"]) <= max(64 * 1024, instance.storage_bytes // 10240)
    )
    assert int(rendered["max_parallel_workers"]) <= int(rendered["max_worker_processes"])
    assert int(rendered["max_parallel_workers"]) == max(1, instance.cpu_millicores // 1000)
