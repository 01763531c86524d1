"""Shell completion of instance names and ids from the API (``howdah --install-completion``): quick, and silent
when the API cannot be asked (no profile, unreachable, a refused token), since a shell prints whatever it gets."""

from __future__ import annotations

import time
from typing import Annotated, Any

import httpx
import typer

from howdah.cli._api import ApiSettings
from howdah.cli._refs import completions
from howdah.errors import HowdahError

TIMEOUT_SECONDS = 2.0  # for all the requests of one completion together
PAGE = 200


def instance_completions(incomplete: str, profile: str | None = None) -> list[tuple[str, str]]:
    """(value, hint) pairs for an instance argument starting with ``incomplete``; [] when the API cannot say."""
    try:
        settings = ApiSettings.resolve(profile=profile)
        return completions(incomplete, _instances(settings))
    except (HowdahError, httpx.HTTPError, ValueError, KeyError, TypeError):
        return []


def _instances(settings: ApiSettings) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    found: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {settings.token}"}
    with httpx.Client(base_url=settings.url, headers=headers) as http:
        offset: int | None = 0
        while offset is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break  # what came in time
            answer = http.get(f"/api/v1/orgs/{settings.org}/instances", params={"limit": PAGE, "offset": offset},
                              timeout=left)  # fmt: skip
            answer.raise_for_status()
            page = answer.json()
            found += page["items"]
            offset = page["next_offset"]
    return found


def complete_instance(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    profile = ctx.find_root().params.get("profile")
    return instance_completions(incomplete, profile if isinstance(profile, str) else None)


InstanceName = Annotated[
    str, typer.Argument(help="The instance: its name, id or unique id prefix.", autocompletion=complete_instance)
]
