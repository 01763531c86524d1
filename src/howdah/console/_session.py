"""The console's session rules, free of I/O: the session cookie, CSRF tokens and the same-origin check.

The session cookie holds the API token itself (HttpOnly, SameSite=Strict, Secure over HTTPS): the browser sends
it, scripts cannot read it, and signing out deletes it. Each state-changing form carries a CSRF token, an HMAC of
the session token's hash under a secret the control plane keeps; the server recomputes it and also refuses a
request whose ``Origin`` (or, without one, ``Referer``) is another site.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import urlsplit

__all__ = ["COOKIE", "CSRF_FIELD", "CSRF_HEADER", "ORG_COOKIE", "csrf_token", "csrf_valid", "org_viewed", "same_origin"]

COOKIE = "howdah_session"
ORG_COOKIE = "howdah_org"  # the org a platform admin chose to view; ignored for every other role
ORG_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # control.orgs' check
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def csrf_token(secret: bytes, session_token: str) -> str:
    """The CSRF token of a session: bound to its API token, unforgeable without the control plane's secret."""
    digest = hashlib.sha256(session_token.encode()).digest()
    return hmac.new(secret, b"howdah-console-csrf:" + digest, hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, session_token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret, session_token), presented or "")


def same_origin(origin: str | None, referer: str | None, scheme: str, host: str | None) -> bool:
    """Whether a state-changing request comes from this site: its ``Origin`` (or ``Referer`` when a browser sent
    no Origin) names the scheme and host the request was sent to. A request with neither is refused."""
    source = origin if origin and origin != "null" else referer
    if not source or not host:
        return False
    parts = urlsplit(source)
    return parts.scheme == scheme and parts.netloc.lower() == host.lower()


def org_viewed(token_org: str, platform: bool, chosen: str | None) -> str:
    """The org a session's pages show: the token's own, or for a platform admin the one it chose (a well-formed
    org id); what any other caller's cookie says is ignored."""
    if platform and chosen and ORG_ID.fullmatch(chosen):
        return chosen
    return token_org
