"""An HTTP node's steps: the starting role's right to call df.http checked, the request built from the node's
config (its {variables} and $bindings substituted), then sent under the worker's egress policy."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from howdah.df._bindings import BindingError, substitute, substitute_variables
from howdah.df._egress import Blocked, EgressPolicy, error_preview, multipart_parts, redact_url
from howdah.df._errors import NodeError, NodeFailed
from howdah.df._http import ExchangeFailed, Request, Resolve, send
from howdah.df._sql_step import read_variables

HTTP_FUNCTIONS = {
    "HTTP": "df.http(text,text,text,jsonb,integer)",
    "HTTP_MULTIPART": "df.http_multipart(text,text,jsonb,jsonb,integer)",
}


async def http_access(conn: psycopg.AsyncConnection[Any], role: str, function: str) -> dict[str, Any]:
    """May ``role`` call ``function`` now; pg_durable's allow-list setting; the role's {variables}."""
    cursor = await conn.execute("SELECT allowed, allowed_domains FROM df._http_access(%s, %s)", (role, function))
    row = await cursor.fetchone()
    assert row is not None
    return {"allowed": bool(row[0]), "allowed_domains": row[1], "vars": await read_variables(conn, role)}


def http_request(kind: str, config_text: str, names: dict[str, Any], variables: dict[str, Any]) -> Request:
    """The request an HTTP node's config describes, its {variables} and $bindings substituted (as text: a URL, a
    JSON body and header values are no SQL); a multipart part's data_b64 takes a whole reference only."""
    config = json.loads(config_text)
    if not isinstance(config, dict):
        raise ValueError("the node's config is no JSON object")

    def text(value: Any) -> str:
        return substitute(substitute_variables(str(value), variables), names, raw=True)

    headers = config.get("headers") or {}
    if not isinstance(headers, dict):
        raise ValueError("headers must be a JSON object of strings")
    sent = {str(k): text(v) for k, v in headers.items()}
    timeout = float(config.get("timeout_seconds") or 30)
    method, url = str(config.get("method") or "POST").upper(), text(config.get("url") or "")
    if kind == "HTTP":
        body = config.get("body")
        content = None if body is None else text(body).encode()
        if content is not None and not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/json"
        return Request(method, url, sent, timeout, content=content)
    parts = config.get("parts")
    if isinstance(parts, list):
        parts = [_part(p, text, names) if isinstance(p, dict) else p for p in parts]
    return Request(method, url, sent, timeout, files=multipart_parts(parts))


_WHOLE_REFERENCE = re.compile(r"^\$[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\??$")


def _part(part: dict[str, Any], text: Callable[[Any], str], names: dict[str, Any]) -> dict[str, Any]:
    out = dict(part)
    for key in ("name", "filename", "content_type"):
        if isinstance(out.get(key), str):
            out[key] = text(out[key])
    data = out.get("data_b64")
    if isinstance(data, str) and "$" in data:
        if not _WHOLE_REFERENCE.match(data.strip()):
            raise BindingError(f"data_b64 must be a whole reference ($name or $name.column), not {data[:40]!r}")
        replaced = substitute(data.strip(), names, raw=True)
        if replaced == data.strip():
            raise BindingError(f"data_b64 refers to {data.strip()}, which no earlier node bound")
        out["data_b64"] = replaced
    return out


@dataclass(frozen=True)
class HttpCall:
    kind: str
    node_id: str
    request: Request
    policy: EgressPolicy
    resolver: Resolve


async def send_http(call: HttpCall) -> dict[str, Any]:
    """One attempt of an HTTP node: its envelope, or the node fails (refused by the policy, a network error, or
    a 5xx answer, whose body's start is in the message)."""
    where = f"node {call.node_id} ({call.kind}) failed"
    try:
        result = await send(call.request, call.policy, call.resolver)
    except Blocked as exc:
        raise NodeFailed(f"{where}: {exc}") from None
    except ExchangeFailed as exc:
        raise NodeError(f"{where}: {exc}") from None
    if result["status"] >= 500:
        url = redact_url(call.request.url)
        raise NodeError(f"{where}: HTTP {result['status']} from {url}: {error_preview(result)}")
    return result
