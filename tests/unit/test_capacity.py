"""The capacity check: no instance may ask for more than its whole data plane has (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from howdah.control.capacity import Capacity, check_capacity
from howdah.control.errors import Invalid
from howdah.control.spec import InstanceSpec

GI = 2**30
SMALL = Capacity(cpu=4, memory_bytes=16 * GI, storage_bytes=100 * GI)


def spec(**fields: Any) -> InstanceSpec:
    return InstanceSpec(name="db", **fields)


def refusal(wanted: InstanceSpec, capacity: Capacity | None = SMALL, previous: InstanceSpec | None = None) -> str:
    with pytest.raises(Invalid) as refused:
        check_capacity(wanted, capacity, "small", previous=previous)
    return str(refused.value)


def test_a_spec_within_the_capacity_passes_up_to_the_exact_limit() -> None:
    check_capacity(spec(), SMALL, "small")
    check_capacity(spec(cpu="4", memory="16Gi", storage="100Gi"), SMALL, "small")
    check_capacity(spec(cpu="500m", memory="256Mi", storage="1Gi", replicas=5), SMALL, "small")


def test_memory_beyond_the_data_plane_names_the_field_the_request_and_the_capacity() -> None:
    message = refusal(spec(memory="1000Gi"))
    assert message.startswith("memory: ")
    assert "1000Gi" in message and "16Gi" in message and "'small'" in message
    assert "cpu" not in message and "storage" not in message


def test_cpu_and_storage_are_checked_and_every_problem_is_named_at_once() -> None:
    assert "cpu: 8" in refusal(spec(cpu="8")) and "4 cores" in refusal(spec(cpu="8"))
    assert "cpu: 4500m" in refusal(spec(cpu="4500m"))
    message = refusal(spec(storage="2Ti"))
    assert message.startswith("storage: ") and "2Ti" in message and "100Gi" in message
    everything = refusal(spec(cpu="64", memory="1Ti", storage="1Ti"))
    assert [part.split(":")[0] for part in everything.split("; ")] == ["cpu", "memory", "storage"]


def test_each_replica_is_a_full_server_and_counts_against_the_data_plane() -> None:
    check_capacity(spec(cpu="2", memory="8Gi", storage="50Gi", replicas=2), SMALL, "small")
    message = refusal(spec(memory="8Gi", replicas=3))
    assert message.startswith("memory: 3 replicas of 8Gi each = 24Gi") and "16Gi" in message
    assert refusal(spec(cpu="2", replicas=3)).startswith("cpu: 3 replicas of 2 each = 6 cores")
    assert refusal(spec(storage="40Gi", replicas=3)).startswith("storage: 3 replicas of 40Gi each = 120Gi")


def test_an_unknown_capacity_checks_nothing() -> None:
    check_capacity(spec(cpu="64", memory="1024Gi", storage="64Ti", replicas=5), None, "k8s")
    check_capacity(spec(cpu="64", memory="1024Gi", storage="64Ti", replicas=5), Capacity(), "k8s")
    partly = Capacity(memory_bytes=16 * GI)  # only memory is known
    check_capacity(spec(cpu="64", storage="64Ti"), partly, "small")
    assert refusal(spec(memory="32Gi"), partly).startswith("memory: ")


def test_a_change_checks_only_the_resources_it_changes() -> None:
    stored = spec(memory="1000Gi")  # accepted before the check existed
    check_capacity(stored, SMALL, "small", previous=stored)  # stop, start, restart, delete
    check_capacity(spec(memory="1000Gi", postgres_configs={"work_mem": "8MB"}), SMALL, "small", previous=stored)
    check_capacity(spec(memory="1000Gi", cpu="2"), SMALL, "small", previous=stored)  # memory untouched
    check_capacity(spec(memory="8Gi"), SMALL, "small", previous=stored)  # the fix
    assert refusal(spec(memory="500Gi"), previous=stored).startswith("memory: ")  # still too much

    running = spec(memory="8Gi")
    assert refusal(spec(memory="32Gi"), previous=running).startswith("memory: ")
    assert refusal(spec(memory="8Gi", replicas=3), previous=running).startswith("memory: 3 replicas")


def test_capacities_are_shown_in_binary_units() -> None:
    host = Capacity(cpu=2, memory_bytes=25_276_203_008, storage_bytes=270_553_174_016)
    assert "23.54Gi" in refusal(spec(memory="1000Gi"), host)
    assert "251.97Gi" in refusal(spec(storage="1Ti"), host)
    assert "(2 cores)" in refusal(spec(cpu="3"), host)


POOLED = InstanceSpec(name="db", connection_pooler={"enabled": True})  # type: ignore[arg-type]
ALLOWED = InstanceSpec(name="db", ip_allow_list=("10.0.0.0/8",))


def test_a_feature_the_data_plane_lacks_is_refused_naming_it() -> None:
    local = Capacity(features=frozenset({"backup", "restore", "replicas"}))
    with pytest.raises(Invalid, match="data plane 'local' cannot provide connection_pooler"):
        check_capacity(POOLED, local, "local")
    with pytest.raises(Invalid, match=r"cannot provide ip_allow_list: .*127\.0\.0\.1"):
        check_capacity(ALLOWED, local, "local")
    kubernetes = Capacity(features=frozenset({"connection_pooler", "ip_allow_list"}))
    check_capacity(POOLED, kubernetes, "k8s")
    check_capacity(ALLOWED, kubernetes, "k8s")
    check_capacity(POOLED, Capacity(), "unknown")  # not reported: not checked
    check_capacity(InstanceSpec(name="db"), local, "local")  # needs nothing


def test_a_change_is_not_refused_for_a_feature_the_stored_spec_already_had() -> None:
    """A spec stored before its data plane reported features can still be configured, stopped and fixed."""
    local = Capacity(features=frozenset())
    check_capacity(POOLED.patched({"postgres_configs": {"work_mem": "8MB"}}), local, "local", previous=POOLED)
    with pytest.raises(Invalid, match="connection_pooler"):
        check_capacity(POOLED, local, "local", previous=InstanceSpec(name="db"))


def test_an_allow_list_and_the_pooler_do_not_go_together() -> None:
    with pytest.raises(ValueError, match="ip_allow_list cannot be combined with connection_pooler"):
        InstanceSpec(name="db", ip_allow_list=("10.0.0.0/8",), connection_pooler={"enabled": True})  # type: ignore[arg-type]
    assert POOLED.features() == {"connection_pooler"} and ALLOWED.features() == {"ip_allow_list"}


def test_a_verification_schedule_needs_a_data_plane_that_archives_wal() -> None:
    verified = spec(backup={"verify_schedule": "0 4 * * 0"})
    assert verified.features() == {"pitr"} and spec().features() == frozenset()
    with pytest.raises(Invalid, match=r"cannot provide backup\.verify_schedule: .*archives no WAL"):
        check_capacity(verified, Capacity(features=frozenset({"backup", "restore"})), "plain")
    check_capacity(verified, Capacity(features=frozenset({"backup", "restore", "pitr"})), "local")
