"""Where a ``df.http`` node may send a request, and what its response looks like to the graph (pure, no I/O).

The policy, checked before any byte leaves the worker:

- **Scheme**: ``http`` or ``https`` only (``https`` only when :attr:`EgressPolicy.https_only`).
- **Hosts**: with an allow-list (:attr:`EgressPolicy.allowed_domains`, pg_durable's
  ``pg_durable.http_allowed_domains`` syntax: ``api.example.com``, ``*.example.com``), only the hosts it names;
  without one, any host.
- **Addresses**: every address the host resolves to must be public. Loopback, private (RFC 1918, unique-local),
  link-local (cloud metadata at 169.254.169.254), CGNAT (100.64.0.0/10), multicast, reserved and unspecified
  addresses are refused, also when wrapped in IPv6 (IPv4-mapped, NAT64, 6to4). A host or network named in
  :attr:`EgressPolicy.allow_private` is exempt: how an operator lets a workflow reach an internal service. The
  connection then goes to the very address that was checked, so a DNS answer that changes in between (DNS
  rebinding) cannot redirect it.
- **Redirects** are not followed: a 3xx is the node's result, as in pg_durable, so its target is never contacted.

Error texts follow pg_durable's (``Blocked: …``), and URLs in them are redacted (:func:`redact_url`).
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, urlsplit, urlunsplit

from howdah.errors import HowdahError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_TIMEOUT_SECONDS = 3600
ERROR_PREVIEW_CHARS = 512  # of a 5xx response's body, in the node's error

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOSTNAME = re.compile(r"^(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TEXT_TYPES = frozenset(
    {
        "application/json", "application/xml", "application/javascript", "application/ecmascript",
        "application/x-www-form-urlencoded", "application/graphql", "application/yaml", "application/x-yaml",
    }
)  # fmt: skip


class EgressError(HowdahError):
    """A policy that cannot be read (a malformed allow-list entry)."""


class Blocked(HowdahError):
    """A request the policy refuses; nothing was sent."""


@dataclass(frozen=True)
class EgressPolicy:
    """What ``df.http`` nodes may reach (see the module docstring)."""

    allowed_domains: tuple[str, ...] | None = None  # None: any host (addresses are still checked)
    allow_private: tuple[str, ...] = ()  # hosts (exact) and networks (CIDR or address) exempt from the address check
    https_only: bool = False
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    _networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    _hosts: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in self.allow_private:
            entry = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if not _HOSTNAME.match(entry) or entry.startswith("*."):
                    raise EgressError(
                        f"allow_private: {entry!r} is neither a host name nor an address/network"
                    ) from None
                hosts.add(entry)
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_hosts", frozenset(hosts))

    def with_domains(self, setting: str | None) -> EgressPolicy:
        """This policy with pg_durable's ``http_allowed_domains`` setting applied (None: unchanged)."""
        if setting is None:
            return self
        return dataclasses.replace(self, allowed_domains=parse_domains(setting))

    def exempt(self, host: str, address: Address | None = None) -> bool:
        """Whether ``host`` (or ``address``) is named in :attr:`allow_private`."""
        if host.lower() in self._hosts:
            return True
        return address is not None and any(address in network for network in self._networks)


def parse_domains(setting: str) -> tuple[str, ...]:
    """pg_durable's ``http_allowed_domains``: comma-separated host names, each optionally ``*.``-prefixed; an empty
    value allows no host. A malformed entry rejects the whole value."""
    if not setting.strip():
        return ()
    entries = []
    for raw in setting.split(","):
        entry = raw.strip().lower()
        problem = None
        if not entry:
            problem = "empty entry"
        elif _is_address(entry.strip("[]")):
            problem = "IP addresses are not allowed, name a host"
        elif not _HOSTNAME.match(entry):
            problem = "not a DNS host name (optionally prefixed with '*.')"
        if problem:
            raise EgressError(
                f'invalid value for parameter "pg_durable.http_allowed_domains": {raw.strip()!r}: {problem}'
            )
        entries.append(entry)
    return tuple(entries)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def domain_allowed(host: str, domains: Iterable[str]) -> bool:
    """Whether ``host`` matches an entry: exactly, or below a ``*.`` entry (at any depth, not the apex)."""
    host = host.lower().rstrip(".")
    for entry in domains:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                return True
        elif host == entry:
            return True
    return False


@dataclass(frozen=True)
class Target:
    """A URL the policy let through so far: the host to resolve and check, and where to connect."""

    url: SplitResult
    host: str  # lower-case, IDNA-encoded, without brackets
    port: int
    literal: Address | None  # the host when it is an IP address


def check_url(url: str, policy: EgressPolicy) -> Target:
    """The URL's scheme and host, checked against ``policy`` (the address check follows resolution)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise Blocked(f"Invalid URL: {redact_url(url)}") from None
    scheme = parts.scheme.lower()
    allowed = "https" if policy.https_only else "http and https"
    if scheme not in ("http", "https"):
        raise Blocked(f"Blocked: unsupported URL scheme. Only {allowed} is allowed.")
    if scheme == "http" and policy.https_only:
        raise Blocked("Blocked: plaintext HTTP is not permitted by this worker's policy. HTTPS is required.")
    raw_host = parts.hostname or ""
    if not raw_host or "\\" in parts.netloc:
        raise Blocked(f"Invalid URL (no host): {redact_url(url)}")
    try:
        host = raw_host.encode("idna").decode("ascii").lower() if not _is_address(raw_host) else raw_host.lower()
    except UnicodeError:
        raise Blocked(f"Invalid URL (bad host name): {redact_url(url)}") from None
    literal = ipaddress.ip_address(host) if _is_address(host) else None
    if policy.allowed_domains is not None:
        if literal is not None:
            raise Blocked(
                "Blocked: requests to bare IP addresses are not permitted. Use an approved service hostname instead."
            )
        if not domain_allowed(host, policy.allowed_domains):
            raise Blocked(
                f"Blocked: '{host}' is not in the allowed endpoint list. Configure "
                "pg_durable.http_allowed_domains to allow this hostname."
            )
    return Target(parts, host, port or (443 if scheme == "https" else 80), literal)


def restricted(address: Address) -> bool:
    """Whether ``address`` is no public internet address (or wraps one that is not)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and restricted(embedded):
            return True
    if address.is_multicast or address.is_unspecified or address.is_loopback or address.is_link_local:
        return True
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return True
    return not address.is_global


def check_addresses(target: Target, addresses: Iterable[Address], policy: EgressPolicy) -> Address:
    """The address to connect to: every one the host resolved to must pass (one restricted address refuses the
    host, since a client may be handed any of them)."""
    found = list(addresses)
    if not found:
        raise Blocked(f"Could not resolve host '{target.host}'")
    for address in found:
        if restricted(address) and not policy.exempt(target.host, address):
            raise Blocked(
                f"Blocked: the resolved IP address for '{target.host}' is in a restricted range. df.http() cannot "
                "access private or internal network addresses."
            )
    return found[0]


def redact_url(url: str) -> str:
    """``url`` fit for an error message or a log: query values, user info and fragment replaced (a URL is a
    credential carrier: SAS tokens, ``?api-key=``); an unreadable URL replaced whole."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "<redacted>@" + netloc.rsplit("@", 1)[1]
        query = "&".join(
            f"{quote(name)}=<redacted>" if value.strip("=") else "<redacted>"
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        )
        fragment = "<redacted>" if parts.fragment else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    except ValueError:
        return "<redacted URL>"


# -------------------------------------------------------------------------------------------------- response
def declared_text(content_type: str | None) -> bool:
    """Whether a Content-Type declares a textual body (``text/*``, JSON, XML, YAML and their ``+suffix`` kin)."""
    mime = (content_type or "").split(",")[0].split(";")[0].strip().lower()
    if not mime:
        return False
    return mime.startswith("text/") or mime.endswith(("+json", "+xml", "+yaml")) or mime in _TEXT_TYPES


def _charset(content_type: str | None) -> str:
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def body_of(content: bytes, content_type: str | None) -> tuple[str, str]:
    """(body, encoding): a body its Content-Type declares textual, decoded with its charset; any other that is
    valid UTF-8 without NUL (Postgres text holds none), as text; the rest base64."""
    if declared_text(content_type):
        try:
            text = content.decode(_charset(content_type))
        except (LookupError, UnicodeDecodeError):
            text = None
        if text is not None and "\x00" not in text:
            return text, "text"
    elif b"\x00" not in content:
        try:
            return content.decode("utf-8"), "text"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(content).decode("ascii"), "base64"


def envelope(
    status: int, headers: Mapping[str, str], content: bytes, duration_ms: int
) -> dict[str, Any]:  # fmt: skip
    """pg_durable's response envelope: ``status, body, encoding, headers, ok, duration_ms``."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    body, encoding = body_of(content, content_type)
    return {
        "status": status,
        "body": body,
        "encoding": encoding,
        "headers": {k.lower(): v for k, v in headers.items()},
        "ok": 200 <= status < 300,
        "duration_ms": duration_ms,
    }


def error_preview(result: Mapping[str, Any]) -> str:
    """A bounded excerpt of a response's body for an error message."""
    body = str(result.get("body") or "")
    if len(body) <= ERROR_PREVIEW_CHARS:
        return body
    unit = "base64 characters" if result.get("encoding") == "base64" else "characters"
    return f"{body[:ERROR_PREVIEW_CHARS]}... [truncated, {len(body)} {unit} total]"


def multipart_parts(parts: Any) -> list[tuple[str, str | None, bytes, str | None]]:
    """``df.http_multipart``'s parts as (name, filename, data, content type); a malformed part is refused."""
    if not isinstance(parts, list) or not parts:
        raise Blocked("HTTP_MULTIPART: parts must be a non-empty JSON array of objects")
    decoded = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str) or not part["name"]:
            raise Blocked(f"HTTP_MULTIPART: part {i} needs a non-empty 'name'")
        data = part.get("data_b64")
        if not isinstance(data, str):
            raise Blocked(f"HTTP_MULTIPART: part {i} ('{part['name']}') needs 'data_b64', its content in base64")
        try:
            content = base64.b64decode("".join(data.split()), validate=True)
        except ValueError:
            raise Blocked(f"HTTP_MULTIPART: part {i} ('{part['name']}'): data_b64 is not valid base64") from None
        filename, content_type = part.get("filename"), part.get("content_type")
        decoded.append(
            (
                part["name"],
                str(filename) if filename is not None else None,
                content,
                str(content_type) if content_type is not None else None,
            )
        )
    return decoded
