"""Sending one ``df.http`` / ``df.http_multipart`` request under an :class:`~._egress.EgressPolicy`.

The host is resolved once, every address checked, and the connection made to the checked address (the URL's host
goes in the ``Host`` header and, for HTTPS, in the TLS server name the certificate is verified against), so what
was checked is what is reached. No proxy from the environment (a proxy would resolve the host itself), no
redirects followed, no connection kept for another request (a pooled TLS connection verified for one host must
not carry another's request), and the response read up to the policy's size cap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from howdah.df._egress import Address, Blocked, EgressPolicy, Target, check_addresses, check_url, envelope, redact_url
from howdah.errors import HowdahError

Resolve = Callable[[str, int], Awaitable[list[Address]]]


class ExchangeFailed(HowdahError):
    """The request went out (or was about to) and failed on the way: a timeout, a refused or reset connection, a
    name that does not resolve — worth another attempt, unlike what the policy refuses (:class:`Blocked`)."""


async def resolve(host: str, port: int) -> list[Address]:
    """The addresses ``host`` resolves to (the system resolver, as any client would use)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str]
    timeout: float
    content: bytes | None = None
    files: list[tuple[str, str | None, bytes, str | None]] | None = None  # multipart parts


async def send(request: Request, policy: EgressPolicy, resolver: Resolve = resolve) -> dict[str, Any]:
    """Send ``request`` if ``policy`` allows it; pg_durable's response envelope. Raises :class:`Blocked` for what
    the policy refuses (nothing sent, or a response over its size cap) and :class:`ExchangeFailed` for what went
    wrong on the way (timeouts, resets, a name that does not resolve)."""
    target = check_url(request.url, policy)
    if request.content is not None and len(request.content) > policy.max_request_bytes:
        raise Blocked(f"HTTP request body exceeds the maximum of {policy.max_request_bytes} bytes")
    try:
        async with asyncio.timeout(request.timeout):
            if target.literal is not None:
                addresses: list[Address] = [target.literal]
            else:
                try:
                    addresses = await resolver(target.host, target.port)
                except OSError as exc:
                    raise ExchangeFailed(f"Could not resolve host '{target.host}': {exc.strerror or exc}") from None
            address = check_addresses(target, addresses, policy)
            return await _exchange(request, target, address, policy)
    except TimeoutError:
        raise ExchangeFailed(f"HTTP request timed out after {request.timeout:g}s: {redact_url(request.url)}") from None


async def _exchange(request: Request, target: Target, address: Address, policy: EgressPolicy) -> dict[str, Any]:
    host_in_url = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    pinned = httpx.URL(request.url).copy_with(host=host_in_url)
    default_port = 443 if target.url.scheme.lower() == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    headers["Host"] = host_header
    files = None
    if request.files is not None:
        files = [(name, (filename, data, ctype)) for name, filename, data, ctype in request.files]
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=request.timeout) as client:
            built = client.build_request(
                request.method, pinned, headers=headers, content=request.content, files=files,
                extensions={"sni_hostname": target.host},
            )  # fmt: skip
            response = await client.send(built, stream=True)
            try:
                content = await _read(response, policy.max_response_bytes)
            finally:
                await response.aclose()
    except httpx.HTTPError as exc:
        raise ExchangeFailed(f"HTTP request failed: {type(exc).__name__}: {_without_url(exc, request.url)}") from None
    duration_ms = int((time.monotonic() - started) * 1000)
    return envelope(response.status_code, dict(response.headers), content, duration_ms)


async def _read(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Blocked(f"HTTP response body exceeds the maximum of {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise Blocked(f"HTTP response body exceeds the maximum of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _without_url(exc: Exception, url: str) -> str:
    """An httpx error's text without the URL it may carry (it can hold credentials)."""
    text = str(exc) or type(exc).__name__
    return text.replace(url, redact_url(url))
