"""schemathesis against the control plane's own ``/openapi.json``: a bounded run in the normal suite.

The API runs in uvicorn on 127.0.0.1 (a free port, a thread of this process) against the module's database.
Every request carries a token of org ``acme``: the member's in the coverage phase; in the fuzzing phase mostly the
member's, sometimes the admin's, the viewer's or the platform admin's (org ``default``), so that the admin-only
and platform-only routes reach their logic too. Path
parameters are mostly real ones: ``org_id`` is ``acme``, ``other`` or what schemathesis generated; ``instance_id``
one of the fixture's instances (each parked in a different state), ``other``'s instance or a generated string.
Two thirds of the positive fuzzed bodies of the instance routes are drawn from plausible values (the OpenAPI
document cannot say what a DNS label, a quantity or a Postgres setting is, so bodies generated from it alone are
nearly all 422s). Before every request the fixture's rows are put back as they were, so each case meets the same
database and a failure replays.

Checks: never a 5xx, every status code documented, bodies match their schemas, content types as documented and
JSON for everything but ``/metrics``, schema-invalid input rejected with a 4xx. ``test_nul_bytes`` then sends a NUL
character to each route where a string reaches Postgres.
``HOWDAH_SCHEMATHESIS_EXAMPLES=500`` makes a deeper run (the default keeps the module under a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import strategies as st
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from schemathesis.config import SchemathesisConfig

from howdah.control.api import create_app
from howdah.control.readiness import RECONCILER
from howdah.control.service import ControlPlane
from howdah.providers.local import local_extension_catalog

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
)


def _config() -> SchemathesisConfig:
    examples = int(os.environ.get("HOWDAH_SCHEMATHESIS_EXAMPLES", "15"))
    return SchemathesisConfig.from_dict(
        {
            "seed": 20240601,  # the same cases every run: a failure found once is found again
            "generation": {"max-examples": examples, "deterministic": True, "database": "none"},
            "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        }
    )  # fmt: skip


# The document /openapi.json serves (the fixture checks that the live one is identical); building the app opens
# nothing.
SCHEMA = schemathesis.openapi.from_dict(create_app("postgresql://schema-only").openapi(), config=_config())

# (state, has_active_work) each fixture instance of org acme is parked in before every request.
PARKED = (("Up", False), ("Up", False), ("Stopped", False), ("Configuring", True), ("Error", False))
CONNECTION = {"host": "127.0.0.1", "port": 5432, "user": "app", "password": "pw", "dbname": "app"}


@dataclass
class Live:
    base_url: str
    tokens: dict[str, str]  # "member", "admin", "viewer" (of acme), "other-member", "platform" (of default)
    token_ids: list[str]
    instance_ids: list[str] = field(default_factory=list)
    other_instance: str = ""
    conn: psycopg.Connection[Any] | None = None
    session: requests.Session = field(default_factory=requests.Session)  # keep-alive

    def reset(self) -> None:
        """Put the fixture's rows back: whatever the previous case created, changed or revoked is undone."""
        assert self.conn is not None
        with self.conn.transaction():
            self.conn.execute(
                "DELETE FROM control.instances i WHERE NOT EXISTS (SELECT FROM fixture_instances f WHERE f.id = i.id)"
            )
            self.conn.execute(
                "UPDATE control.instances i SET state = f.state, desired_spec = f.desired_spec, "
                "actual_spec = f.actual_spec, connection = f.connection, has_active_work = f.has_active_work, "
                "generation = f.generation, pending_event = f.pending_event, last_error = f.last_error, "
                "error_attempts = f.error_attempts, next_retry_at = f.next_retry_at "
                "FROM fixture_instances f WHERE f.id = i.id"
            )
            self.conn.execute("DELETE FROM control.data_planes WHERE name <> 'local'")
            self.conn.execute("UPDATE control.data_planes SET description = 'this machine', draining = false")
            self.conn.execute("DELETE FROM control.tokens WHERE NOT (id::text = ANY(%s))", (self.token_ids,))
            self.conn.execute("UPDATE control.tokens SET revoked_at = NULL WHERE revoked_at IS NOT NULL")

    def call(self, case: Any) -> Any:
        self.reset()
        return case.call_and_validate(base_url=self.base_url, session=self.session, timeout=10)


LIVE: Live | None = None  # set by the fixture; the generation hook reads the real identifiers from it


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def _serving(db_url: str) -> Iterator[str]:
    """The API in uvicorn on a free port of 127.0.0.1, in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(db_url, pool_size=4), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def _tokens(db_url: str) -> tuple[dict[str, str], list[str]]:
    pool = AsyncConnectionPool(db_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False)
    await pool.open(wait=True)
    try:
        control = ControlPlane(pool)
        tokens, ids = {}, []
        for org, role in (
            ("acme", "member"), ("acme", "admin"), ("acme", "viewer"), ("other", "member"), ("default", "platform")
        ):  # fmt: skip
            token, row = await control.create_token(org, role, f"schemathesis {role}")
            tokens[role if org in ("acme", "default") else f"{org}-{role}"] = token
            ids.append(row["id"])
        # a ready platform (/readyz answers 200 for the whole run): a conductor registered what a create is
        # checked against and promised a heartbeat within an hour, and a reconciler ticked likewise
        await control.register_data_plane("local", "this machine", extensions=local_extension_catalog(), heartbeat=3600)
        await control.component_heartbeat(RECONCILER, 3600)
        return tokens, ids
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def live(db_url: str) -> Iterator[Live]:
    global LIVE
    tokens, token_ids = asyncio.run(_tokens(db_url))
    with _serving(db_url) as base_url:
        served = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
        assert served == SCHEMA.raw_schema, "the schema under test is not the one /openapi.json serves"
        state = Live(base_url, tokens, token_ids)
        with httpx.Client(base_url=base_url, timeout=10) as client:
            for i in range(len(PARKED)):
                body = {"name": f"fuzz-{i}", "stack": ("standard", "oltp")[i % 2]}
                made = client.post("/api/v1/orgs/acme/instances", json=body, headers=_bearer(tokens["member"]))
                assert made.status_code == 202, made.text
                state.instance_ids.append(made.json()["id"])
            theirs = {"name": "theirs"}
            made = client.post("/api/v1/orgs/other/instances", json=theirs, headers=_bearer(tokens["other-member"]))
            assert made.status_code == 202, made.text
            state.other_instance = made.json()["id"]
        with psycopg.connect(db_url, autocommit=True) as conn:
            for instance_id, (parked, busy) in zip(state.instance_ids, PARKED, strict=True):
                conn.execute(
                    "UPDATE control.instances SET state = %s, has_active_work = %s, actual_spec = desired_spec, "
                    "connection = %s, last_error = CASE WHEN %s = 'Error' THEN 'disk full' END, "
                    "pending_event = CASE WHEN %s OR %s = 'Error' THEN pending_event END WHERE id = %s",
                    (parked, busy, Jsonb(CONNECTION), parked, busy, parked, instance_id),
                )
            conn.execute("CREATE TABLE fixture_instances AS SELECT * FROM control.instances")
            state.conn = conn
            LIVE = state
            try:
                yield state
            finally:
                LIVE = None
                state.session.close()


# ------------------------------------------------------------------------------------ plausible request bodies
# Mostly valid values, a few invalid ones: about a third of these bodies are accepted, the rest meet the checks
# of the spec, the config engines and the FSM rather than the JSON-schema ones.
_SIZES = {
    "cpu": ("250m", "500m", "1", "2", "4", "0.5", "1.5", "64", "65", "x"),
    "memory": ("256Mi", "512Mi", "1Gi", "2Gi", "16Gi", "1.5Gi", "1024Gi", "100Mi"),
    "storage": ("1Gi", "10Gi", "100Gi", "2Ti", "64Ti", "500Mi"),
}
_SETTINGS = (
    "work_mem", "work_mem", "shared_buffers", "max_connections", "log_min_duration_statement", "random_page_cost",
    "max_wal_size", "wal_level", "shared_preload_libraries", "effective_io_concurrency", "jit", "search_path",
    "pg_stat_statements.track", "max_worker_processes", "port", "archive_mode", "no_such_setting",
)  # fmt: skip
_VALUES = ("64MB", "4MB", "1", "0", "-1", "100", "on", "off", "logical", "pg_stat_statements", "all", "1e12", "")
_EXTENSIONS = ("vector", "pg_stat_statements", "pg_trgm", "hstore", "citext", "ltree", "postgis")
_CIDRS = ("10.0.0.0/8", "0.0.0.0/0", "::1/128", "2001:db8::/32", "192.168.1.0/24", "192.168.1.1/24", "nope")


def _fields() -> dict[str, st.SearchStrategy[Any]]:
    extension = st.fixed_dictionaries(
        {"name": st.sampled_from(_EXTENSIONS)},
        optional={"enabled": st.booleans(), "version": st.sampled_from(("1.0", "0.8.0"))},
    )
    return {
        "stack": st.sampled_from(("standard", "oltp", "olap", "vectordb", "messagequeue")),
        **{name: st.sampled_from(values) for name, values in _SIZES.items()},
        "replicas": st.integers(1, 5),
        "extensions": st.lists(extension, max_size=2, unique_by=lambda e: e["name"]),
        "postgres_configs": st.dictionaries(
            st.sampled_from(_SETTINGS), st.sampled_from(_VALUES) | st.text(max_size=8), max_size=3
        ),
        "ip_allow_list": st.lists(st.sampled_from(_CIDRS), max_size=2),
        "connection_pooler": st.fixed_dictionaries(
            {}, optional={"enabled": st.booleans(), "pool_mode": st.sampled_from(("session", "transaction"))}
        ),
    }


def _some_fields(required: dict[str, st.SearchStrategy[Any]], least: int) -> st.SearchStrategy[dict[str, Any]]:
    fields = _fields()
    chosen = st.sets(st.sampled_from(sorted(fields)), min_size=least, max_size=4)
    return chosen.flatmap(lambda names: st.fixed_dictionaries({**required, **{n: fields[n] for n in names}}))


_NAME = st.from_regex(r"\A[a-z]([-a-z0-9]{0,14}[a-z0-9])?\Z")
_PLAUSIBLE = {
    "POST /api/v1/orgs/{org_id}/instances": _some_fields({"name": _NAME}, least=0),
    "PATCH /api/v1/orgs/{org_id}/instances/{instance_id}": _some_fields({}, least=1),
}


@SCHEMA.hook
def flatmap_case(context: Any, case: Any) -> st.SearchStrategy[Any]:
    """Real identifiers, a token and maybe a plausible body for a fuzzed case (drawn by Hypothesis, so a failure
    shrinks and replays)."""
    assert LIVE is not None, "the live fixture is not set up"
    params = dict(case.path_parameters or {})
    drawn: dict[str, st.SearchStrategy[Any]] = {
        "who": st.sampled_from(("member", "member", "admin", "viewer", "platform"))
    }
    if "org_id" in params:
        drawn["org_id"] = st.sampled_from(("acme", "acme", "acme", "other", params["org_id"]))
    if "instance_id" in params:
        drawn["instance_id"] = st.sampled_from((*LIVE.instance_ids, LIVE.other_instance, params["instance_id"]))
    if "token_id" in params:
        drawn["token_id"] = st.sampled_from((*LIVE.token_ids, params["token_id"]))
    if "name" in params:
        drawn["name"] = st.sampled_from(
            ("standard", "oltp", "OLAP", "vectordb", "messagequeue", "local", "dp-fuzz", params["name"])
        )
    plausible = _PLAUSIBLE.get(case.operation.label)
    if plausible is not None and not (case.meta and case.meta.generation.mode.is_negative):
        drawn["body"] = st.one_of(st.none(), plausible, plausible)

    def apply(values: dict[str, Any]) -> Any:
        case.headers = {**(case.headers or {}), **_bearer(LIVE.tokens[values.pop("who")])}
        body = values.pop("body", None)
        if body is not None:
            case.body = body
        if values:
            case.path_parameters = {**params, **values}
        return case

    return st.fixed_dictionaries(drawn).map(apply)


def _place(case: Any, live: Live) -> None:
    """Coverage-phase cases do not pass through the hook: the member token and org acme's first instance."""
    if "Authorization" in (case.headers or {}):
        return
    case.headers = {**(case.headers or {}), **_bearer(live.tokens["member"])}
    params = case.path_parameters or {}
    if "org_id" in params:
        params["org_id"] = "acme"
    if "instance_id" in params:
        params["instance_id"] = live.instance_ids[0]


def _assert_json(case: Any, response: Any) -> None:
    if response.status_code != 204 and case.operation.path != "/metrics":
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), f"{case.operation.label}: {content_type}"


@SCHEMA.parametrize()
def test_api_matches_its_schema(case: Any, live: Live) -> None:
    _place(case, live)
    _assert_json(case, live.call(case))


# ------------------------------------------------------------------------------------------- NUL characters
_NUL = "a\x00b"
_INSTANCE = "/api/v1/orgs/{org_id}/instances/{instance_id}"
# (method, path, what carries the NUL): every route where a string reaches Postgres as text.
_NUL_CASES = [
    ("GET", _INSTANCE, "path"),
    ("PATCH", _INSTANCE, "path"),
    ("DELETE", _INSTANCE, "path"),
    ("POST", _INSTANCE + "/restart", "path"),
    ("POST", _INSTANCE + "/stop", "path"),
    ("POST", _INSTANCE + "/start", "path"),
    ("GET", "/api/v1/orgs/{org_id}/instances", "query"),
    ("DELETE", "/api/v1/orgs/{org_id}/tokens/{token_id}", "path"),
    ("POST", "/api/v1/orgs/{org_id}/tokens", "body"),
    ("POST", "/api/v1/data-planes", "body"),
    ("PATCH", "/api/v1/data-planes/{name}", "body"),
]


@pytest.mark.parametrize(("method", "path", "where"), _NUL_CASES, ids=[f"{m} {p} ({w})" for m, p, w in _NUL_CASES])
def test_nul_bytes(method: str, path: str, where: str, live: Live) -> None:
    """A NUL in a string gets a documented 4xx, not a 500 (Postgres cannot store it in text; psycopg raises
    DataError). Generated NULs rarely land where they reach the database, so each such route is tried here."""
    operation = SCHEMA[path][method]
    params = {"org_id": "acme", "instance_id": live.instance_ids[0], "token_id": live.token_ids[2], "name": "local"}
    path_parameters = {name: value for name, value in params.items() if "{" + name + "}" in path}
    query, body = None, None
    if where == "path":
        path_parameters[next(n for n in ("instance_id", "token_id") if n in path_parameters)] = _NUL
    elif where == "query":
        query = {"state": _NUL}
    elif path.endswith("/tokens"):
        body = {"role": "viewer", "name": _NUL}
    else:
        body = {"name": "dp-nul", "description": _NUL}
    if method == "PATCH" and "instance_id" in path:
        body = {"replicas": 2}
    extra = {"body": body} if body is not None else {}
    who = "platform" if "data-planes" in path else "admin"
    case = operation.Case(path_parameters=path_parameters, query=query, headers=_bearer(live.tokens[who]), **extra)
    _assert_json(case, live.call(case))
