"""The migrations runner on a tiny component of its own: ordering, idempotence, checksums, atomicity."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from howdah.pg import Component, Migration, MigrationError, SchemaConflict
from howdah.pg import migrations as m

COMPONENT = Component(name="migtest", package="tests.integration.migtest")


def _columns(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'migtest' ORDER BY ordinal_position"
    ).fetchall()
    return [r[0] for r in rows]


def test_applies_in_order_once(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        applied = m.upgrade(conn, COMPONENT)
        assert [(x.version, x.name) for x in applied] == [(1, "first"), (2, "second")]
        assert _columns(conn) == ["id", "name", "created_at"]
        assert m.upgrade(conn, COMPONENT) == []
        state = m.state(conn, COMPONENT)
        assert state.ok and state.applied == [1, 2]


def test_target_then_rest(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert [x.version for x in m.upgrade(conn, COMPONENT, target=1)] == [1]
        assert m.state(conn, COMPONENT).pending == [2]
        conn.execute("INSERT INTO migtest.things VALUES (1, 'kept')")
        assert [x.version for x in m.upgrade(conn, COMPONENT)] == [2]
        assert conn.execute("SELECT name FROM migtest.things").fetchall() == [("kept",)]


def test_changed_migration_is_refused(empty_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        m.upgrade(conn, COMPONENT)
        original = COMPONENT.migrations()
        edited = [original[0], Migration("migtest", 2, "second", original[1].sql + "\n-- edited\n")]
        monkeypatch.setattr(Component, "migrations", lambda self: edited)
        state = m.state(conn, COMPONENT)
        assert not state.ok and "checksum" in state.problems[0]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            m.upgrade(conn, COMPONENT)


def test_failing_migration_leaves_nothing(empty_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = [Migration("migtest", 1, "first", "CREATE SCHEMA migtest; CREATE TABLE migtest.t (id int); SELECT 1/0;")]
    monkeypatch.setattr(Component, "migrations", lambda self: broken)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="division by zero"):
            m.upgrade(conn, COMPONENT)
        assert conn.execute("SELECT to_regnamespace('migtest')").fetchone() == (None,)
        assert m.state(conn, COMPONENT).applied == []


def test_preflight_refusal_changes_nothing(empty_db: str) -> None:
    def refuse(conn: psycopg.Connection[Any]) -> None:
        raise SchemaConflict("not here")

    guarded = Component(name="migtest", package="tests.integration.migtest", preflight=refuse)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(SchemaConflict, match="not here"):
            m.upgrade(conn, guarded)
        assert conn.execute("SELECT to_regnamespace('migtest')").fetchone() == (None,)


def test_concurrent_installers_apply_once(empty_db: str) -> None:
    results: list[list[Migration]] = []
    errors: list[BaseException] = []

    def install() -> None:
        try:
            with psycopg.connect(empty_db, autocommit=True) as conn:
                results.append(m.upgrade(conn, COMPONENT))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(x.version for r in results for x in r) == [1, 2]


def test_needs_a_connection_outside_a_transaction(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(MigrationError, match="not inside a transaction"):
            m.upgrade(conn, COMPONENT)
