"""``ctx.http`` against a real HTTP server on 127.0.0.1: the ``Idempotency-Key`` header (``<workflow id>:<step
name>``, the same on every retry) and the run's ``Fencing-Token``, 5xx retried, 4xx permanent, the response
recorded and replayed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from howdah.durable import DurableApp, RetryPolicy, WorkflowContext, WorkflowFailed

from ._helpers import Registry, async_wait_until, new_id, running

WORKFLOWS = Registry()
QUICK = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05)


@dataclass
class Server:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


def make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.handle_any()

        def do_GET(self) -> None:
            self.handle_any()

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            with server.lock:
                seen = [r for r in server.requests if r["path"] == self.path]
                server.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "key": self.headers.get("Idempotency-Key"),
                        "fence": self.headers.get("Fencing-Token"),
                        "body": json.loads(body) if body else None,
                    }
                )
            if self.path.startswith("/flaky") and not seen:
                self.answer(503, "text/plain", b"try later")
            elif self.path.startswith("/down"):
                self.answer(500, "text/plain", b"down")
            elif self.path.startswith("/missing"):
                self.answer(404, "text/plain", b"no such thing")
            elif self.path.startswith("/text"):
                self.answer(200, "text/plain", b"plain words")
            else:
                self.answer(200, "application/json", json.dumps({"ok": True, "path": self.path}).encode())

        def answer(self, status: int, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server("")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@WORKFLOWS.workflow()
async def caller(ctx: WorkflowContext, args: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {k: args[k] for k in ("name", "idempotency_key") if k in args}
    response = await ctx.http(args.get("method", "POST"), args["url"], json=args.get("json"), retry=QUICK, **options)
    if args.get("pause"):
        await ctx.wait_for_signal("go")  # the next run replays the call from its checkpoint
    return {"status": response["status"], "body": response["body"]}


async def test_a_5xx_is_retried_with_the_same_idempotency_key(app: DurableApp, server: Server) -> None:
    url = f"{server.url}/flaky/charge"
    async with running(app):
        handle = await app.start("caller", {"url": url, "json": {"amount": 5}}, workflow_id=new_id())
        result = await handle.result(20)
    assert result == {"status": 200, "body": {"ok": True, "path": "/flaky/charge"}}
    requests = server.to("/flaky/charge")
    assert len(requests) == 2
    assert {r["key"] for r in requests} == {f"{handle.workflow_id}:POST {url}"}
    assert {r["fence"] for r in requests} == {"1"}  # the fencing token of the run that made the calls
    assert all(r["body"] == {"amount": 5} and r["method"] == "POST" for r in requests)
    [step] = await app.steps(handle.workflow_id)
    assert (step.name, step.attempts) == (f"POST {url}", 2)
    assert step.result is not None and step.result["value"]["status"] == 200


async def test_a_4xx_fails_the_workflow_at_once(app: DurableApp, server: Server) -> None:
    url = f"{server.url}/missing"
    async with running(app):
        handle = await app.start("caller", {"url": url, "method": "GET"}, workflow_id=new_id())
        with pytest.raises(WorkflowFailed):
            await handle.result(20)
    assert len(server.to("/missing")) == 1
    error = (await app.get(handle.workflow_id)).error
    assert error is not None and error["type"] == "PermanentError"
    assert "404" in error["message"] and "no such thing" in error["message"]


async def test_persistent_5xx_fails_after_max_attempts(app: DurableApp, server: Server) -> None:
    url = f"{server.url}/down"
    async with running(app):
        handle = await app.start("caller", {"url": url}, workflow_id=new_id())
        with pytest.raises(WorkflowFailed):
            await handle.result(20)
    assert len(server.to("/down")) == QUICK.max_attempts
    error = (await app.get(handle.workflow_id)).error
    assert error is not None and error["type"] == "TransientError" and "500" in error["message"]


async def test_the_key_follows_the_step_name_or_an_explicit_key(app: DurableApp, server: Server) -> None:
    async with running(app):
        named = await app.start("caller", {"url": f"{server.url}/a", "name": "notify"}, workflow_id=new_id())
        explicit = await app.start(
            "caller", {"url": f"{server.url}/b", "idempotency_key": "order-42"}, workflow_id=new_id()
        )
        await named.result(20)
        await explicit.result(20)
    assert [r["key"] for r in server.to("/a")] == [f"{named.workflow_id}:notify"]
    assert [r["key"] for r in server.to("/b")] == ["order-42"]


async def test_the_response_is_recorded_and_replayed_without_a_second_call(app: DurableApp, server: Server) -> None:
    url = f"{server.url}/text"
    async with running(app):
        handle = await app.start("caller", {"url": url, "method": "GET", "pause": True}, workflow_id=new_id())

        async def waiting() -> bool:
            return (await app.get(handle.workflow_id)).status == "waiting"

        await async_wait_until(waiting, what="the workflow to wait")
        await app.signal(handle.workflow_id, "go")
        assert await handle.result(20) == {"status": 200, "body": "plain words"}
    assert len(server.to("/text")) == 1
    assert (await app.get(handle.workflow_id)).attempts >= 2
