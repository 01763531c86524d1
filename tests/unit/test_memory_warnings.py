"""A memory setting larger than the instance's memory is accepted with a warning; values within it, values in
Postgres's own units and other settings are not warned about."""

from __future__ import annotations

import pytest

from howdah.control.memory_warnings import memory_warnings


def _spec(memory: str, **configs: str) -> dict[str, object]:
    return {"name": "shop", "memory": memory, "postgres_configs": configs}


@pytest.mark.parametrize(
    ("name", "value"),
    [("work_mem", "64GB"), ("maintenance_work_mem", "2049MB"), ("work_mem", "2097153"),  # a bare number: kB
     ("maintenance_work_mem", " 3 GB")],
)  # fmt: skip
def test_larger_than_memory_is_warned(name: str, value: str) -> None:
    [warning] = memory_warnings(_spec("2Gi", **{name: value}))
    assert warning.startswith(f"{name} = {value} is more than the instance's memory (2Gi)")


@pytest.mark.parametrize(
    ("name", "value"),
    [("work_mem", "64MB"), ("maintenance_work_mem", "2048MB"), ("work_mem", "2097152"),
     ("effective_cache_size", "64GB"), ("work_mem", "not a size")],
)  # fmt: skip
def test_within_memory_or_not_a_memory_setting_is_quiet(name: str, value: str) -> None:
    assert memory_warnings(_spec("2Gi", **{name: value})) == []


def test_every_setting_too_large_is_named() -> None:
    warnings = memory_warnings(_spec("512Mi", work_mem="1GB", maintenance_work_mem="1GB", shared_buffers="1GB"))
    assert [w.split(" ", 1)[0] for w in warnings] == ["work_mem", "maintenance_work_mem"]  # shared_buffers: refused
