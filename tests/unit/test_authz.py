"""The role rules as a grid: who reaches which org, which role each route needs, who may issue which token."""

from __future__ import annotations

import pytest

from howdah.control.errors import Forbidden, NotFound
from howdah.control.service import ROLES, Principal, may_issue, may_scrape_metrics, require, require_platform

ORG = "acme"


def who(role: str, org: str = ORG) -> Principal:
    return Principal(org, role, "t-1")  # type: ignore[arg-type]


GRID = {
    # role of the caller: the org routes' roles it passes (viewer < member < admin)
    "viewer": {"viewer"},
    "member": {"viewer", "member"},
    "admin": {"viewer", "member", "admin"},
    "platform": {"viewer", "member", "admin"},
    "metrics": set(),
}


@pytest.mark.parametrize("caller", sorted(GRID))
@pytest.mark.parametrize("needed", ["viewer", "member", "admin"])
def test_org_routes(caller: str, needed: str) -> None:
    if needed in GRID[caller]:
        require(who(caller), ORG, needed)  # type: ignore[arg-type]
    else:
        with pytest.raises(Forbidden):
            require(who(caller), ORG, needed)  # type: ignore[arg-type]


@pytest.mark.parametrize("caller", ["viewer", "member", "admin", "metrics"])
def test_another_orgs_resources_are_not_found(caller: str) -> None:
    with pytest.raises(NotFound):
        require(who(caller, "other"), ORG, "viewer")


def test_the_platform_admin_crosses_orgs() -> None:
    require(who("platform", "default"), ORG, "admin")
    require_platform(who("platform", "default"))
    may_issue(who("platform", "default"), "brand-new", "admin")


@pytest.mark.parametrize("caller", ["viewer", "member", "admin", "metrics"])
def test_only_the_platform_admin_manages_platform_resources(caller: str) -> None:
    with pytest.raises(Forbidden, match="platform"):
        require_platform(who(caller))


@pytest.mark.parametrize("role", ROLES)
def test_who_may_issue_which_role(role: str) -> None:
    platform_only = role in ("platform", "metrics")
    if platform_only:
        with pytest.raises(Forbidden, match="platform"):
            may_issue(who("admin"), ORG, role)
    else:
        may_issue(who("admin"), ORG, role)
    may_issue(who("platform"), ORG, role)
    for weaker in ("member", "viewer", "metrics"):
        with pytest.raises(Forbidden):
            may_issue(who(weaker), ORG, role)
    with pytest.raises(NotFound):
        may_issue(who("admin", "other"), ORG, role)


def test_metrics() -> None:
    assert may_scrape_metrics(who("metrics")) and may_scrape_metrics(who("platform"))
    assert not any(may_scrape_metrics(who(role)) for role in ("viewer", "member", "admin"))
