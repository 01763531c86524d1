"""The console's pages stay cheap as tables grow: their queries read an index, page by page, and never scan or
count a whole table (checked with Postgres's own plans over 100,000 finished workflows)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from howdah.console._queries import QUERIES

WORKFLOWS = 100_000


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _plan(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = psycopg.ClientCursor(conn).mogrify(QUERIES[query], params)
    row = conn.execute(f"EXPLAIN (FORMAT JSON) {rendered}").fetchone()
    assert row is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return list(_nodes(document[0]["Plan"]))


@pytest.fixture(scope="module")
def many_workflows(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO howdah.workflows (id, name, args, status, queue_name, created_at, finished_at) "
            "SELECT 'plan-' || i, 'job', '{}', CASE WHEN i %% 10 = 0 THEN 'failed' ELSE 'succeeded' END, 'q', "
            "       now() - make_interval(secs => i), now() FROM generate_series(1, %s) AS i",
            (WORKFLOWS,),
        )
        conn.execute("ANALYZE howdah.workflows")
    return db_url


@pytest.mark.parametrize("status", ["succeeded", "failed", "running"])
@pytest.mark.parametrize("cursor", [False, True])
def test_a_workflows_page_reads_the_status_index_and_stops_at_the_page(
    many_workflows: str, status: str, cursor: bool
) -> None:
    params = {"status": status, "before_at": "now" if cursor else None, "before_id": "plan-5", "limit": 51}
    with psycopg.connect(many_workflows) as conn:
        nodes = _plan(conn, "workflows_page", params)
    kinds = [node["Node Type"] for node in nodes]
    assert kinds[0] == "Limit", kinds
    assert "Seq Scan" not in kinds and "Sort" not in kinds and "Aggregate" not in kinds, kinds
    assert any(node.get("Index Name") == "workflows_status_created" for node in nodes), kinds


@pytest.mark.parametrize("cursor", [False, True])
def test_a_workflows_page_of_one_name_reads_the_status_and_name_index(many_workflows: str, cursor: bool) -> None:
    params = {"status": "succeeded", "name": "job", "before_at": "now" if cursor else None, "before_id": "plan-5",
              "limit": 51}  # fmt: skip
    with psycopg.connect(many_workflows) as conn:
        nodes = _plan(conn, "workflows_page_named", params)
    kinds = [node["Node Type"] for node in nodes]
    assert kinds[0] == "Limit", kinds
    assert "Seq Scan" not in kinds and "Sort" not in kinds and "Aggregate" not in kinds, kinds
    assert any(node.get("Index Name") == "workflows_status_name_created" for node in nodes), kinds


def test_the_instances_table_reads_the_org_index(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO control.orgs (id, name) SELECT 'plan-org-' || i, 'org ' || i "
            "FROM generate_series(1, 200) AS i ON CONFLICT DO NOTHING"
        )
        conn.execute("INSERT INTO control.data_planes (name, queue_name) VALUES ('plan-dp', 'plan_dp') "
                     "ON CONFLICT DO NOTHING")  # fmt: skip
        conn.execute(
            "INSERT INTO control.instances (org_id, name, data_plane, state, desired_spec) "
            "SELECT 'plan-org-' || (i % 200 + 1), 'db-' || i, 'plan-dp', 'Up', '{}' FROM generate_series(1, 20000) i"
        )
        conn.execute("ANALYZE control.instances")
        nodes = _plan(conn, "instances_of_org", {"org_id": "plan-org-7", "deleted": False, "limit": 500})
    kinds = [node["Node Type"] for node in nodes]
    assert "Seq Scan" not in kinds, kinds  # only the org's rows are read, through one of its indexes
    assert any(str(node.get("Index Name", "")).startswith("instances_") for node in nodes), kinds
