"""The API when its database restarts or goes away: a restart is invisible, an outage is 503 + Retry-After.

The API's pool points at a Postgres server of this module's own (started, restarted and stopped here), so the
session's shared server is never touched.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from howdah.control.api import create_app
from howdah.pg import EmbeddedPostgres
from howdah.schema import install_all
from tests.waiting import async_wait_until

LIST = "/api/v1/orgs/acme/instances"


@pytest.fixture(scope="module")
def own_server() -> Iterator[EmbeddedPostgres]:
    home = Path(tempfile.mkdtemp(prefix="howdah-outage-"))
    home.chmod(0o755)
    server = EmbeddedPostgres(home, settings={"fsync": "off", "full_page_writes": "off"})
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            install_all(conn)
        yield server
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
async def client(own_server: EmbeddedPostgres) -> AsyncIterator[httpx.AsyncClient]:
    own_server.start()
    app = create_app(own_server.url(), pool_size=4, pool_timeout=2)
    async with app.router.lifespan_context(app):
        token, _ = await app.state.control.create_token("acme", "member")
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://howdah.test", headers=headers) as http:
            yield http
    own_server.start()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "unavailable"
    assert "Traceback" not in response.text


async def test_the_first_request_after_a_database_restart_succeeds(
    client: httpx.AsyncClient, own_server: EmbeddedPostgres
) -> None:
    assert (await client.get(LIST)).status_code == 200
    own_server.stop(mode="fast")
    own_server.start()
    first = await client.get(LIST)
    assert first.status_code == 200, first.text  # the pool noticed its dead connection before handing it out


async def test_a_stopped_database_is_503_with_retry_after_then_recovers(
    client: httpx.AsyncClient, own_server: EmbeddedPostgres
) -> None:
    assert (await client.get(LIST)).status_code == 200
    own_server.stop(mode="fast")
    assert_unavailable(await client.get(LIST))
    assert_unavailable(await client.post(LIST, json={"name": "shop"}))
    own_server.start()

    async def answers() -> bool:
        return (await client.get(LIST)).status_code == 200

    await async_wait_until(answers, timeout=30, what="the API to recover")


async def test_no_data_plane_to_place_an_instance_on_is_503(client: httpx.AsyncClient) -> None:
    """Nothing the caller can fix: the platform has no data plane (yet); retrying later may succeed."""
    assert_unavailable(await client.post(LIST, json={"name": "shop"}))


async def test_an_unexpected_failure_is_a_json_500_without_a_stack_trace(own_server: EmbeddedPostgres) -> None:
    own_server.start()
    app = create_app(own_server.url(), pool_size=2)
    async with app.router.lifespan_context(app):
        token, _ = await app.state.control.create_token("acme", "viewer")

        async def broken(*args: object) -> None:
            raise RuntimeError("secret internals /srv/howdah/x.py line 12")

        app.state.control.list_instances = broken
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://howdah.test") as http:
            response = await http.get(LIST, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert "secret internals" not in response.text and "Traceback" not in response.text
