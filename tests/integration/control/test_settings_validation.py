"""Settings checked before they are accepted: the validator against a real Postgres 18, and the API's 422s.

The differential tests ask Postgres itself whether it accepts each value: ``set_config`` in a rolled-back
transaction for settings a session may change, and ``postgres -C`` with the value on its command line against
an empty configuration for the others (the check the local data plane runs before writing anything).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from howdah.control import restart
from howdah.control._setting_facts import ENUM_VALUES, UNITS
from howdah.control.settings_check import SettingInfo, check_value
from howdah.pg._binaries import run_tool, server_os_user

from .conftest import Api
from .test_api import BASE, create_up, unique

SESSION_CONTEXTS = ("user", "superuser")
REFUSALS = (
    "invalid value for parameter",
    "outside the valid range for parameter",
    "requires a Boolean value",
    "requires a numeric value",
)


@dataclass
class Postgres:
    """Whether the real Postgres accepts a value for a setting."""

    conn: psycopg.Connection[tuple[object, ...]]
    home: Path
    folder: Path
    contexts: Mapping[str, str]

    def accepts(self, name: str, value: str) -> bool:
        if self.contexts[name] in SESSION_CONTEXTS:
            try:
                with self.conn.transaction(force_rollback=True):
                    self.conn.execute("SELECT set_config(%s, %s, true)", (name, value))
            except psycopg.errors.DataError:
                return False
            except psycopg.errors.InvalidParameterValue:
                return False
            return True
        done = run_tool(self.home, "postgres", ["-D", str(self.folder), "-c", f"{name}={value}", "-C", "block_size"])
        if done.returncode != 0 and not any(reason in done.stderr for reason in REFUSALS):
            raise AssertionError(f"postgres -C failed for another reason: {done.stderr}")
        return done.returncode == 0


@pytest.fixture(scope="module")
def postgres(db_url: str) -> Iterator[Postgres]:
    home = Path(tempfile.mkdtemp(prefix="howdah-settings-"))
    os.chmod(home, 0o755)
    folder = home / "empty"
    folder.mkdir(mode=0o700)
    (folder / "postgresql.conf").write_text("")
    for path in (folder, folder / "postgresql.conf"):
        server_os_user().chown(path)
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            yield Postgres(conn, home, folder, restart.setting_contexts(18))
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def metadata() -> Mapping[str, SettingInfo]:
    return restart.setting_metadata(18)


def validator_accepts(metadata: Mapping[str, SettingInfo], name: str, value: str) -> bool:
    return check_value(metadata[name], value) is None


# ------------------------------------------------------------------------------------- the metadata itself
def test_metadata_matches_pg_settings(postgres: Postgres, metadata: Mapping[str, SettingInfo]) -> None:
    """Type, range, unit and enum values of every described setting are those the server reports."""
    rows = postgres.conn.execute(
        "SELECT name, context, vartype, unit, min_val, max_val, enumvals FROM pg_settings"
    ).fetchall()
    by_name = {str(row[0]).lower(): row for row in rows}
    assert len(metadata) > 300
    for name, info in metadata.items():
        _, context, vartype, unit, low, high, enumvals = by_name[name]
        assert (info.context, info.vartype, info.unit) == (context, vartype, unit), name
        if vartype in ("integer", "real"):
            assert (info.min, info.max) == pytest.approx((float(str(low)), float(str(high))), rel=1e-5), name
        if vartype == "enum":
            assert info.enum_values is not None
            listed = list(enumvals)  # type: ignore[call-overload]
            assert list(info.enum_values[: len(listed)]) == listed, name  # then the unlisted spellings
    assert set(UNITS[18]) <= set(metadata)
    assert set(ENUM_VALUES[18]) <= set(metadata)


def test_unlisted_enum_spellings_are_accepted(postgres: Postgres, metadata: Mapping[str, SettingInfo]) -> None:
    for name, info in metadata.items():
        if info.vartype != "enum" or name in ("session_replication_role", "default_transaction_isolation"):
            continue  # these two a session may only set under conditions unrelated to the value's spelling
        assert info.enum_values is not None
        for value in info.enum_values:
            assert postgres.accepts(name, value), (name, value)
            assert postgres.accepts(name, value.upper()) == validator_accepts(metadata, name, value.upper())


# -------------------------------------------------------------------------------------------- differential
SETTINGS = [
    # bool
    "jit", "enable_seqscan", "hot_standby", "fsync", "autovacuum", "track_io_timing",
    # integer with a memory unit: kB, 8kB pages, MB, bytes
    "work_mem", "maintenance_work_mem", "temp_file_limit", "log_rotation_size",
    "shared_buffers", "effective_cache_size", "wal_buffers", "backend_flush_after",
    "max_wal_size", "min_dynamic_shared_memory", "track_activity_query_size", "log_parameter_max_length",
    # integer with a time unit: ms, s, min
    "statement_timeout", "log_min_duration_statement", "checkpoint_timeout", "autovacuum_naptime",
    "log_rotation_age",
    # integer without a unit
    "max_connections", "default_statistics_target", "effective_io_concurrency", "extra_float_digits",
    # real (one with a unit)
    "random_page_cost", "vacuum_cost_delay", "checkpoint_completion_target", "cursor_tuple_fraction",
    "hash_mem_multiplier", "jit_above_cost", "autovacuum_vacuum_scale_factor",
    # enum
    "wal_level", "synchronous_commit", "client_min_messages", "huge_pages", "log_statement",
    "constraint_exclusion", "archive_mode", "password_encryption", "bytea_output",
    # list
    "search_path",
]  # fmt: skip

NUMBERS = st.one_of(
    st.integers(-10, 100_000).map(str),
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["0", "-1", "1", "16", "64", "2147483647", "2147483648", "-2147483648", "-2147483649",
                     "1073741823", "1073741824", "9223372036854775808", "99999999999999999999"]),
    st.sampled_from(["0x10", "0X1f", "0x", "017", "08", "0x1.8p1", "1e3", "1E+2", "2.5", "3.5", "0.5", ".5",
                     "-.5", "5.", "1e", "1.5e3", "1e400", "1e-400", "inf", "-inf", "nan", "Infinity", "0.0001",
                     "100.0", "1.79769e308", "1.7977e308"]),
    st.floats(-1e12, 1e12, allow_nan=False).map(lambda f: f"{f:g}"),
    st.decimals(-10_000, 10_000, places=3).map(str),
)  # fmt: skip
UNIT_SUFFIXES = st.sampled_from(["", "", "", "B", "kB", "MB", "GB", "TB", "us", "ms", "s", "min", "h", "d",
                                 "mb", "KB", "Kb", "sec", "m", "x", "8kB", "kBx", "MBs"])  # fmt: skip
SPACES = st.sampled_from(["", "", "", " ", "\t", "  "])
QUANTITIES = st.builds(lambda lead, n, mid, unit, trail: lead + n + mid + unit + trail,
                       SPACES, NUMBERS, SPACES, UNIT_SUFFIXES, SPACES)  # fmt: skip
WORDS = st.sampled_from([
    "on", "off", "true", "false", "yes", "no", "1", "0", "t", "f", "y", "n", "o", "of", "tr", "fals", "ye", "nO",
    "TRUE", "Off", "On", "truex", "yess", "", " on", "off ", "2", "-1", "lots", "banana",
    "minimal", "replica", "logical", "archive", "hot_standby", "Replica", "LOGICAL", "repl", "local",
    "remote_write", "remote_apply", "debug", "debug1", "info", "notice", "warning", "error", "log", "try", "ddl",
    "mod", "all", "none", "partition", "always", "md5", "scram-sha-256", "SCRAM-SHA-256", "hex", "escape",
    "public", '"$user", public', "a,,b", "a,", ",a", '"unterminated', '"a""b", c', '""', "a b", "pg_catalog , x",
])  # fmt: skip
ALPHABET = st.sampled_from(list("0123456789 .-+xXeEkKMGTBmsunhdoftrueayl,\"'"))
VALUES = st.one_of(QUANTITIES, WORDS, st.text(ALPHABET, max_size=8))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(SETTINGS), value=VALUES)
def test_validator_agrees_with_postgres(
    postgres: Postgres, metadata: Mapping[str, SettingInfo], name: str, value: str
) -> None:
    assert validator_accepts(metadata, name, value) == postgres.accepts(name, value), (name, value)


EDGES = [
    ("work_mem", "lots"), ("work_mem", "-5MB"), ("work_mem", "64MB"), ("work_mem", "0.5MB"), ("work_mem", "63kB"),
    ("work_mem", "64kB"), ("work_mem", "65535B"), ("work_mem", "65536B"), ("work_mem", "0x40"), ("work_mem", "2TB"),
    ("work_mem", "1.5 GB"), ("work_mem", "64mb"), ("shared_buffers", "0"), ("shared_buffers", "128MB"),
    ("shared_buffers", "16"), ("shared_buffers", "15"), ("shared_buffers", "127kB"), ("shared_buffers", "128kB"),
    ("shared_buffers", "banana"), ("shared_buffers", "8TB"), ("wal_buffers", "-1"), ("wal_buffers", "-2"),
    ("checkpoint_timeout", "29s"), ("checkpoint_timeout", "30s"), ("checkpoint_timeout", "29999ms"),
    ("checkpoint_timeout", "29500ms"), ("checkpoint_timeout", "0.5min"), ("checkpoint_timeout", "1d"),
    ("checkpoint_timeout", "1.0001d"), ("statement_timeout", "1500us"), ("statement_timeout", "2.5"),
    ("log_rotation_age", "90s"), ("log_rotation_age", "29s"), ("vacuum_cost_delay", "100ms"),
    ("vacuum_cost_delay", "100.5"), ("vacuum_cost_delay", "0.1s"), ("vacuum_cost_delay", "500us"),
    ("random_page_cost", "-0.5"), ("random_page_cost", "1e308"), ("random_page_cost", "inf"),
    ("jit_above_cost", "-1"), ("hot_standby", "o"), ("hot_standby", "of"), ("fsync", "yes "),
    ("wal_level", "hot_standby"), ("wal_level", "Logical"), ("wal_level", "minimal "),
    ("synchronous_commit", "1"), ("synchronous_commit", "tru"), ("search_path", '"a""b", c'),
    ("search_path", '""'), ("search_path", " "), ("search_path", "a,"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), EDGES)
def test_edges_agree_with_postgres(
    postgres: Postgres, metadata: Mapping[str, SettingInfo], name: str, value: str
) -> None:
    assert validator_accepts(metadata, name, value) == postgres.accepts(name, value)


# ------------------------------------------------------------------------------------------------- the API
# The control plane passes restart.setting_metadata(pg_version) to stacks.render_settings in service._render;
# until it does, the API still accepts these values (remove the marker with that change).


async def create(api: Api, configs: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = await api.call("POST", BASE, json={"name": unique(), "postgres_configs": configs})
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("configs", "setting", "accepts"),
    [
        ({"work_mem": "lots"}, "work_mem", "an integer from 64kB to 2147483647kB"),
        ({"work_mem": "-5MB"}, "work_mem", "an integer from 64kB to 2147483647kB"),
        ({"shared_buffers": "0"}, "shared_buffers", "an integer from 128kB to 8589934584kB"),
        ({"wal_level": "everything"}, "wal_level", "one of: minimal, replica, logical"),
        ({"jit": "maybe"}, "jit", "on, off, true, false, yes, no, 1 or 0"),
        ({"random_page_cost": "-1"}, "random_page_cost", "a number from 0 to"),
        ({"checkpoint_timeout": "10s"}, "checkpoint_timeout", "an integer from 30s to 1d"),
    ],
    ids=["not a number", "negative size", "zero buffers", "unknown enum", "not a boolean", "below range", "time"],
)
async def test_values_postgres_refuses_are_422(api: Api, configs: dict[str, str], setting: str, accepts: str) -> None:
    before = (await api.call("GET", BASE)).json()["total"]
    status, body = await create(api, configs)
    assert status == 422, body
    message = body["error"]["message"]
    assert f"setting {setting!r}" in message
    assert accepts in message
    assert (await api.call("GET", BASE)).json()["total"] == before  # nothing recorded, nothing sent


async def test_an_update_postgres_would_refuse_is_422(api: Api) -> None:
    up = await create_up(api, postgres_configs={"work_mem": "64MB"})
    url = f"{BASE}/{up['id']}"
    response = await api.call("PATCH", url, json={"postgres_configs": {"work_mem": "lots"}})
    assert response.status_code == 422, response.text
    assert "setting 'work_mem'" in response.json()["error"]["message"]
    unchanged = (await api.call("GET", url)).json()
    assert unchanged["state"] == "Up"
    assert unchanged["desired_spec"]["postgres_configs"] == {"work_mem": "64MB"}


@pytest.mark.parametrize(
    "configs",
    [{"work_mem": "64MB"}, {"shared_buffers": "128MB"}, {"work_mem": "0x4000", "wal_level": "LOGICAL", "jit": "t"},
     {"search_path": '"$user", public', "checkpoint_timeout": "0.5min", "vacuum_cost_delay": "500us"}],
    ids=["work_mem", "shared_buffers", "hex, enum case, bool prefix", "list, fractional units"],
)  # fmt: skip
async def test_values_postgres_accepts_are_accepted(api: Api, configs: dict[str, str]) -> None:
    status, body = await create(api, configs)
    assert status == 202, body
    assert body["desired_spec"]["postgres_configs"] == configs


async def test_an_instance_accepted_before_the_check_can_still_be_fixed_or_deleted(api: Api) -> None:
    """Values are checked when a spec changes; a row stored before (say work_mem=lots) stays manageable."""
    fixable = await create_up(api, postgres_configs={"work_mem": "64MB"})
    doomed = await create_up(api, postgres_configs={"work_mem": "64MB"})
    async with api.pool.connection() as conn:
        for instance in (fixable, doomed):
            await conn.execute(
                "UPDATE control.instances SET desired_spec = jsonb_set(desired_spec, '{postgres_configs,work_mem}', "
                "'\"lots\"'), actual_spec = jsonb_set(actual_spec, '{postgres_configs,work_mem}', '\"lots\"') "
                "WHERE id = %s",
                (instance["id"],),
            )
    fixed = await api.call("PATCH", f"{BASE}/{fixable['id']}", json={"postgres_configs": {"work_mem": "32MB"}})
    assert fixed.status_code == 202, fixed.text
    deleted = await api.call("DELETE", f"{BASE}/{doomed['id']}")
    assert deleted.status_code == 202, deleted.text
