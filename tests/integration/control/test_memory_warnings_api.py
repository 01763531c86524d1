"""The API accepts a memory setting larger than the instance's memory and says so in its answer (``warnings``),
for a create and for a change that makes it so; reads carry none."""

from __future__ import annotations

from .conftest import Api
from .test_api import BASE, create_up, unique


async def test_too_much_memory_is_accepted_with_a_warning(api: Api) -> None:
    created = await api.call("POST", BASE, json={"name": unique(), "memory": "2Gi",
                                                 "postgres_configs": {"work_mem": "64GB"}})  # fmt: skip
    assert created.status_code == 202, created.text
    [warning] = created.json()["warnings"]
    assert warning.startswith("work_mem = 64GB is more than the instance's memory (2Gi)")
    assert created.json()["desired_spec"]["postgres_configs"] == {"work_mem": "64GB"}  # accepted as given

    shown = await api.call("GET", f"{BASE}/{created.json()['id']}")
    assert shown.status_code == 200 and shown.json()["warnings"] == []


async def test_a_change_that_makes_a_setting_too_large_is_warned(api: Api) -> None:
    body = await create_up(api, memory="4Gi", postgres_configs={"maintenance_work_mem": "3GB"})
    assert body["warnings"] == []
    shrunk = await api.call("PATCH", f"{BASE}/{body['id']}", json={"memory": "2Gi"})
    assert shrunk.status_code == 202, shrunk.text
    [warning] = shrunk.json()["warnings"]
    assert warning.startswith("maintenance_work_mem = 3GB is more than the instance's memory (2Gi)")


async def test_within_memory_no_warning(api: Api) -> None:
    created = await api.call("POST", BASE, json={"name": unique(), "memory": "2Gi",
                                                 "postgres_configs": {"work_mem": "64MB"}})  # fmt: skip
    assert created.status_code == 202 and created.json()["warnings"] == []
