"""CloudNativePG manifests (pure): golden files, names, reading rendered objects back, status mapping.

The golden files under ``golden/cnpg/`` are compared exactly; after an intended change, regenerate them with
``HOWDAH_UPDATE_GOLDEN=1 pytest tests/unit/test_cnpg_render.py`` and review the diff.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from howdah.control.extensions import declared_catalog
from howdah.control.spec import ConnectionPooler, InstanceSpec, Stack
from howdah.control.stacks import render_settings
from howdah.providers import _cnpg
from howdah.providers._cnpg import ClusterShape, PoolerShape
from tests.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "cnpg"
IID = "6f1c2a9e-8d4b-4c1e-9a7f-2b3c4d5e6f70"
NS = "tenants"
PASSWORD = "s3cret-For-Tests"
RESTARTED_AT = "2025-03-01T12:00:00Z"

STANDARD = InstanceSpec(name="orders")
OLTP = InstanceSpec(
    name="payments",
    stack=Stack.oltp,
    cpu="2",
    memory="4Gi",
    storage="50Gi",
    replicas=3,
    postgres_configs={"work_mem": "8MB", "shared_preload_libraries": "auto_explain"},
    connection_pooler=ConnectionPooler(enabled=True, pool_mode="session", default_pool_size=40),
)


# Fixed settings (not render_settings' output) so that the golden files change only when rendering does.
STANDARD_SETTINGS = {
    "max_connections": "100",
    "shared_buffers": "256MB",
    "shared_preload_libraries": "pg_stat_statements",
    "work_mem": "2560kB",
}
OLTP_SETTINGS = {
    "jit": "off",
    "max_connections": "600",
    "random_page_cost": "1.1",
    "shared_buffers": "1GB",
    "shared_preload_libraries": "pg_stat_statements,pg_prewarm,auto_explain",
    "work_mem": "8MB",
}


def manifests(spec: InstanceSpec, settings: dict[str, str], **cluster_options: Any) -> list[dict[str, Any]]:
    objects = [
        _cnpg.render_secret(IID, spec.name, PASSWORD, namespace=NS, org="acme"),
        _cnpg.render_cluster(IID, spec.name, spec, settings, namespace=NS, org="acme", **cluster_options),
    ]
    pooler = _cnpg.render_pooler(IID, spec.name, spec, namespace=NS, org="acme")
    return objects if pooler is None else [*objects, pooler]


@pytest.mark.parametrize(
    ("golden", "spec", "settings", "options"),
    [
        ("standard", STANDARD, STANDARD_SETTINGS, {}),
        ("oltp_pooler", OLTP, OLTP_SETTINGS, {}),
        ("hibernated", STANDARD, STANDARD_SETTINGS, {"hibernated": True}),
        ("restarted", STANDARD, STANDARD_SETTINGS, {"restarted_at": RESTARTED_AT}),
    ],
)
def test_golden(golden: str, spec: InstanceSpec, settings: dict[str, str], options: dict[str, Any]) -> None:
    check_golden(GOLDEN, golden, manifests(spec, settings, **options))


def test_golden_files_parse_back_to_what_was_rendered() -> None:
    # The golden files are real YAML documents a `kubectl apply -f` would accept as-is.
    for path in sorted(GOLDEN.glob("*.yaml")):
        documents = list(yaml.safe_load_all(path.read_text()))
        kinds = [d["kind"] for d in documents]
        assert kinds[:2] == ["Secret", "Cluster"], path.name
        assert all(d["metadata"]["namespace"] == NS for d in documents)


def test_cluster_fields() -> None:
    settings = render_settings(OLTP)
    cluster = _cnpg.render_cluster(IID, "payments", OLTP, settings, namespace=NS)
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert spec["storage"] == {"size": "50Gi"}
    assert spec["imageName"] == "ghcr.io/cloudnative-pg/postgresql:18"
    parameters = spec["postgresql"]["parameters"]
    assert "shared_preload_libraries" not in parameters
    added = {"pg_stat_statements.track": "top"}  # pg_stat_statements is preloaded: the operator keeps its extension
    assert parameters == {k: v for k, v in settings.items() if k != "shared_preload_libraries"} | added
    assert parameters["work_mem"] == "8MB"
    assert spec["postgresql"]["shared_preload_libraries"] == ["pg_stat_statements", "pg_prewarm", "auto_explain"]
    initdb = spec["bootstrap"]["initdb"]
    assert initdb == {
        "database": "app",
        "owner": "app",
        "secret": {"name": _cnpg.secret_name(cluster["metadata"]["name"])},
        "postInitApplicationSQL": list(_cnpg.EXTENSION_SCHEMA_SQL),
    }
    assert cluster["metadata"]["annotations"] == {
        "cnpg.io/hibernation": "off",
        "howdah.dev/parameters": ",".join(sorted(k for k in settings if k != "shared_preload_libraries")),
    }
    assert "org" not in str(cluster["metadata"]["labels"])
    assert _cnpg.render_cluster(IID, "x", OLTP, settings, namespace=NS, image="my/pg:18.1")["spec"]["imageName"] == (
        "my/pg:18.1"
    )


def test_secret_and_pooler() -> None:
    secret = _cnpg.render_secret(IID, "orders", PASSWORD, namespace=NS)
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert _cnpg.secret_password(secret) == PASSWORD
    assert secret["data"]["username"] == "YXBw"  # base64 of "app"
    assert _cnpg.render_pooler(IID, "orders", STANDARD, namespace=NS) is None
    pooler = _cnpg.render_pooler(IID, "payments", OLTP, namespace=NS)
    assert pooler is not None
    cluster = _cnpg.cluster_name(IID, "payments")
    assert pooler["metadata"]["name"] != cluster  # CloudNativePG refuses a Pooler named like its Cluster
    assert pooler["spec"]["cluster"] == {"name": cluster}
    assert pooler["spec"]["pgbouncer"] == {
        "poolMode": "session",
        "parameters": {"default_pool_size": "40", "max_client_conn": "1000"},
    }


CATALOG = _cnpg.standard_image_catalog()


def test_database_extensions() -> None:
    database = _cnpg.render_database(
        IID, "orders", ["vector", "pg_trgm"], ["pg_trgm", "hstore"], namespace=NS, catalog=CATALOG
    )
    assert database["spec"]["cluster"] == {"name": _cnpg.cluster_name(IID, "orders")}
    assert database["spec"]["extensions"] == [
        {"name": "vector", "ensure": "present", "schema": "extensions"},
        {"name": "pg_trgm", "ensure": "present", "schema": "extensions"},
        {"name": "hstore", "ensure": "absent"},
    ]
    # the schema extensions go into is the superuser's: a tenant cannot plant objects there
    assert database["spec"]["schemas"] == [{"name": "extensions", "owner": "postgres", "ensure": "present"}]
    # the catalog says whose control file fixes its schema: plpgsql here, pg_cron on an image that has it
    fixed = _cnpg.render_database(IID, "orders", ["plpgsql"], [], namespace=NS, catalog=CATALOG)
    assert fixed["spec"]["extensions"] == [{"name": "plpgsql", "ensure": "present"}]
    with_cron = declared_catalog(["pg_cron"])
    cron = _cnpg.render_database(IID, "orders", ["pg_cron"], [], namespace=NS, catalog=with_cron)
    assert cron["spec"]["extensions"] == [{"name": "pg_cron", "ensure": "present"}]


def test_extensions_are_declared_after_what_they_require() -> None:
    """The operator's Database resource runs CREATE EXTENSION without CASCADE: earthdistance needs cube first,
    even when the user asked only for earthdistance (the local provider's CASCADE creates it too)."""
    database = _cnpg.render_database(IID, "orders", ["earthdistance"], ["cube"], namespace=NS, catalog=CATALOG)
    assert [(e["name"], e["ensure"]) for e in database["spec"]["extensions"]] == [
        ("cube", "present"), ("earthdistance", "present"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "unit", "rendered"),
    [
        ("16384", "8kB", "131072kB"),  # shared_buffers: 8 kB pages to Postgres, MB to the operator's checks
        ("4096", "kB", "4096kB"),
        ("1024", "MB", "1024MB"),
        ("30", "s", "30s"),
        ("0.5", "ms", "0.5ms"),
        ("0", "8kB", "0"),  # zero is zero in any unit
        ("-1", "kB", "-1"),  # the usual "off / use the default", no size at all
        ("128MB", "8kB", "128MB"),  # a unit already
        ("100", None, "100"),  # no unit: a count
    ],
)
def test_bare_numbers_of_sizes_and_durations_get_an_explicit_unit(value: str, unit: str | None, rendered: str) -> None:
    assert _cnpg.explicit_unit(value, unit) == rendered


def test_the_cluster_spells_units_out() -> None:
    parameters = _cnpg.cluster_parameters({"shared_buffers": "16384", "max_connections": "100"}, 18)
    assert parameters == {"max_connections": "100", "shared_buffers": "131072kB"}


@pytest.mark.parametrize(
    ("preload", "configs", "added"),
    [
        ("pg_stat_statements", {}, {"pg_stat_statements.track": "top"}),
        ("pg_stat_statements,pgaudit", {}, {"pg_stat_statements.track": "top", "pgaudit.log": "none"}),
        ("pg_stat_statements", {"pg_stat_statements.max": "10000"}, {}),  # one of its own already keeps it
        ("auto_explain", {}, {}),
    ],
)
def test_operator_managed_extensions_keep_a_setting_of_theirs(
    preload: str, configs: dict[str, str], added: dict[str, str]
) -> None:
    """Without a ``pg_stat_statements.*`` (``pgaudit.*``) setting, CloudNativePG drops the extension from every
    database; a preloaded one gets its default setting, which changes nothing else."""
    parameters = _cnpg.cluster_parameters({"shared_preload_libraries": preload, **configs}, 18)
    assert parameters == dict(sorted({**configs, **added}.items()))


def test_the_standard_images_catalog() -> None:
    assert {"pg_stat_statements", "pg_trgm", "pgcrypto", "uuid-ossp", "pgaudit", "vector"} <= set(CATALOG.names())
    assert "pg_cron" not in CATALOG and "postgis" not in CATALOG and "auto_explain" not in CATALOG
    statements, audit = CATALOG.get("pg_stat_statements"), CATALOG.get("pgaudit")
    assert statements is not None and statements.preload == ("pg_stat_statements",) and statements.operator_preload
    assert audit is not None and audit.preload == ("pgaudit",) and audit.operator_preload
    vector = CATALOG.get("vector")
    assert vector is not None and vector.preload == () and not vector.operator_preload
    earthdistance = CATALOG.get("earthdistance")
    assert earthdistance is not None and earthdistance.requires == ("cube",)
    # every stack works on it
    for stack in Stack:
        assert render_settings(InstanceSpec(name="x", stack=stack), CATALOG, data_plane="k8s")


def test_new_clusters_make_the_extension_schema_before_the_tenant_logs_in() -> None:
    cluster = _cnpg.render_cluster(IID, "orders", STANDARD, {}, namespace=NS)
    post_init = cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    assert post_init[0] == "CREATE SCHEMA IF NOT EXISTS extensions AUTHORIZATION postgres"
    assert """ALTER DATABASE app SET search_path = '"$user"', public, extensions""" in post_init


@pytest.mark.parametrize(
    "name", ["orders", "a", "x" * 40, "Weird_Name.With Dots", "9lives", "-", "élan", "a--b-", "y" * 200]
)
def test_cluster_name_is_a_short_dns_label(name: str) -> None:
    cluster = _cnpg.cluster_name(IID, name)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", cluster), cluster
    assert len(cluster) <= 50
    assert len(_cnpg.pooler_name(cluster)) <= 63
    assert cluster == _cnpg.cluster_name(IID, name)  # deterministic
    assert cluster != _cnpg.cluster_name(IID.replace("6f", "7f"), name)  # other ids, other clusters


def test_cluster_name_keeps_the_instance_name() -> None:
    assert _cnpg.cluster_name(IID, "orders").startswith("orders-")
    assert _cnpg.cluster_name(IID, "x" * 40).startswith("x" * 40 + "-")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("acme", "acme"), ("6f1c2a9e-8d4b", "6f1c2a9e-8d4b"), ("team-", "team"), ("a b/c", "a-b-c"), ("-x-", "x")],
)
def test_label_values(text: str, expected: str) -> None:
    assert _cnpg.label_value(text) == expected


def test_parse_cluster_inverts_render() -> None:
    cases: list[tuple[InstanceSpec, dict[str, Any]]] = [
        (STANDARD, {}),
        (OLTP, {"hibernated": True, "restarted_at": RESTARTED_AT}),
    ]
    for spec, options in cases:
        settings = render_settings(spec)
        cluster = _cnpg.render_cluster(IID, spec.name, spec, settings, namespace=NS, org="acme", **options)
        pooler = _cnpg.render_pooler(IID, spec.name, spec, namespace=NS, org="acme")
        state = _cnpg.parse_cluster({**cluster, "status": {"phase": "whatever"}}, pooler)
        assert state.instance_id == IID
        assert state.name == spec.name
        assert state.org == "acme"
        assert state.settings == settings
        assert state.hibernated is options.get("hibernated", False)
        assert state.restarted_at == options.get("restarted_at")
        again = _cnpg.render_cluster(
            state.instance_id, state.name, state.shape, state.settings, namespace=NS, image=state.image,
            org=state.org, hibernated=state.hibernated, restarted_at=state.restarted_at,
        )  # fmt: skip
        assert again == cluster
        assert _cnpg.render_pooler(IID, state.name, state.shape, namespace=NS, org="acme") == pooler


def test_shape_defaults_match_the_instance_spec() -> None:
    default = InstanceSpec(name="d")
    shape = ClusterShape()
    assert (shape.pg_version, shape.cpu, shape.memory, shape.storage, shape.replicas) == (
        default.pg_version, default.cpu, default.memory, default.storage, default.replicas,
    )  # fmt: skip
    pooler = default.connection_pooler
    assert PoolerShape() == PoolerShape(
        pooler.enabled, pooler.pool_mode, pooler.max_client_connections, pooler.default_pool_size
    )


def _cluster(status: dict[str, Any] | None, hibernated: bool = False) -> dict[str, Any]:
    cluster = _cnpg.render_cluster(
        IID, "orders", STANDARD, render_settings(STANDARD), namespace=NS, hibernated=hibernated
    )
    return cluster if status is None else {**cluster, "status": status}


def test_status_of_a_missing_cluster() -> None:
    status = _cnpg.instance_status(None)
    assert (status.exists, status.running, status.accepting_connections) == (False, False, False)


def test_status_of_a_new_cluster_without_status() -> None:
    status = _cnpg.instance_status(_cluster(None))
    assert (status.exists, status.running, status.accepting_connections) == (True, False, False)
    assert status.port == 5432
    assert status.server_version == "18"


def test_status_of_a_healthy_cluster() -> None:
    pods = ["orders-1", "orders-2", "orders-3"]
    status = _cnpg.instance_status(
        _cluster(
            {
                "phase": "Cluster in healthy state",
                "instances": 3,
                "readyInstances": 3,
                "currentPrimary": "orders-1",
                "instanceNames": pods,
                "instancesStatus": {"healthy": pods},
                "pgDataImageInfo": {"image": "ghcr.io/cloudnative-pg/postgresql:18.1", "majorVersion": 18},
            }
        )
    )
    assert (status.exists, status.running, status.accepting_connections) == (True, True, True)
    assert status.server_version == "18"
    assert status.replicas == [
        {"name": "orders-1", "role": "primary", "ready": True, "state": "healthy"},
        {"name": "orders-2", "role": "replica", "ready": True, "state": "healthy"},
        {"name": "orders-3", "role": "replica", "ready": True, "state": "healthy"},
    ]


def test_status_while_the_primary_is_being_set_up() -> None:
    status = _cnpg.instance_status(
        _cluster({"phase": "Setting up primary", "instances": 1, "readyInstances": 0, "instanceNames": ["orders-1"]})
    )
    assert (status.exists, status.running, status.accepting_connections) == (True, False, False)
    assert status.replicas == [{"name": "orders-1", "role": "replica", "ready": False, "state": "unknown"}]


def test_status_with_a_failed_primary() -> None:
    status = _cnpg.instance_status(
        _cluster(
            {
                "phase": "Failing over",
                "readyInstances": 1,
                "currentPrimary": "orders-1",
                "instancesStatus": {"failed": ["orders-1"], "healthy": ["orders-2"]},
            }
        )
    )
    assert (status.running, status.accepting_connections) == (True, False)
    assert [r["state"] for r in status.replicas] == ["failed", "healthy"]


def test_status_from_the_phase_when_pods_are_not_listed() -> None:
    healthy = {"phase": "Cluster in healthy state", "readyInstances": 1, "currentPrimary": "orders-1"}
    assert _cnpg.instance_status(_cluster(healthy)).accepting_connections
    busy = {**healthy, "phase": "Upgrading cluster"}
    assert not _cnpg.instance_status(_cluster(busy)).accepting_connections


def test_status_of_a_hibernated_cluster() -> None:
    # The operator keeps reporting the last ready count for a moment; the annotation wins.
    stale = {"phase": "Cluster in healthy state", "readyInstances": 1, "currentPrimary": "orders-1"}
    status = _cnpg.instance_status(_cluster(stale, hibernated=True))
    assert (status.exists, status.running, status.accepting_connections) == (True, False, False)
    condition = {"type": "cnpg.io/hibernation", "status": "True", "reason": "Hibernated"}
    status = _cnpg.instance_status(_cluster({**stale, "conditions": [condition]}))
    assert not status.running


def test_preload_libraries() -> None:
    assert _cnpg.preload_libraries("") == []
    assert _cnpg.preload_libraries('pg_stat_statements, "auto_explain",pg_stat_statements') == [
        "pg_stat_statements",
        "auto_explain",
    ]


def test_parameters_the_operator_defaults_are_not_read_back_as_howdahs() -> None:
    """CloudNativePG's defaulting webhook writes parameters of its own into the live Cluster; reading it back takes
    only those Howdah set (listed in an annotation), so re-rendering never adopts the operator's defaults."""
    settings = render_settings(OLTP)
    cluster = _cnpg.render_cluster(IID, "payments", OLTP, settings, namespace=NS)
    live = yaml.safe_load(yaml.safe_dump(cluster))
    live["spec"]["postgresql"]["parameters"].update(
        {"archive_timeout": "5min", "wal_keep_size": "512MB", "log_destination": "csvlog", "work_mem": "8MB"}
    )
    state = _cnpg.parse_cluster(live)
    assert "archive_timeout" not in state.settings and "log_destination" not in state.settings
    assert _cnpg.render_cluster(IID, "payments", state.shape, state.settings, namespace=NS) == cluster


def test_an_allow_list_becomes_pg_hba_rules_and_is_read_back() -> None:
    """Password logins from the listed CIDRs, every other address refused; none: the operator's default rules."""
    spec = InstanceSpec(name="orders", ip_allow_list=("10.0.0.0/8", "2001:db8::/32"))
    cluster = _cnpg.render_cluster(IID, "orders", spec, render_settings(spec), namespace=NS)
    assert cluster["spec"]["postgresql"]["pg_hba"] == [
        "host all all 10.0.0.0/8 scram-sha-256",
        "host all all 2001:db8::/32 scram-sha-256",
        "host all all all reject",
    ]
    state = _cnpg.parse_cluster(cluster)
    assert state.shape.ip_allow_list == ("10.0.0.0/8", "2001:db8::/32")
    assert _cnpg.render_cluster(IID, "orders", state.shape, state.settings, namespace=NS) == cluster
    plain = _cnpg.render_cluster(IID, "orders", STANDARD, render_settings(STANDARD), namespace=NS)
    assert "pg_hba" not in plain["spec"]["postgresql"]
