"""CloudNativePG's admission rules as Howdah mirrors them (:mod:`howdah.providers._cnpg_admission`).

Each test names the webhook function it mirrors (CloudNativePG 1.30.0, ``internal/webhook/v1/cluster_webhook.go``
or ``pooler_webhook.go``; the fixed parameters from ``pkg/postgres/configuration.go``) and checks the cases that
decide it: what the operator accepts and what it refuses. The matrix in ``test_cnpg_crds.py`` then checks that
the API refuses every spec whose objects these rules would refuse.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest

from howdah.control.stacks import forbidden_reason
from howdah.providers import _cnpg
from howdah.providers._cnpg import ClusterShape, PoolerShape
from howdah.providers._cnpg_admission import (
    FIXED_PARAMETERS,
    kubernetes_quantity,
    postgres_quantity,
    refusals,
    validate_configuration,
    validate_hibernation_annotation,
    validate_image_name,
    validate_name,
    validate_pg_failover_slots,
    validate_pooler,
    validate_primary_update_strategy,
    validate_resources,
    validate_storage_change,
    validate_wal_level_change,
)

IID = "6f1c2a9e-8d4b-4c1e-9a7f-2b3c4d5e6f70"


def cluster(parameters: dict[str, str] | None = None, **shape: Any) -> dict[str, Any]:
    """A Cluster as the provider renders it, with ``parameters`` as its postgresql.parameters."""
    rendered = _cnpg.render_cluster(IID, "orders", ClusterShape(**shape), {}, namespace="tenants")
    rendered["spec"]["postgresql"]["parameters"] = dict(parameters or {})
    return rendered


def rules_of(found: list[Any]) -> list[str]:
    return [refusal.rule for refusal in found]


def test_what_howdah_renders_by_default_is_accepted() -> None:
    shapes = [ClusterShape(), ClusterShape(replicas=3, connection_pooler=PoolerShape(enabled=True))]
    for shape in shapes:
        assert refusals(_cnpg.render_cluster(IID, "orders", shape, {}, namespace="tenants")) == []
        pooler = _cnpg.render_pooler(IID, "orders", shape, namespace="tenants")
        assert pooler is None or refusals(pooler) == []


# --- parsePostgresQuantityValue and Kubernetes quantities ------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("16384", 16384 * 2**20), ("128MB", 128 * 2**20), ("8kB", 8192), ("1.5GB", 3 * 2**29), ("1 GB", 2**30),
     ("100B", 100), ("1TB", 2**40), ("5min", None), ("0x1000", None), ("1e3", None), ("128mb", None), ("", None)],
)  # fmt: skip
def test_sizes_are_read_as_the_operator_reads_them(text: str, expected: int | None) -> None:
    """parsePostgresQuantityValue: a bare integer is MB, any other value needs a unit ending in B."""
    assert postgres_quantity(text) == expected


def test_kubernetes_quantities() -> None:
    assert kubernetes_quantity("512Mi") == 512 * 2**20
    assert kubernetes_quantity("1.5G") == 1_500_000_000
    assert kubernetes_quantity("250m") == Fraction(1, 4)
    assert kubernetes_quantity("1e3") == 1000
    assert kubernetes_quantity("1 Gi") is None
    assert kubernetes_quantity("Gi") is None


# --- validateName -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "refused"),
    [("orders-1a2b3c4d", False), ("a" * 50, False), ("a" * 51, True), ("Orders", True), ("1orders", True),
     ("orders.prod", True), ("orders-", True)],
)  # fmt: skip
def test_validate_name(name: str, refused: bool) -> None:
    """validateName: a DNS-1035 label (services are named after the cluster) of at most 50 characters."""
    obj = cluster()
    obj["metadata"]["name"] = name
    assert bool(validate_name(obj)) == refused


def test_every_cluster_name_howdah_makes_is_accepted() -> None:
    for name in ("orders", "x" * 40, "9lives", "a--b", "-"):
        obj = _cnpg.render_cluster(IID, name, ClusterShape(), {}, namespace="tenants")
        assert validate_name(obj) == [], name


# --- validateImageName ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image", "refused"),
    [("ghcr.io/cloudnative-pg/postgresql:18", False), ("ghcr.io/cloudnative-pg/postgresql:17.6-bookworm", False),
     ("registry:5000/postgresql:18.1", False), ("ghcr.io/cloudnative-pg/postgresql:latest", True),
     ("ghcr.io/cloudnative-pg/postgresql@sha256:abcd", True), ("registry:5000/postgresql", True),
     ("ghcr.io/cloudnative-pg/postgresql:stable", True)],
)  # fmt: skip
def test_validate_image_name(image: str, refused: bool) -> None:
    """validateImageName: the tag names a Postgres version, so the operator can tell an upgrade."""
    obj = cluster()
    obj["spec"]["imageName"] = image
    assert bool(validate_image_name(obj)) == refused


# --- validatePrimaryUpdateStrategy ---------------------------------------------------------------------------
def test_validate_primary_update_strategy() -> None:
    """validatePrimaryUpdateStrategy: supervised or unsupervised, and supervised only with a replica."""
    assert validate_primary_update_strategy(cluster(replicas=1)) == []  # Howdah's: unsupervised
    supervised = cluster(replicas=1)
    supervised["spec"]["primaryUpdateStrategy"] = "supervised"
    assert rules_of(validate_primary_update_strategy(supervised)) == ["validatePrimaryUpdateStrategy"]
    supervised["spec"]["instances"] = 2
    assert validate_primary_update_strategy(supervised) == []
    supervised["spec"]["primaryUpdateStrategy"] = "manual"
    assert validate_primary_update_strategy(supervised) != []


# --- validateConfiguration -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FIXED_PARAMETERS))
def test_fixed_parameters_are_refused_by_the_operator_and_by_the_api(name: str) -> None:
    """validateConfiguration with FixedConfigurationParameters: the operator refuses each of them (but for its
    own value), and Howdah's API refuses every one a user could set (shared_preload_libraries is no parameter to
    Howdah: it is rendered as the Cluster's own list)."""
    found = validate_configuration(cluster({name: "something-else"}))
    assert [r.path for r in found] == [f"spec.postgresql.parameters.{name}"]
    if name != "shared_preload_libraries":
        assert forbidden_reason(name) is not None


def test_a_fixed_parameter_at_the_operators_own_value_passes() -> None:
    assert validate_configuration(cluster({"archive_mode": "on", "log_rotation_age": "0"})) == []
    assert validate_configuration(cluster({"archive_mode": "off"})) != []


@pytest.mark.parametrize(
    ("parameters", "replicas", "refused"),
    [({"wal_level": "replica"}, 3, False), ({"wal_level": "logical"}, 1, False),
     ({"wal_level": "hot_standby"}, 1, True), ({"wal_level": "archive"}, 1, True),
     ({"wal_level": "minimal"}, 1, True),  # archiving is on: minimal cannot archive
     ({"wal_level": "minimal", "max_wal_senders": "0", "archive_mode": "off"}, 1, True),  # archive_mode is fixed
     ({"wal_level": "minimal", "max_wal_senders": "0"}, 3, True)],
)  # fmt: skip
def test_validate_configuration_wal_level(parameters: dict[str, str], replicas: int, refused: bool) -> None:
    """validateConfiguration: a wal_level the operator knows, above minimal with replicas or archiving, and
    max_wal_senders = 0 with minimal. Howdah renders the aliases as replica."""
    assert bool(validate_configuration(cluster(parameters, replicas=replicas))) == refused


@pytest.mark.parametrize(
    ("value", "replicas", "refused"),
    [("on", 3, False), ("off", 1, False), ("off", 2, True), ("yes", 2, False), ("maybe", 1, True)],
)
def test_validate_configuration_wal_log_hints(value: str, replicas: int, refused: bool) -> None:
    """validateConfiguration: wal_log_hints is a boolean, and on whenever the cluster has more than one instance."""
    assert bool(validate_configuration(cluster({"wal_log_hints": value}, replicas=replicas))) == refused


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [({"shared_buffers": "256MB"}, False), ({"shared_buffers": "16384"}, False), ({"shared_buffers": "0x10"}, True),
     ({"min_wal_size": "80MB", "max_wal_size": "1GB"}, False), ({"min_wal_size": "1GB"}, True),
     ({"max_wal_size": "64MB"}, True), ({"min_wal_size": "2GB", "max_wal_size": "4GB"}, False),
     ({"max_wal_size": "1e3"}, True)],
)  # fmt: skip
def test_validate_configuration_sizes(parameters: dict[str, str], refused: bool) -> None:
    """validateConfiguration (shared_buffers readable) and validateWalSizeConfiguration (min below max, an unset
    one at 80MB / 1GB)."""
    assert bool(validate_configuration(cluster(parameters))) == refused


# --- validatePgFailoverSlots ---------------------------------------------------------------------------------
def test_validate_pg_failover_slots() -> None:
    """validatePgFailoverSlots: using the extension (any pg_failover_slots.* parameter) needs hot_standby_feedback."""
    used = {"pg_failover_slots.synchronize_slot_names": "name_like:%"}
    assert rules_of(validate_pg_failover_slots(cluster(used))) == ["validatePgFailoverSlots"]
    assert validate_pg_failover_slots(cluster({**used, "hot_standby_feedback": "on"})) == []
    assert validate_pg_failover_slots(cluster({"hot_standby_feedback": "off"})) == []


# --- validateResources ---------------------------------------------------------------------------------------
def test_validate_resources() -> None:
    """validateResources: requests within limits, and shared_buffers within the memory request."""
    assert validate_resources(cluster({"shared_buffers": "256MB"}, memory="1Gi")) == []
    assert rules_of(validate_resources(cluster({"shared_buffers": "2GB"}, memory="1Gi"))) == ["validateResources"]
    assert validate_resources(cluster({"shared_buffers": "1024"}, memory="1Gi")) == []  # 1024 MB = 1Gi: equal is fine
    over = cluster(cpu="2")
    over["spec"]["resources"]["limits"]["cpu"] = "1"
    assert [r.path for r in validate_resources(over)] == ["spec.resources.requests.cpu"]


# --- validateHibernationAnnotation ---------------------------------------------------------------------------
def test_validate_hibernation_annotation() -> None:
    """validateHibernationAnnotation: on or off."""
    for hibernated in (False, True):
        rendered = _cnpg.render_cluster(IID, "orders", ClusterShape(), {}, namespace="t", hibernated=hibernated)
        assert validate_hibernation_annotation(rendered) == []
    odd = cluster()
    odd["metadata"]["annotations"][_cnpg.HIBERNATION] = "true"
    assert rules_of(validate_hibernation_annotation(odd)) == ["validateHibernationAnnotation"]


# --- changes: validateStorageChange, validateWALLevelChange ----------------------------------------------------
def test_validate_storage_change() -> None:
    """validateStorageChange: storage grows or stays; it never shrinks."""
    old = cluster(storage="50Gi")
    assert validate_storage_change(cluster(storage="50Gi"), old) == []
    assert validate_storage_change(cluster(storage="100Gi"), old) == []
    assert rules_of(validate_storage_change(cluster(storage="10Gi"), old)) == ["validateStorageChange"]
    assert rules_of(refusals(cluster(storage="10Gi"), old)) == ["validateStorageChange"]
    assert refusals(cluster(storage="10Gi")) == []  # a new Cluster has nothing to shrink


def test_validate_wal_level_change() -> None:
    """validateWALLevelChange: an existing cluster never goes to minimal."""
    old = cluster({"wal_level": "replica"})
    assert rules_of(validate_wal_level_change(cluster({"wal_level": "minimal"}), old)) == ["validateWALLevelChange"]
    assert validate_wal_level_change(cluster({"wal_level": "logical"}), old) == []
    assert validate_wal_level_change(cluster({"wal_level": "minimal"}), cluster()) == []


# --- the Pooler webhook --------------------------------------------------------------------------------------
def test_validate_pooler() -> None:
    """validatePgBouncer, validatePgbouncerGenericParameters, validateCluster: a pgbouncer section with only the
    parameters the operator allows, for a named cluster of another name."""
    pooler = _cnpg.render_pooler(
        IID, "orders", ClusterShape(connection_pooler=PoolerShape(enabled=True)), namespace="t"
    )
    assert pooler is not None and validate_pooler(pooler) == []
    reserved = copy.deepcopy(pooler)
    reserved["spec"]["pgbouncer"]["parameters"]["listen_port"] = "6543"
    assert rules_of(validate_pooler(reserved)) == ["validatePgbouncerGenericParameters"]
    same_name = copy.deepcopy(pooler)
    same_name["spec"]["cluster"]["name"] = same_name["metadata"]["name"]
    assert rules_of(validate_pooler(same_name)) == ["validateCluster"]
    del same_name["spec"]["pgbouncer"]
    assert "validatePgBouncer" in rules_of(validate_pooler(same_name))


def test_a_refusal_says_the_field_the_value_and_the_rule() -> None:
    (found,) = validate_configuration(cluster({"hot_standby": "off"}))
    text = str(found)
    assert "spec.postgresql.parameters.hot_standby" in text and "'off'" in text and "validateConfiguration" in text
