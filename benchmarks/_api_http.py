"""A minimal HTTP/1.1 keep-alive client for the API benchmark's load (not a general client).

The load generator shares the host's cores with the server it measures, so it should cost as little as possible:
httpx spent six to seven times more CPU per request
here. This writes one request per round trip on one connection and
reads the status line, the headers it needs (``Content-Length``, ``Transfer-Encoding``, ``Connection``) and the
body. Any failure (timeout, reset, malformed answer) closes the connection, which reopens on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class Connection:
    """One keep-alive connection to ``host:port`` sending ``headers`` (e.g. Authorization) with every request."""

    def __init__(self, host: str, port: int, headers: dict[str, str], timeout: float = 10) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._fixed = f"Host: {host}:{port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> int:
        """Send one request and read the whole answer; its status, or 0 when there was no valid answer."""
        try:
            return await asyncio.wait_for(self._exchange(method, path, body), self.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            await self.close()
            return 0

    async def _exchange(self, method: str, path: str, body: Any) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = f"{method} {path} HTTP/1.1\r\n{self._fixed}"
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        self._writer.write(head.encode("latin-1") + b"\r\n" + payload)
        block = await self._reader.readuntil(b"\r\n\r\n")
        lines = block.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if headers.get("transfer-encoding") == "chunked":
            while size := int((await self._reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
                await self._reader.readexactly(size + 2)
            await self._reader.readuntil(b"\r\n")  # no trailers expected
        elif status != 204 and status != 304 and method != "HEAD":
            await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection") == "close":
            await self.close()
        return status

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
