"""The CLI's view of the control-plane API: where it is, which token, and calls that fail clearly."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import httpx
from rich.live import Live
from rich.spinner import Spinner

from howdah.cli._common import EXIT_NOT_READY, err_console, exit_code, fail
from howdah.cli._config import Config, Profile, check_name, config_path
from howdah.cli._config import load as load_config
from howdah.cli._refs import resolve
from howdah.errors import ConfigurationError

ENV_URL, ENV_TOKEN, ENV_ORG, ENV_PROFILE = "HOWDAH_API_URL", "HOWDAH_TOKEN", "HOWDAH_ORG", "HOWDAH_PROFILE"
WHOAMI = "/api/v1/whoami"
SETTLED = {"Up", "Stopped", "Deleted", "Error"}
WAIT_SECONDS = 600.0  # how long --wait waits, for a busy instance and then for the data plane
RETRIED = {409, 503}  # with Retry-After: busy (work in flight) or unavailable (database, data plane)


class NotConfigured(ConfigurationError):
    """No API address, token or org is configured, or the profile named does not exist."""


_chosen: list[str] = []  # the profile `howdah --profile NAME` chose (the root command's callback sets it)


def choose_profile(name: str | None) -> None:
    _chosen[:] = [check_name(name)] if name else []


def named_profile(explicit: str | None = None) -> str | None:
    """The profile named for a command: its own ``--profile``, else ``howdah --profile``, else
    ``$HOWDAH_PROFILE`` (None: none is named)."""
    named = explicit or (_chosen[0] if _chosen else None) or os.environ.get(ENV_PROFILE)
    return check_name(named) if named else None


def profile_name(explicit: str | None = None, config: Config | None = None) -> str | None:
    """The profile a command uses: the one named (:func:`named_profile`), else the active one (None: there is
    none)."""
    return named_profile(explicit) or (config or load_config()).active


@dataclass(frozen=True)
class ApiSettings:
    url: str
    token: str
    org: str
    profile: str | None = None

    @classmethod
    def load(
        cls, url: str | None = None, token: str | None = None, org: str | None = None, *,
        profile: str | None = None, need_org: bool = True,
    ) -> ApiSettings:  # fmt: skip
        """:meth:`resolve`, or one clear error saying what is missing and how to set it."""
        try:
            return cls.resolve(url, token, org, profile=profile, need_org=need_org)
        except NotConfigured as exc:
            raise fail(str(exc)) from None

    @classmethod
    def resolve(
        cls, url: str | None = None, token: str | None = None, org: str | None = None, *,
        profile: str | None = None, need_org: bool = True,
    ) -> ApiSettings:  # fmt: skip
        """The API to call: each of ``url``, ``token``, ``org`` from the argument, else its environment variable,
        else the profile (see :func:`profile_name`). Raises NotConfigured (or ProfileError) and prints nothing."""
        config = load_config()
        name = profile_name(profile, config)
        stored = config.profiles.get(name) if name else None
        if name and stored is None and named_profile(profile):
            raise NotConfigured(f"no profile {name!r} in {config_path()}: `howdah login --url URL --profile {name}` "
                                "adds it")  # fmt: skip
        stored = stored or Profile()
        url = url or os.environ.get(ENV_URL) or stored.api_url
        token = token or os.environ.get(ENV_TOKEN) or stored.token
        org = org or os.environ.get(ENV_ORG) or stored.org
        wanted = (("API URL", url), ("token", token)) + ((("org", org),) if need_org else ())
        missing = [what for what, value in wanted if not value]
        if missing:
            raise NotConfigured(
                f"no {', '.join(missing)} configured: run `howdah login --url URL` or `howdah up` (they write "
                f"{config_path()}), or set {ENV_URL}, {ENV_TOKEN} and {ENV_ORG}"
            )
        assert url and token
        return cls(url.rstrip("/"), token, org or "", name if name in config.profiles else None)


class Api:
    """Synchronous calls to the control-plane API; any 4xx/5xx becomes one clear CLI error."""

    def __init__(self, settings: ApiSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.http = httpx.Client(
            base_url=settings.url, headers={"Authorization": f"Bearer {settings.token}"}, timeout=30.0,
            transport=transport,
        )  # fmt: skip

    def whoami(self) -> dict[str, Any]:
        """The token's org, role and id, as the API knows them (401: the token is refused)."""
        return dict(self.call("GET", WHOAMI))

    @property
    def instances(self) -> str:
        return f"/api/v1/orgs/{self.settings.org}/instances"

    def call(self, method: str, path: str, *, retry_for: float | None = None, **kwargs: Any) -> Any:
        """One request; with ``retry_for`` (seconds, as ``--wait`` does) a 409 or 503 that carries Retry-After
        (the instance is busy, the database or data plane is unavailable) is retried after that delay, until
        ``retry_for`` seconds have passed."""
        deadline = time.monotonic() + (retry_for or 0.0)
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise fail(f"cannot reach the API at {self.settings.url}: {exc}", EXIT_NOT_READY) from None
            if response.status_code < 400:
                answer = response.json() if response.content else None
                warnings = answer.get("warnings") if isinstance(answer, dict) else None
                for warning in warnings or []:  # accepted, but unwise: said on stderr, the record stays on stdout
                    err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
                return answer
            message, code = _message(response), exit_code(response.status_code)
            delay = _retry_after(response)
            if delay is None or response.status_code not in RETRIED:
                raise fail(f"{response.status_code}: {message}", code)
            if retry_for is None:
                raise fail(f"{response.status_code}: {message} (retry in {delay:g}s, or pass --wait)", code)
            left = deadline - time.monotonic()
            if left <= 0:
                raise fail(f"{response.status_code}: {message} (still so after waiting {retry_for:g}s)", code)
            pause = min(max(delay, 0.1), left)
            err_console.print(f"{response.status_code}: {message}; retrying in {pause:.1f}s", highlight=False)
            time.sleep(pause)

    def list_instances(self, state: str | None = None) -> list[dict[str, Any]]:
        """All the org's instances (every page), or those in ``state``."""
        found: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            params: dict[str, Any] = {"limit": 200, "offset": offset}
            if state:
                params["state"] = state
            page = self.call("GET", self.instances, params=params)
            found += page["items"]
            offset = page["next_offset"]
        return found

    def find(self, ref: str) -> dict[str, Any]:
        """An instance by name among those not deleted, else by id or unique id prefix (a deleted one's too);
        raises NoMatch or Ambiguous (howdah.cli._refs)."""
        rows = self.list_instances()
        live = [item for item in rows if item["state"] != "Deleted"]
        return dict(resolve(ref, rows, what="instance", named=live))

    def find_or_none(self, name_or_id: str) -> dict[str, Any] | None:
        """An instance by its exact name among those not deleted, or its exact id (no prefix: a manifest names)."""
        for item in self.list_instances():
            if item["id"] == name_or_id or (item["name"] == name_or_id and item["state"] != "Deleted"):
                return item
        return None

    def wait(self, instance_id: str, timeout: float = WAIT_SECONDS) -> dict[str, Any]:
        """Poll until the data plane has finished the instance's work; a Rich spinner shows the state."""
        deadline = time.monotonic() + timeout
        spinner = Spinner("dots", text="waiting…")
        with Live(spinner, console=err_console, transient=True):
            while True:
                left = max(deadline - time.monotonic(), 0.0)
                item = self.call("GET", f"{self.instances}/{instance_id}", retry_for=left)
                spinner.update(text=f"{item['name']}: {item['state']}")
                if not item["has_active_work"] and item["state"] in SETTLED:
                    break
                if time.monotonic() > deadline:
                    raise fail(f"{item['name']} is still {item['state']} after {timeout:.0f}s", EXIT_NOT_READY)
                time.sleep(0.1)
        if item["state"] == "Error":
            raise fail(f"{item['name']} is in Error: {item.get('last_error') or 'no detail'}")
        return item  # type: ignore[no-any-return]


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the API sends a number), or None when absent or not a number."""
    try:
        return max(float(response.headers["Retry-After"]), 0.0)
    except (KeyError, ValueError):
        return None
