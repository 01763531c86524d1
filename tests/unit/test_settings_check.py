"""The settings validator: Postgres's parsing rules one by one, its messages, and the stacks' own settings."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from howdah.control import restart
from howdah.control.config_engines import Resources
from howdah.control.settings_check import (
    SettingInfo,
    check_settings,
    parse_bool,
    parse_integer,
    parse_real,
    parse_settings_metadata,
    split_identifier_list,
)
from howdah.control.spec import InstanceSpec, Stack
from howdah.control.stacks import STACKS, InvalidSettingValue, render_settings

WORK_MEM = SettingInfo("work_mem", "user", "integer", "kB", 64, 2147483647)
SHARED_BUFFERS = SettingInfo("shared_buffers", "postmaster", "integer", "8kB", 16, 1073741823)
CHECKPOINT_TIMEOUT = SettingInfo("checkpoint_timeout", "sighup", "integer", "s", 30, 86400)
MAX_CONNECTIONS = SettingInfo("max_connections", "postmaster", "integer", None, 1, 262143)
RANDOM_PAGE_COST = SettingInfo("random_page_cost", "user", "real", None, 0, 1.7976931348623157e308)
VACUUM_COST_DELAY = SettingInfo("vacuum_cost_delay", "user", "real", "ms", 0, 100)
JIT = SettingInfo("jit", "user", "bool")
WAL_LEVEL = SettingInfo("wal_level", "postmaster", "enum", enum_values=("minimal", "replica", "logical", "hot_standby"))
SEARCH_PATH = SettingInfo("search_path", "user", "string")
METADATA = {i.name: i for i in (WORK_MEM, SHARED_BUFFERS, CHECKPOINT_TIMEOUT, MAX_CONNECTIONS, RANDOM_PAGE_COST,
                                VACUUM_COST_DELAY, JIT, WAL_LEVEL, SEARCH_PATH)}  # fmt: skip


def problems(settings: Mapping[str, str]) -> list[str]:
    return [str(p) for p in check_settings(METADATA, settings)]


# ------------------------------------------------------------------------------------------------- booleans
@pytest.mark.parametrize("value", ["on", "ON", "true", "t", "tr", "TRU", "yes", "y", "Ye", "1"])
def test_true_spellings(value: str) -> None:
    assert parse_bool(value) is True


@pytest.mark.parametrize("value", ["off", "of", "OFF", "false", "f", "fal", "no", "n", "NO", "0"])
def test_false_spellings(value: str) -> None:
    assert parse_bool(value) is False


@pytest.mark.parametrize("value", ["o", "", " on", "off ", "2", "truex", "yess", "onn", "00", "-1", "nope"])
def test_not_booleans(value: str) -> None:
    assert parse_bool(value) is None


# ------------------------------------------------------------------------------------------------- integers
@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("64", "kB", 64), (" 64 ", "kB", 64), ("64MB", "kB", 65536), ("64 MB", "kB", 65536), ("1.5GB", "kB", 1572864),
        ("0x10", None, 16), ("0X1f", None, 31), ("017", None, 15), ("-0x10", None, -16), ("2.5", None, 2),
        ("3.5", None, 4), (".5", None, 0), ("1e3", None, 1000), ("1E+2", None, 100), ("5.", None, 5),
        ("128MB", "8kB", 16384), ("8kB", "8kB", 1), ("4kB", "8kB", 0), ("12kB", "8kB", 2), ("1TB", "MB", 1048576),
        ("1.5min", "s", 90), ("1500ms", "s", 2), ("1499ms", "s", 1), ("1d", "s", 86400), ("0.0015s", "s", 0),
        ("1500us", "ms", 2), ("90s", "min", 2), ("1h", "min", 60), ("2147483647", None, 2147483647),
        ("-2147483648", None, -2147483648), ("0x1.8p1", None, 3),
    ],
)  # fmt: skip
def test_integers_as_postgres_reads_them(value: str, unit: str | None, expected: int) -> None:
    assert parse_integer(value, unit) == expected


@pytest.mark.parametrize(
    ("value", "unit"),
    [
        ("lots", "kB"), ("", None), ("64mb", "kB"), ("64 M B", "kB"), ("64kBx", "kB"), ("5s", "kB"), ("5MB", "s"),
        ("5MB", None), ("08", None), ("0x", None), ("-.5", None), (" .5", None), ("1e", None), ("nan", None),
        ("inf", None), ("2147483648", None), ("-2147483649", None), ("99999999999999999999", None),
        ("3TB", "kB"), ("1e400", None),
    ],
)  # fmt: skip
def test_integers_postgres_refuses(value: str, unit: str | None) -> None:
    assert parse_integer(value, unit) is None


def test_reals() -> None:
    assert parse_real("1.1") == 1.1
    assert parse_real(" 4 ") == 4.0
    assert parse_real("0x10") == 16.0
    assert parse_real("2s", "ms") == 2000.0
    assert parse_real("500us", "ms") == 0.5
    assert parse_real("inf") == float("inf")  # the range refuses it
    for refused in ("nan", "cheap", "1e400", "2s", "1.1.1"):
        assert parse_real(refused) is None, refused


def test_identifier_lists() -> None:
    assert split_identifier_list('"$user", public') == ["$user", "public"]
    assert split_identifier_list(' A , "B""c" ') == ["a", 'B"c']
    assert split_identifier_list("") == []
    assert split_identifier_list("  ") == []
    for refused in ("a,,b", "a,", ",a", '"open', "a b"):
        assert split_identifier_list(refused) is None, refused


# ------------------------------------------------------------------------------------------------- messages
def test_each_problem_names_the_setting_and_what_postgres_accepts() -> None:
    assert problems({"work_mem": "lots"}) == [
        "setting 'work_mem': 'lots' is not an integer or a quantity in a unit it takes; Postgres accepts an "
        "integer from 64kB to 2147483647kB (a plain number counts in kB; units: B, kB, MB, GB, TB)"
    ]
    assert problems({"work_mem": "-5MB"})[0].startswith("setting 'work_mem': '-5MB' is -5MB, outside its range")
    assert problems({"shared_buffers": "0"}) == [
        "setting 'shared_buffers': '0' is 0, outside its range; Postgres accepts an integer from 128kB to "
        "8589934584kB (a plain number counts in 8kB pages; units: B, kB, MB, GB, TB)"
    ]
    assert "an integer from 30s to 1d" in problems({"checkpoint_timeout": "10"})[0]
    assert "an integer from 1 to 262143" in problems({"max_connections": "0"})[0]
    assert "a number from 0 to 100ms" in problems({"vacuum_cost_delay": "1s"})[0]
    assert "one of: minimal, replica, logical, hot_standby" in problems({"wal_level": "everything"})[0]
    assert "on, off, true, false, yes, no, 1 or 0" in problems({"jit": "maybe"})[0]
    assert "comma-separated list of names" in problems({"search_path": "a,,b"})[0]


def test_valid_values_and_unknown_names_pass() -> None:
    assert problems({
        "work_mem": "64MB", "shared_buffers": "128MB", "checkpoint_timeout": "0.5min", "max_connections": "0x64",
        "random_page_cost": "1.1", "vacuum_cost_delay": "500us", "jit": "t", "wal_level": "LOGICAL",
        "search_path": '"$user", public', "pg_stat_statements.max": "anything", "Work_Mem": "4MB",
    }) == []  # fmt: skip


def test_unknown_units_or_enum_values_are_not_guessed() -> None:
    unknown_unit = SettingInfo("work_mem", "user", "integer", None, 64, 2147483647, units_known=False)
    assert check_settings({"work_mem": unknown_unit}, {"work_mem": "64MB"}) == []
    assert len(check_settings({"work_mem": unknown_unit}, {"work_mem": "1"})) == 1  # a plain number: range
    unknown_enum = SettingInfo("wal_level", "postmaster", "enum")
    assert check_settings({"wal_level": unknown_enum}, {"wal_level": "anything"}) == []


# ------------------------------------------------------------------------------------------------- metadata
SAMPLE = (
    "work_mem\tuser\tResource Usage / Memory\tINTEGER\t0\t64\t2147483647\tSets the maximum memory.\t\n"
    "random_page_cost\tuser\tQuery Tuning\tREAL\t0\t0\t1.79769e+308\tSets the cost.\t\n"
    "jit\tuser\tQuery Tuning\tBOOLEAN\tFALSE\t\t\tAllow JIT compilation.\t\n"
    "wal_level\tpostmaster\tWrite-Ahead Log\tENUM\treplica\t\t\tSets the level.\t\n"
    "DateStyle\tuser\tLocale\tSTRING\tISO, MDY\t\t\tSets the display format.\t\n"
)


def test_parse_settings_metadata() -> None:
    parsed = parse_settings_metadata(SAMPLE, {"work_mem": "kB"}, {"wal_level": ("minimal", "replica")})
    assert parsed["work_mem"] == WORK_MEM
    assert parsed["random_page_cost"].max == 1.7976931348623157e308  # "%g" printed DBL_MAX short
    assert parsed["jit"] == JIT
    assert parsed["wal_level"].enum_values == ("minimal", "replica")
    assert parsed["datestyle"].vartype == "string"
    assert not parse_settings_metadata(SAMPLE)["work_mem"].units_known
    odd = parse_settings_metadata(SAMPLE, {"work_mem": "16kB"})["work_mem"]  # a base unit this module cannot convert
    assert (odd.unit, odd.units_known) == (None, False)


@pytest.mark.parametrize(
    "bad", ["work_mem\tuser", "work_mem\tuser\tg\tSOMETHING\t0\t1\t2\t", "x\tuser\tg\tINTEGER\t0\ta\tb"]
)
def test_parse_settings_metadata_refuses_other_shapes(bad: str) -> None:
    with pytest.raises(ValueError, match="line 1 of --describe-config"):
        parse_settings_metadata(bad)


# ----------------------------------------------------------------------------------- the real Postgres 18 binary
@pytest.fixture(scope="module")
def pg18() -> Mapping[str, SettingInfo]:
    return restart.setting_metadata(18)


def test_real_metadata(pg18: Mapping[str, SettingInfo]) -> None:
    assert pg18["work_mem"] == WORK_MEM
    assert pg18["shared_buffers"] == SHARED_BUFFERS
    assert pg18["wal_level"].enum_values == ("minimal", "replica", "logical", "archive", "hot_standby")
    assert pg18["intervalstyle"].enum_values is not None


@pytest.mark.parametrize("stack", list(Stack))
@pytest.mark.parametrize(
    ("cpu", "memory", "storage"),
    [
        ("0.25", "256Mi", "1Gi"),
        ("1", "1Gi", "10Gi"),
        ("2", "3Gi", "50Gi"),
        ("8", "64Gi", "1Ti"),
        ("64", "1024Gi", "64Ti"),
    ],
)
def test_every_stack_renders_settings_postgres_accepts(
    pg18: Mapping[str, SettingInfo], stack: Stack, cpu: str, memory: str, storage: str
) -> None:
    spec = InstanceSpec(name="db", stack=stack, cpu=cpu, memory=memory, storage=storage)
    computed = STACKS[stack].settings(Resources.of(spec))
    assert check_settings(pg18, computed) == []
    render_settings(spec, setting_metadata=pg18)  # raises InvalidSettingValue otherwise


def test_render_settings_refuses_values_postgres_refuses(pg18: Mapping[str, SettingInfo]) -> None:
    spec = InstanceSpec(name="db", postgres_configs={"work_mem": "lots"})
    with pytest.raises(InvalidSettingValue, match="setting 'work_mem': 'lots' is not an integer") as caught:
        render_settings(spec, setting_metadata=pg18)
    assert caught.value.setting == "work_mem"
    # Without metadata only the platform's own rules apply (as before).
    assert render_settings(spec)["work_mem"] == "lots"
    # A setting the platform forbids is refused as forbidden, whatever its value.
    with pytest.raises(Exception, match="setting 'port' is not allowed"):
        render_settings(InstanceSpec(name="db", postgres_configs={"port": "many"}), setting_metadata=pg18)


def test_the_platform_rules_read_values_as_postgres_does(pg18: Mapping[str, SettingInfo]) -> None:
    """A value Postgres accepts is not refused by the platform's own checks for reading it differently."""
    configs = {"shared_buffers": "0x4000", "max_connections": "0x64", "max_wal_senders": "1e1", "wal_log_hints": "on"}
    spec = InstanceSpec(name="db", postgres_configs=configs)
    assert check_settings(pg18, configs) == []
    assert {name: render_settings(spec, setting_metadata=pg18)[name] for name in configs} == configs
