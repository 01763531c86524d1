"""``GET /api/v1/whoami``: any valid token learns its own org, role and id (what ``howdah login`` checks); nothing
else, and no token or a revoked one gets 401."""

from __future__ import annotations

import pytest

from tests.integration.control.conftest import Api

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(
    ("who", "org", "role"),
    [("acme-admin", "acme", "admin"), ("acme-viewer", "acme", "viewer"), ("other-admin", "other", "admin"),
     ("platform", "default", "platform")],
)  # fmt: skip
async def test_a_token_learns_its_org_and_role(api: Api, who: str, org: str, role: str) -> None:
    answer = await api.call("GET", "/api/v1/whoami", who=who)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"org_id": org, "role": role, "token_id": api.token_ids[who]}


async def test_a_metrics_token_is_told_too(api: Api) -> None:
    token, _row = await api.control.create_token("default", "metrics", "scraper")
    answer = await api.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["role"] == "metrics"


async def test_no_token_a_wrong_one_or_a_revoked_one_is_refused(api: Api) -> None:
    assert (await api.client.get("/api/v1/whoami")).status_code == 401
    wrong = await api.client.get("/api/v1/whoami", headers={"Authorization": "Bearer hwd_not_a_token"})
    assert wrong.status_code == 401 and "org_id" not in wrong.json()
    await api.control.revoke_token("acme", api.token_ids["acme-viewer"])
    revoked = await api.call("GET", "/api/v1/whoami", who="acme-viewer")
    assert revoked.status_code == 401 and "org_id" not in revoked.json()
