"""The extension catalog (pure): control-file parsing, merging with the upstream facts, the JSON round trip,
preload order and the operator's own preloading."""

from __future__ import annotations

import json
from typing import Any

import pytest

from howdah.control.extensions import (
    FALLBACK_CATALOG,
    KNOWN_EXTENSIONS,
    SETTING_CONTEXTS,
    ExtensionCatalog,
    ExtensionInfo,
    catalog_from_control_files,
    declared_catalog,
    parse_control_file,
)

PG_STAT_STATEMENTS = """# pg_stat_statements extension
comment = 'track planning and execution statistics of all SQL statements executed'
default_version = '1.12'
module_pathname = '$libdir/pg_stat_statements'
relocatable = true
"""
PLPGSQL = """# plpgsql extension
comment = 'PL/pgSQL procedural language'
default_version = '1.0'
module_pathname = '$libdir/plpgsql'
relocatable = false
schema = pg_catalog
superuser = true
trusted = true
"""
EARTHDISTANCE = "default_version = '1.2'\nrelocatable = true\nrequires = 'cube'\n"
CONTROL_FILES = {
    "pg_stat_statements": PG_STAT_STATEMENTS,
    "plpgsql": PLPGSQL,
    "earthdistance": EARTHDISTANCE,
    "cube": "default_version = '1.5'\nrelocatable = true\n",
    "cube--1.4": "requires = 'nothing'\n",  # a secondary control file: not an extension of its own
}


def test_parse_control_file() -> None:
    assert parse_control_file(PLPGSQL) == {
        "comment": "PL/pgSQL procedural language",
        "default_version": "1.0",
        "module_pathname": "$libdir/plpgsql",
        "relocatable": "false",
        "schema": "pg_catalog",
        "superuser": "true",
        "trusted": "true",
    }
    text = "Comment = 'it''s # not a comment' # but this is\nrequires = 'a, b'\n\n   # only a comment\n"
    assert parse_control_file(text) == {"comment": "it's # not a comment", "requires": "a, b"}
    assert parse_control_file("") == {}


@pytest.mark.parametrize("bad", ["= 'no name'", "comment = 'unterminated", "9lives = 1"])
def test_parse_control_file_refuses_other_shapes(bad: str) -> None:
    with pytest.raises(ValueError, match="line 2 of the control file"):
        parse_control_file("relocatable = true\n" + bad)


def test_catalog_from_control_files_merges_the_upstream_facts() -> None:
    catalog = catalog_from_control_files(CONTROL_FILES, source="test binaries")
    assert catalog.names() == ["cube", "earthdistance", "pg_stat_statements", "plpgsql"]
    assert catalog.get("pg_stat_statements") == ExtensionInfo(
        "pg_stat_statements", version="1.12", preload=("pg_stat_statements",), relocatable=True
    )
    assert catalog.get("plpgsql") == ExtensionInfo("plpgsql", version="1.0", schema="pg_catalog", relocatable=False)
    assert catalog.get("earthdistance") == ExtensionInfo("earthdistance", version="1.2", requires=("cube",))
    assert catalog.fixed_schema("plpgsql") and not catalog.fixed_schema("cube") and not catalog.fixed_schema("x")
    assert catalog.missing(["cube", "postgis", "pg_cron"]) == ["postgis", "pg_cron"]
    assert catalog.preload_map() == {"pg_stat_statements": ("pg_stat_statements",)}
    assert catalog.setting_contexts == SETTING_CONTEXTS and catalog.source == "test binaries"


def test_json_round_trip() -> None:
    catalog = declared_catalog(
        ["pg_stat_statements", "pg_cron", "vector", "uuid-ossp"],
        operator_preload=["pg_stat_statements"],
        setting_contexts={"cron.host": "postmaster"},
        source="an image",
    )
    stored = json.loads(json.dumps(catalog.to_json()))  # as it comes back from a jsonb column
    assert ExtensionCatalog.from_json(stored) == catalog
    assert [e["name"] for e in stored["extensions"]] == ["pg_cron", "pg_stat_statements", "uuid-ossp", "vector"]
    assert stored["extensions"][0] == {
        "name": "pg_cron", "version": None, "preload": ["pg_cron"], "requires": [], "schema": "pg_catalog",
        "relocatable": False, "operator_preload": False,
    }  # fmt: skip
    assert ExtensionCatalog.from_json(FALLBACK_CATALOG.to_json()) == FALLBACK_CATALOG


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (None, "list of extensions"),
        ({"extensions": {}}, "list of extensions"),
        ({"extensions": [{"version": "1"}]}, "with a name"),
        ({"extensions": [{"name": "x", "preload": "x"}]}, "preload must be a list"),
        ({"extensions": [{"name": "x", "requires": [""]}]}, "requires must be a list"),
        ({"extensions": [{"name": "x", "schema": 1}]}, "strings or null"),
        ({"extensions": [{"name": "x", "operator_preload": "yes"}]}, "booleans"),
        ({"extensions": [], "setting_contexts": {"a.b": 1}}, "setting_contexts"),
        ({"extensions": [], "source": 3}, "source"),
    ],
)
def test_from_json_refuses_malformed_catalogs(data: Any, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ExtensionCatalog.from_json(data)


def test_preload_order_puts_requirements_first_and_each_library_once() -> None:
    catalog = ExtensionCatalog(
        {
            "a": ExtensionInfo("a", preload=("lib_a",), requires=("b",)),
            "b": ExtensionInfo("b", preload=("lib_b",), requires=("a",)),  # a cycle ends
            "c": ExtensionInfo("c", preload=("lib_b", "lib_c")),
        }
    )
    assert catalog.preload(["a"]) == ("lib_b", "lib_a")
    assert catalog.preload(["c", "a", "unknown"]) == ("lib_b", "lib_c", "lib_a")
    assert catalog.preload([]) == ()


def test_extensions_come_after_what_they_require() -> None:
    """CloudNativePG's Database resource creates extensions without CASCADE: requirements go first."""
    catalog = declared_catalog(["cube", "earthdistance", "postgis", "postgis_topology", "hstore"])
    assert catalog.with_requirements(["earthdistance", "hstore"]) == ["cube", "earthdistance", "hstore"]
    assert catalog.with_requirements(["postgis_topology", "postgis"]) == ["postgis", "postgis_topology"]
    assert catalog.with_requirements(["unknown"]) == ["unknown"]


def test_the_operator_preloads_the_libraries_of_the_settings_it_manages() -> None:
    catalog = declared_catalog(["pg_stat_statements", "pgaudit", "vector"], operator_preload=["pgaudit"])
    assert catalog.operator_preloaded(["pgaudit.log", "work_mem", "pg_stat_statements.track"]) == ("pgaudit",)
    assert catalog.operator_preloaded(["PGAUDIT.log_catalog"]) == ("pgaudit",)
    assert catalog.operator_preloaded(["work_mem"]) == ()


def test_the_upstream_table() -> None:
    assert KNOWN_EXTENSIONS["pg_partman"].preload == ("pg_partman_bgw",)
    assert KNOWN_EXTENSIONS["pg_stat_kcache"].preload == ("pg_stat_statements", "pg_stat_kcache")
    assert KNOWN_EXTENSIONS["pg_cron"].schema == "pg_catalog"
    assert all(name == info.name for name, info in KNOWN_EXTENSIONS.items())
    # an extension nobody knows is declared with no needs at all
    assert declared_catalog(["mystery"]).get("mystery") == ExtensionInfo("mystery")
