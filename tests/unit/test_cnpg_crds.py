"""Every object the Kubernetes provider renders passes CloudNativePG's CRD schemas (1.26 and 1.30), and a matrix of
hostile specs gets one verdict on every provider: refused at the API with the parameter named, or rendered into
objects the operator accepts."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from howdah.control.spec import ConnectionPooler, Extension, InstanceSpec, Stack
from howdah.control.stacks import ForbiddenSetting, InvalidSettingValue, render_settings
from howdah.providers import _cnpg, _cnpg_admission
from tests import cnpg_schema

pytestmark = pytest.mark.skipif(not cnpg_schema.available(), reason=cnpg_schema.MISSING)

IID = "6f1c2a9e-8d4b-4c1e-9a7f-2b3c4d5e6f70"
NS = "tenants"
CATALOG = _cnpg.standard_image_catalog()


def rendered(spec: InstanceSpec, **options: Any) -> list[dict[str, Any]]:
    """The Cluster, Database and (pooler on) Pooler of ``spec``'s instance, as the provider applies them."""
    settings = render_settings(spec, CATALOG)
    enabled = [e.name for e in spec.extensions if e.enabled]
    disabled = [e.name for e in spec.extensions if not e.enabled]
    objects = [
        _cnpg.render_cluster(IID, spec.name, spec, settings, namespace=NS, org="acme", **options),
        _cnpg.render_database(IID, spec.name, enabled, disabled, namespace=NS, catalog=CATALOG, org="acme"),
    ]
    pooler = _cnpg.render_pooler(IID, spec.name, spec, namespace=NS, org="acme")
    return objects + ([pooler] if pooler is not None else [])


# --- the validator can fail ----------------------------------------------------------------------------------
@pytest.mark.parametrize("version", cnpg_schema.VERSIONS)
def test_the_schemas_refuse_what_a_strict_api_server_refuses(version: str) -> None:
    cluster = rendered(InstanceSpec(name="orders"))[0]
    assert cnpg_schema.problems(cluster, version) == []
    unknown = {**cluster, "spec": {**cluster["spec"], "instancez": 3}}
    assert any("instancez" in p for p in cnpg_schema.problems(unknown, version))
    too_few = {**cluster, "spec": {**cluster["spec"], "instances": 0}}
    assert any(p.startswith("spec.instances") for p in cnpg_schema.problems(too_few, version))
    wrong_type = {**cluster, "spec": {**cluster["spec"], "postgresql": {"parameters": {"work_mem": 4}}}}
    assert any("work_mem" in p for p in cnpg_schema.problems(wrong_type, version))


# --- every rendered object is valid --------------------------------------------------------------------------
EXTENSION_SETS: list[tuple[Extension, ...]] = [
    (),
    (Extension(name="vector"), Extension(name="pg_trgm")),
    (Extension(name="earthdistance"), Extension(name="pgaudit")),
    (Extension(name="pg_stat_statements", enabled=False), Extension(name="hstore")),
]
CONFIGS: list[dict[str, str]] = [
    {},
    {"shared_buffers": "16384", "work_mem": "4096", "max_connections": "300"},
    {"wal_level": "hot_standby", "min_wal_size": "256MB", "max_wal_size": "4GB", "pg_stat_statements.max": "10000"},
]
MATRIX = list(itertools.product(list(Stack), (1, 3), (False, True), range(len(EXTENSION_SETS)), range(len(CONFIGS))))


@pytest.mark.parametrize("version", cnpg_schema.VERSIONS)
def test_every_rendered_object_passes_the_crd_schemas(version: str) -> None:
    """Stacks x replicas x pooler x extensions x settings, plus the lifecycle variants (hibernated, restarted)."""
    failures: dict[str, list[str]] = {}
    for stack, replicas, pooler, extensions, configs in MATRIX:
        spec = InstanceSpec(
            name="orders", stack=stack, replicas=replicas, cpu="2", memory="4Gi", storage="20Gi",
            connection_pooler=ConnectionPooler(enabled=pooler), extensions=EXTENSION_SETS[extensions],
            postgres_configs=CONFIGS[configs], ip_allow_list=() if pooler else ("10.0.0.0/8", "::1/128"),
        )  # fmt: skip
        for options in ({}, {"hibernated": True, "restarted_at": "2026-12-01T10:00:00Z"}):
            for obj in rendered(spec, **options):
                found = cnpg_schema.problems(obj, version)
                if found:
                    failures[f"{stack}/{replicas}/{pooler}/{extensions}/{configs}/{obj['kind']}"] = found
    assert failures == {}
    assert len(MATRIX) == 5 * 2 * 2 * 4 * 3


# --- hostile specs: one verdict, whatever the provider -------------------------------------------------------
REFUSED = {  # postgres_configs the operator's webhook refuses (or that would break the instance): refused by name
    "hot_standby": "off",
    "temp_tablespaces": "fast",
    "log_rotation_age": "1d",
    "log_truncate_on_rotation": "on",
    "restart_after_crash": "off",
    "recovery_min_apply_delay": "5min",
    "syslog_facility": "LOCAL0",
    "data_sync_retry": "on",
    "bonjour": "on",
    "event_source": "howdah",
    "wal_level": "minimal",
    "archive_command": "true",
    "ssl": "off",
}
ACCEPTED = {  # values the operator would refuse as written; rendered so that it accepts them
    "wal_level": "archive",
    "shared_buffers": "16384",
    "max_wal_size": "8GB",
    "pg_stat_statements.track": "all",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_hostile_setting_is_refused_by_name(name: str) -> None:
    spec = InstanceSpec(name="orders", replicas=2, postgres_configs={name: REFUSED[name]})
    with pytest.raises((ForbiddenSetting, InvalidSettingValue)) as caught:
        rendered(spec)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("version", cnpg_schema.VERSIONS)
@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_an_accepted_setting_renders_what_the_operator_accepts(name: str, version: str) -> None:
    spec = InstanceSpec(name="orders", replicas=2, postgres_configs={name: ACCEPTED[name]})
    cluster = rendered(spec)[0]
    assert cnpg_schema.problems(cluster, version) == []
    parameters = cluster["spec"]["postgresql"]["parameters"]
    assert parameters.get("wal_level", "replica") in ("replica", "logical")  # never an alias the webhook refuses
    assert not parameters["shared_buffers"].isdigit()  # a size with its unit


# --- a generated matrix: whatever the API accepts, the operator's webhook accepts ---------------------------------
_ONE = [
    *({name: "x"} for name in sorted(_cnpg_admission.FIXED_PARAMETERS)),
    *({"wal_level": v} for v in ("minimal", "archive", "hot_standby", "replica", "logical", "bogus")),
    *({"wal_log_hints": v} for v in ("off", "on", "maybe")),
    *({"shared_buffers": v} for v in ("16384", "0x1000", "1e3", "010", "2GB", "4GB", "128MB", "1.5GB", "5min", "-1")),
    *({"min_wal_size": v} for v in ("2GB", "1e4", "0x100", "64MB")),
    *({"max_wal_size": v} for v in ("64MB", "1e3", "96MB", "64GB")),
    {"pg_failover_slots.synchronize_slot_names": "name_like:%"},
    {"max_wal_senders": "0"},
    {"hot_standby_feedback": "on"},
]
_PAIRS = [
    {"min_wal_size": "2GB", "max_wal_size": "4GB"},
    {"min_wal_size": "4GB", "max_wal_size": "2GB"},
    {"wal_level": "minimal", "max_wal_senders": "0"},
    {"pg_failover_slots.synchronize_slot_names": "name_like:%", "hot_standby_feedback": "on"},
    {"pg_failover_slots.primary_dsn": "host=elsewhere", "hot_standby_feedback": "on"},
]
HOSTILE = list(itertools.product(_ONE + _PAIRS, (1, 3), ("256Mi", "1Gi", "4Gi")))


def test_the_api_refuses_every_spec_whose_objects_the_operator_would_refuse() -> None:
    """For each hostile spec: either the API refuses it, naming one of the settings given, or every object it
    renders passes the operator's admission rules and the CRD schemas (one verdict on every provider)."""
    verdicts = {"refused": 0, "accepted": 0}
    failures: dict[str, Any] = {}
    for configs, replicas, memory in HOSTILE:
        spec = InstanceSpec(name="orders", replicas=replicas, memory=memory, postgres_configs=configs)
        key = f"{configs}/{replicas}/{memory}"
        try:
            objects = rendered(spec)
        except (ForbiddenSetting, InvalidSettingValue) as refused:
            verdicts["refused"] += 1
            if not any(repr(name) in str(refused) for name in configs):
                failures[key] = f"refused without naming the setting: {refused}"
            continue
        verdicts["accepted"] += 1
        for obj in objects:
            found = [str(r) for r in _cnpg_admission.refusals(obj)] + cnpg_schema.problems(obj, "v1.30.0")
            if found:
                failures[f"{key}/{obj['kind']}"] = found
    assert failures == {}
    assert verdicts["refused"] > 100 and verdicts["accepted"] > 50  # the matrix reaches both verdicts


def test_the_matrix_can_fail_an_unchecked_render() -> None:
    """The same matrix rendered without the API's checks (settings straight into the Cluster) is refused by the
    admission rules for most entries: the test above would see a check the API lacked."""
    refused = 0
    for configs, replicas, memory in HOSTILE:
        shape = _cnpg.ClusterShape(replicas=replicas, memory=memory)
        cluster = _cnpg.render_cluster(IID, "orders", shape, {**configs}, namespace=NS)
        cluster["spec"]["postgresql"]["parameters"] = dict(configs)  # as written, no units added
        refused += bool(_cnpg_admission.refusals(cluster))
    assert refused > len(HOSTILE) // 2
