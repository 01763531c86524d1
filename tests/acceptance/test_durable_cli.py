"""``howdah durable install / upgrade / verify / sql``: the durable schema on one's own Postgres (with the queue
schema it runs on), the way ``howdah queue`` installs its own."""

from __future__ import annotations

from typing import Any

import psycopg
from typer.testing import CliRunner

from howdah.cli import app
from howdah.durable import COMPONENT as DURABLE
from howdah.queue import COMPONENT as QUEUE

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_install_on_an_empty_database_then_verify(empty_db: str) -> None:
    missing = run("durable", "verify", "--database-url", empty_db)
    assert missing.exit_code == 1 and "the queue and durable schemas are not installed" in missing.output
    refused = run("durable", "upgrade", "--database-url", empty_db)
    assert refused.exit_code == 1 and "howdah durable install" in refused.output
    installed = run("durable", "install", "--database-url", empty_db)
    assert installed.exit_code == 0, installed.output
    assert "installed queue schema: 0001_" in installed.output and "installed durable schema: 0001_" in installed.output
    verified = run("durable", "verify", "--database-url", empty_db)
    assert verified.exit_code == 0, verified.output
    assert "queue schema OK" in verified.output and "durable schema OK" in verified.output
    again = run("durable", "install", "--database-url", empty_db)
    assert again.exit_code == 0 and "durable schema already installed" in again.output
    upgraded = run("durable", "upgrade", "--database-url", empty_db)
    assert upgraded.exit_code == 0 and "durable schema is up to date" in upgraded.output


def test_verify_reports_a_schema_changed_after_it_was_applied(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE howdah_meta.schema_migrations SET checksum = 'edited' WHERE component = 'durable' AND version = 1"
        )
    try:
        changed = run("durable", "verify", "--database-url", db_url)
        assert changed.exit_code == 1 and "0001_workflows was changed after it was applied" in changed.output
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE howdah_meta.schema_migrations SET checksum = %s WHERE component = 'durable' AND version = 1",
                (DURABLE.migrations()[0].checksum,),
            )


def test_sql_prints_what_install_runs() -> None:
    printed = run("durable", "sql")
    assert printed.exit_code == 0
    assert printed.output.strip() == f"{QUEUE.sql()}\n{DURABLE.sql()}".strip()
    assert "CREATE FUNCTION howdah.start_workflow" in printed.output


def test_df_install_on_an_empty_database_then_verify_and_the_extension_is_never_replaced(empty_db: str) -> None:
    """``howdah df install`` brings the queue, durable and df schemas; a database with pg_durable's extension
    would be refused untouched (the preflight looks for it), and one with a foreign ``df`` schema is."""
    installed = run("df", "install", "--database-url", empty_db)
    assert installed.exit_code == 0, installed.output
    verified = run("df", "verify", "--database-url", empty_db)
    assert verified.exit_code == 0, verified.output
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT df.status('00000000')").fetchone() == (None,)


def test_df_refuses_a_foreign_df_schema(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA df")
    refused = run("df", "install", "--database-url", empty_db)
    assert refused.exit_code != 0 and "schema named df that Howdah did not install" in refused.output
