"""df.http and df.http_multipart against a real local HTTP server, run by an in-process Howdah worker whose egress
policy explicitly allows that server (pg_durable's API reference: "df.http", "df.http_multipart"; its HTTP
security document: the privilege check, the address blocklist, redirects), and refused by the default policy."""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from howdah.df import EgressPolicy, install
from howdah.df._egress import Address
from howdah.durable import DurableApp

from ..durable._helpers import running
from .test_df import Conn, finish, one

LOCAL = EgressPolicy(allow_private=("127.0.0.1",))


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    port: int
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status, ctype, payload, extra = 200, "application/json", b"", {}
            if self.path.startswith("/echo"):
                payload = json.dumps(
                    {"method": self.command, "body": body.decode(errors="replace"), "x": self.headers.get("X-Key")}
                )
                payload = payload.encode()
            elif self.path == "/binary":
                ctype, payload = "application/octet-stream", bytes(range(256))
            elif self.path == "/redirect":
                status, extra = 302, {"Location": f"http://127.0.0.1:{state.port}/target"}
            elif self.path == "/unavailable":
                status, ctype, payload = 503, "text/plain", b"down for maintenance " * 100
            elif self.path == "/missing":
                status, ctype, payload = 404, "text/plain", b"no such thing"
            elif self.path == "/flaky":  # 503 on the first request, 200 after
                if [x.path for x in state.seen].count("/flaky") == 1:
                    status, ctype, payload = 503, "text/plain", b"try again"
            elif self.path == "/big":
                ctype, payload = "text/plain", b"x" * 200_000
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@asynccontextmanager
async def worker(db_url: str, policy: EgressPolicy | None = None, **options: Any) -> AsyncIterator[DurableApp]:
    app = DurableApp(db_url, lease=5, retention=None, pool_size=8)
    install(app, http=policy, **options)
    async with app, running(app):
        yield app


async def error_of(conn: Conn, instance: str) -> str:
    return str(await one(conn, "SELECT error FROM df.instances WHERE id = %s", (instance,)))


# ------------------------------------------------------------------------------------------------ requests
async def test_a_request_returns_pg_durables_envelope_and_bindings_reach_it(
    db_url: str, conn: Conn, server: Server
) -> None:
    """API reference, df.http: "Returns a JSON envelope: status, body, encoding, headers, ok, duration_ms. Address
    its fields directly with dot notation" — and $var substitution in the URL and the body."""
    graph = f"""'SELECT ''k-42'' AS key, 7 AS n' |=> 'v'
        ~> (df.http('{server.url("/echo")}?n=$v.n', 'POST', '{{"n": $v.n}}', '{{"X-Key": "$v.key"}}'::jsonb) |=> 'resp')
        ~> df.if('SELECT $resp.ok', 'SELECT ''hooray'' AS said, $resp.status AS status', 'SELECT ''oh no'' AS said')"""
    async with worker(db_url, LOCAL):
        instance, status, result = await finish(conn, graph)
    assert status == "completed", await error_of(conn, instance)
    assert result["rows"] == [{"said": "hooray", "status": 200}]
    assert [(s.method, s.path, s.body, s.headers.get("x-key")) for s in server.seen] == [
        ("POST", "/echo?n=7", b'{"n": 7}', "k-42")
    ]
    envelope = await one(conn, "SELECT result FROM df.nodes WHERE instance_id = %s AND node_type = 'HTTP'", (instance,))
    assert set(envelope) == {"status", "body", "encoding", "headers", "ok", "duration_ms"}
    assert (envelope["status"], envelope["ok"], envelope["encoding"]) == (200, True, "text")
    assert json.loads(envelope["body"]) == {"method": "POST", "body": '{"n": 7}', "x": "k-42"}
    assert envelope["headers"]["content-type"] == "application/json"
    assert isinstance(envelope["duration_ms"], int)


async def test_binary_bodies_are_base64_and_4xx_is_a_result_5xx_a_failure(
    db_url: str, conn: Conn, server: Server
) -> None:
    async with worker(db_url, LOCAL):
        _, status, binary = await finish(conn, f"df.http('{server.url('/binary')}', 'GET')")
        _, missing_status, missing = await finish(conn, f"df.http('{server.url('/missing')}', 'GET')")
        failed, failed_status, _ = await finish(conn, f"df.http('{server.url('/unavailable')}', 'GET')")
    assert status == "completed" and binary["encoding"] == "base64"
    assert base64.b64decode(binary["body"]) == bytes(range(256))
    assert (missing_status, missing["status"], missing["ok"], missing["body"]) == (
        "completed",
        404,
        False,
        "no such thing",
    )
    assert failed_status == "failed"
    error = await error_of(conn, failed)
    assert "HTTP 503" in error and "down for maintenance" in error and "[truncated," in error


async def test_a_5xx_answer_is_retried_when_df_start_allows_attempts(db_url: str, conn: Conn, server: Server) -> None:
    async with worker(db_url, LOCAL):
        _, status, result = await finish(
            conn, f"df.http('{server.url('/flaky')}', 'GET'), max_attempts => 2, max_backoff => '1 second'"
        )
    assert (status, result["status"]) == ("completed", 200)
    assert server.paths() == ["/flaky", "/flaky"]


async def test_redirects_are_not_followed(db_url: str, conn: Conn, server: Server) -> None:
    """HTTP security, "Redirect blocking": the 3xx is the node's result; its target is never contacted."""
    async with worker(db_url, LOCAL):
        _, status, result = await finish(conn, f"df.http('{server.url('/redirect')}', 'GET')")
    assert (status, result["status"], result["ok"]) == ("completed", 302, False)
    assert result["headers"]["location"].endswith("/target")
    assert server.paths() == ["/redirect"]


async def test_multipart_sends_its_parts_and_takes_a_binary_handoff_whole(
    db_url: str, conn: Conn, server: Server
) -> None:
    """API reference, df.http_multipart: parts of name, data_b64, filename, content_type; "data_b64 substitution is
    whole-value only" — the base64 body of an earlier response becomes a part verbatim; splicing is an error."""
    upload = server.url("/echo-upload")
    parts = (
        "jsonb_build_array(jsonb_build_object('name', 'file', 'filename', 'b.bin', "
        "'content_type', 'application/octet-stream', 'data_b64', '$bin.body'), "
        "jsonb_build_object('name', 'note', 'data_b64', encode('hello'::bytea, 'base64')))"
    )
    spliced = "jsonb_build_array(jsonb_build_object('name', 'f', 'data_b64', 'QUJD$bin.body'))"
    fetch = f"(df.http('{server.url('/binary')}', 'GET') |=> 'bin')"
    async with worker(db_url, LOCAL):
        instance, status, result = await finish(
            conn,
            f"{fetch} ~> df.http_multipart('{upload}', 'POST', {parts})",
        )
        bad, bad_status, _ = await finish(
            conn,
            f"{fetch} ~> df.http_multipart('{upload}', 'POST', {spliced})",
        )
    assert status == "completed", await error_of(conn, instance)
    assert result["status"] == 200
    sent = next(s for s in server.seen if s.path == "/echo-upload")
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="b.bin"' in sent.body and bytes(range(256)) in sent.body
    assert b'name="note"' in sent.body and b"hello" in sent.body
    assert bad_status == "failed" and "whole reference" in await error_of(conn, bad)
    assert [s.path for s in server.seen].count("/echo-upload") == 1  # the spliced one never went out


async def test_a_response_larger_than_the_cap_fails_the_node(db_url: str, conn: Conn, server: Server) -> None:
    policy = EgressPolicy(allow_private=("127.0.0.1",), max_response_bytes=100_000)
    async with worker(db_url, policy):
        failed, status, _ = await finish(conn, f"df.http('{server.url('/big')}', 'GET')")
    assert status == "failed" and "exceeds the maximum of 100000 bytes" in await error_of(conn, failed)


# ------------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::1]", "169.254.169.254", "10.0.0.1", "[::ffff:127.0.0.1]", "0.0.0.0"],
)
async def test_the_default_policy_reaches_no_internal_address(
    db_url: str, conn: Conn, server: Server, host: str
) -> None:
    """HTTP security, "IP Blocklist": loopback, private, link-local (cloud metadata), IPv4-mapped IPv6 — as
    literals or after DNS — refused before anything is sent; the error names the host, never the address."""
    async with worker(db_url):
        failed, status, _ = await finish(
            conn, f"df.http('http://{host}:{server.port}/echo', 'GET', timeout_seconds => 5)"
        )
    assert status == "failed"
    error = await error_of(conn, failed)
    assert "Blocked: the resolved IP address for" in error and "restricted range" in error
    assert server.seen == []


async def test_the_address_checked_is_the_address_reached(db_url: str, conn: Conn, server: Server) -> None:
    """DNS rebinding: the host is resolved once, every address it resolves to is checked, and the connection goes
    to the checked address (a name no public DNS knows reaches the local server, with its own Host header)."""
    answers: dict[str, list[Address]] = {
        "service.test": [ipaddress.ip_address("127.0.0.1")],
        "mixed.test": [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.1.2.3")],
    }

    async def resolver(host: str, port: int) -> list[Address]:
        return answers[host]

    policy = EgressPolicy(allow_private=("service.test",))
    async with worker(db_url, policy, resolver=resolver):
        _, status, result = await finish(conn, f"df.http('{server.url('/echo', 'service.test')}', 'GET')")
        mixed, mixed_status, _ = await finish(conn, f"df.http('http://mixed.test:{server.port}/echo', 'GET')")
    assert (status, result["status"]) == ("completed", 200)
    assert [(s.path, s.headers["host"]) for s in server.seen] == [("/echo", f"service.test:{server.port}")]
    assert mixed_status == "failed" and "'mixed.test'" in await error_of(conn, mixed)


async def test_pg_durables_allowed_domains_setting_limits_the_hosts(db_url: str, conn: Conn, server: Server) -> None:
    """HTTP security, "Endpoint Allow-List": pg_durable.http_allowed_domains, set on the database, is the
    complete list of hosts; a bare IP address is refused under it."""
    dbname = await one(conn, "SELECT current_database()")
    await conn.execute(f"ALTER DATABASE {dbname} SET pg_durable.http_allowed_domains = 'localhost, *.example.org'")
    try:
        async with worker(db_url, EgressPolicy(allow_private=("localhost", "127.0.0.1", "::1"))):
            _, ok_status, ok = await finish(conn, f"df.http('{server.url('/echo', 'localhost')}', 'GET')")
            ip, ip_status, _ = await finish(conn, f"df.http('{server.url('/echo')}', 'GET')")
            other, other_status, _ = await finish(conn, "df.http('https://example.com/', 'GET')")
    finally:
        await conn.execute(f"ALTER DATABASE {dbname} RESET pg_durable.http_allowed_domains")
    assert (ok_status, ok["status"]) == ("completed", 200)
    assert ip_status == "failed" and "bare IP addresses are not permitted" in await error_of(conn, ip)
    assert other_status == "failed"
    assert "'example.com' is not in the allowed endpoint list" in await error_of(conn, other)
    assert server.paths() == ["/echo"]


async def test_http_needs_its_own_grant_also_for_a_node_written_by_hand(
    db_url: str, conn: Conn, server: Server
) -> None:
    """HTTP security, "PostgreSQL Privilege Check": df.grant_usage(role) gives no df.http; a node written into
    df.start's JSON by hand is refused when it runs (nothing sent), until include_http => true."""
    role = f"frank_{uuid.uuid4().hex[:6]}"
    await conn.execute(f"CREATE ROLE {role}")
    await conn.execute("SELECT df.grant_usage(%s)", (role,))
    config = json.dumps({"url": server.url("/echo"), "method": "GET", "timeout_seconds": 5})
    by_hand = json.dumps({"node_type": "HTTP", "query": config})
    async with worker(db_url, LOCAL):
        await conn.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute(f"SELECT df.http('{server.url('/echo')}', 'GET')")
        refused, refused_status, _ = await finish(conn, "%s", (by_hand,))
        await conn.execute("RESET ROLE")
        await conn.execute("SELECT df.grant_usage(%s, include_http => true)", (role,))
        await conn.execute(f"SET ROLE {role}")
        _, allowed_status, allowed = await finish(conn, "%s", (by_hand,))
        await conn.execute("RESET ROLE")
    assert refused_status == "failed"
    assert f"Blocked: role '{role}' does not have EXECUTE privilege on df.http()" in await error_of(conn, refused)
    assert (allowed_status, allowed["status"]) == ("completed", 200)
    assert server.paths() == ["/echo"]  # the refused one sent nothing


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("df.http('file:///etc/passwd', 'GET')", "unsupported URL scheme"),
        ("df.http('https://example.com/', 'TRACE')", "unsupported HTTP method"),
        ("df.http('https://example.com/', 'GET', NULL, '[1]'::jsonb)", "headers must be a JSON object of strings"),
        ("df.http('https://example.com/', 'GET', timeout_seconds => 0)", "timeout_seconds must be between 1 and 3600"),
        ("df.http_multipart('https://example.com/', 'POST', '[]'::jsonb)", "parts must be a non-empty JSON array"),
        ("df.http_multipart('https://example.com/', 'POST', '[{\"name\": \"a\"}]'::jsonb)", "'data_b64'"),
    ],
)
async def test_bad_http_nodes_are_refused_when_built(conn: Conn, expression: str, message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        await conn.execute(f"SELECT {expression}")


async def test_explain_shows_an_http_nodes_method_and_url_without_its_query(conn: Conn) -> None:
    graph = "df.http('https://api.example.com/v1/things?sig=SECRET', 'GET') |=> 'resp' ~> 'SELECT $resp.ok'"
    lines = (await one(conn, f"SELECT df.explain({graph})")).splitlines()
    assert lines == ["→ HTTP GET https://api.example.com/v1/things |=> 'resp'", "→ SQL: SELECT $resp.ok"]
