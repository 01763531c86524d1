"""Backups of CloudNativePG clusters through the Barman Cloud Plugin (pure): golden files, CRD schemas, the cron
conversion, restores' recovery targets, and the recovery window read back from status.

The golden files under ``golden/cnpg_backup/`` are compared exactly; regenerate them with
``HOWDAH_UPDATE_GOLDEN=1 pytest tests/unit/test_cnpg_backup.py`` after an intended change and review the diff.
The plugin's ``ObjectStore`` CRD is not among the CRDs at hand: its shape is checked here by
:func:`object_store_problems`, written from the plugin's API types (the required fields, the retention pattern,
the forbidden ``serverName``, credentials by Secret reference only).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from pydantic import ValidationError

from howdah.control.recovery import Window
from howdah.control.spec import BackupPolicy, InstanceSpec
from howdah.providers import _cnpg
from howdah.providers import _cnpg_backup as bk
from howdah.providers._cnpg_backup import ObjectStoreConfig, Recovery
from tests import cnpg_schema
from tests.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "cnpg_backup"
IID = "6f1c2a9e-8d4b-4c1e-9a7f-2b3c4d5e6f70"
NEW = "0c4d2e1f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
NS = "tenants"
SPEC = InstanceSpec(name="orders")
SETTINGS = {"max_connections": "100", "shared_preload_libraries": "pg_stat_statements"}
STORE = ObjectStoreConfig(
    destination="s3://backups/howdah", secret="howdah-object-store", endpoint_url="https://minio.storage:9000"
)
CLUSTER = _cnpg.cluster_name(IID, "orders")
LABELS = _cnpg.labels(IID, "orders", "acme")
T = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)


def backup_objects() -> list[dict[str, Any]]:
    return [
        bk.render_object_store(CLUSTER, STORE, 14, namespace=NS, labels=LABELS),
        _cnpg.render_cluster(
            IID, "orders", SPEC, SETTINGS, namespace=NS, org="acme", plugins=[bk.archiver_plugin(CLUSTER)]
        ),
        bk.render_scheduled_backup(CLUSTER, "30 2 * * 1-5", namespace=NS, labels=LABELS),
        bk.render_backup(CLUSTER, "4e0d9f6a-0b1c-4d2e-8f3a-5b6c7d8e9f01", namespace=NS, labels=LABELS),
    ]


def restore_cluster(recovery: Recovery) -> dict[str, Any]:
    return _cnpg.render_cluster(NEW, "orders-copy", SPEC, SETTINGS, namespace=NS, org="acme", recovery=recovery)


def test_golden_backups() -> None:
    check_golden(GOLDEN, "backups_on", backup_objects())


def test_golden_restore_to_a_time() -> None:
    check_golden(GOLDEN, "restore_to_time", [restore_cluster(Recovery(CLUSTER, bk.store_name(CLUSTER), target_time=T))])


# --- CRD schemas ---------------------------------------------------------------------------------------------

RECOVERIES = [
    Recovery(CLUSTER, bk.store_name(CLUSTER), target_time=T),
    Recovery(CLUSTER, bk.store_name(CLUSTER), target_lsn="0/3000060"),
    Recovery(CLUSTER, bk.store_name(CLUSTER), backup_id="20260301T120000"),
    Recovery(CLUSTER, bk.store_name(CLUSTER)),
]


@pytest.mark.skipif(not cnpg_schema.available(), reason=cnpg_schema.MISSING)
@pytest.mark.parametrize("version", cnpg_schema.VERSIONS)
def test_every_rendered_cnpg_object_passes_the_crd_schemas(version: str) -> None:
    objects = [o for o in backup_objects() if o["kind"] != "ObjectStore"] + [restore_cluster(r) for r in RECOVERIES]
    assert {o["kind"] for o in objects} == {"Cluster", "ScheduledBackup", "Backup"}
    for obj in objects:
        assert cnpg_schema.problems(obj, version) == [], obj["kind"]


@pytest.mark.skipif(not cnpg_schema.available(), reason=cnpg_schema.MISSING)
def test_the_schema_check_can_fail_on_these_kinds() -> None:
    scheduled = bk.render_scheduled_backup(CLUSTER, "0 3 * * *", namespace=NS, labels=LABELS)
    scheduled["spec"]["method"] = "barmanCloud"
    cluster = restore_cluster(RECOVERIES[0])
    cluster["spec"]["bootstrap"]["recovery"]["recoveryTarget"]["targetTimestamp"] = "x"
    assert cnpg_schema.problems(scheduled, cnpg_schema.VERSIONS[-1])
    assert cnpg_schema.problems(cluster, cnpg_schema.VERSIONS[-1])


def object_store_problems(obj: dict[str, Any]) -> list[str]:
    """The plugin's ObjectStore (barmancloud.cnpg.io/v1) as its API types define it, as far as Howdah writes it."""
    found = []
    if obj.get("apiVersion") != "barmancloud.cnpg.io/v1" or obj.get("kind") != "ObjectStore":
        found.append("apiVersion/kind")
    spec = obj.get("spec") or {}
    if set(spec) - {"configuration", "retentionPolicy", "instanceSidecarConfiguration"}:
        found.append("spec: unknown field")
    config = spec.get("configuration") or {}
    known = {"destinationPath", "endpointURL", "s3Credentials", "wal", "data", "endpointCA", "tags", "historyTags"}
    if "destinationPath" not in config or set(config) - known:
        found.append("spec.configuration")
    if "serverName" in config:
        found.append("spec.configuration.serverName is forbidden (a plugin parameter of the Cluster)")
    if not re.match(r"^[1-9][0-9]*[dwm]$", str(spec.get("retentionPolicy", "1d"))):
        found.append("spec.retentionPolicy")
    credentials = config.get("s3Credentials") or {}
    for key in ("accessKeyId", "secretAccessKey"):
        if set(credentials.get(key) or {}) != {"name", "key"}:
            found.append(f"spec.configuration.s3Credentials.{key}: a Secret reference")
    for part in ("wal", "data"):
        if (config.get(part) or {}).get("compression") not in (None, "gzip", "bzip2", "snappy", "lz4", "xz", "zstd"):
            found.append(f"spec.configuration.{part}.compression")
    return found


def test_the_object_store_has_the_plugins_shape() -> None:
    store = backup_objects()[0]
    assert object_store_problems(store) == []
    assert store["spec"]["configuration"]["destinationPath"] == f"s3://backups/howdah/{CLUSTER}"
    assert store["spec"]["retentionPolicy"] == "14d"
    assert object_store_problems({**store, "spec": {**store["spec"], "retentionPolicy": "0d"}})


# --- the cluster's parts -------------------------------------------------------------------------------------


def test_the_archiver_plugin_is_there_only_when_asked_and_read_back() -> None:
    plain = _cnpg.render_cluster(IID, "orders", SPEC, SETTINGS, namespace=NS)
    assert "plugins" not in plain["spec"] and "externalClusters" not in plain["spec"]
    on = backup_objects()[1]
    assert on["spec"]["plugins"] == [
        {"name": bk.PLUGIN, "enabled": True, "isWALArchiver": True,
         "parameters": {"barmanObjectName": f"{CLUSTER}-store"}},
    ]  # fmt: skip
    state = _cnpg.parse_cluster(on)
    assert state.plugins == tuple(on["spec"]["plugins"]) and state.recovery is None


@pytest.mark.parametrize("recovery", RECOVERIES)
def test_a_restore_cluster_reads_the_source_store_and_is_read_back(recovery: Recovery) -> None:
    cluster = restore_cluster(recovery)
    bootstrap = cluster["spec"]["bootstrap"]
    assert "initdb" not in bootstrap
    assert bootstrap["recovery"]["source"] == "origin"
    assert bootstrap["recovery"]["secret"] == {"name": _cnpg.secret_name(_cnpg.cluster_name(NEW, "orders-copy"))}
    assert cluster["spec"]["externalClusters"] == [
        {"name": "origin", "plugin": {"name": bk.PLUGIN,
                                      "parameters": {"barmanObjectName": f"{CLUSTER}-store", "serverName": CLUSTER}}},
    ]  # fmt: skip
    assert _cnpg.parse_cluster(cluster).recovery == recovery
    assert Recovery.from_json(recovery.to_json()) == recovery


def test_recovery_targets() -> None:
    targets = [restore_cluster(r)["spec"]["bootstrap"]["recovery"].get("recoveryTarget") for r in RECOVERIES]
    assert targets == [
        {"targetTime": "2026-03-01T12:30:15.250000Z"},
        {"targetLSN": "0/3000060"},
        {"backupID": "20260301T120000", "targetImmediate": True},
        None,
    ]
    other_zone = T.astimezone(ZoneInfo("Asia/Kolkata"))
    assert Recovery(CLUSTER, "s", target_time=other_zone).recovery_target() == {
        "targetTime": "2026-03-01T12:30:15.250000Z"
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"target_lsn": "0/3000060'\n  targetTime: x"},
        {"target_lsn": "zz"},
        {"backup_id": "../../other/base/x"},
        {"target_time": datetime(2026, 3, 1)},  # no zone: ambiguous
        {"target_time": T, "target_lsn": "0/1"},
    ],
)
def test_hostile_or_ambiguous_targets_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Recovery(CLUSTER, bk.store_name(CLUSTER), **fields)
    with pytest.raises(ValueError):
        Recovery("Other Tenant/x", "s")


# --- cron, names, locations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("five", "six"),
    [
        ("0 3 * * *", "0 0 3 * * *"),
        ("*/15 * * * *", "0 */15 * * * *"),
        ("30 2 * * 1-5", "0 30 2 * * 1-5"),
        ("0 4 1 jan,jul sun", "0 0 4 1 jan,jul sun"),
        ("0 4 * * 7", "0 0 4 * * 0"),
        ("0 4 * * 5,7", "0 0 4 * * 5,0"),
    ],
)
def test_six_field_cron(five: str, six: str) -> None:
    assert bk.six_field_cron(five) == six
    # The same instants: the seconds field is 0 and the other five are cron's.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert croniter(five, start).get_next(datetime) == croniter(six, start, second_at_beginning=True).get_next(datetime)


BAD_SCHEDULES = [
    "0 3 * *", "0 0 3 * * *", "0 3 * * * ; rm", "0 3 * * {a}", "0 3 * * *\nx: y",
    "0 3 L * *", "0 3 1W * *", "0 3 * * 1#2", "0 3 ? * *", "0 3 * * 5-7", "0 3 * * xyz",
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_SCHEDULES)
def test_six_field_cron_refuses_what_the_api_refuses(bad: str) -> None:
    # One verdict: what the operator's parser cannot read (L, W, #, ?, Sunday as 7 in a range), the API refuses.
    with pytest.raises(ValueError):
        bk.six_field_cron(bad)
    with pytest.raises(ValidationError):
        BackupPolicy(schedule=bad)


def test_backup_names_and_locations() -> None:
    assert bk.backup_name(CLUSTER, "4e0d9f6a-0b1c-4d2e-8f3a-5b6c7d8e9f01").startswith(CLUSTER + "-")
    for bad in ("../x", "A", "x" * 300, "a b"):
        with pytest.raises(ValueError):
            bk.backup_name(CLUSTER, bad)
    location = bk.backup_location(STORE, CLUSTER, "20260301T120000")
    assert location == f"s3://backups/howdah/{CLUSTER}/{CLUSTER}/base/20260301T120000"
    assert bk.parse_location(STORE, location) == (CLUSTER, "20260301T120000")
    for bad in (
        f"s3://elsewhere/{CLUSTER}/{CLUSTER}/base/20260301T120000",
        f"s3://backups/howdah/{CLUSTER}/other-1/base/20260301T120000",
        f"s3://backups/howdah/{CLUSTER}/{CLUSTER}/base/../x",
    ):
        with pytest.raises(ValueError):
            bk.parse_location(STORE, bad)


@pytest.mark.parametrize(
    "fields",
    [
        {"destination": "/local/path", "secret": "s"},
        {"destination": "gs://b/howdah", "secret": "s"},  # S3 credentials only, so far
        {"destination": "s3://b", "secret": "Not A Name"},
        {"destination": "s3://b", "secret": "s", "endpoint_url": "minio:9000"},
        {"destination": "s3://b", "secret": "s", "access_key_id_key": "a b"},
    ],
)
def test_object_store_configuration_is_checked(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ObjectStoreConfig(**fields)


# --- status --------------------------------------------------------------------------------------------------


def store_with_window(first: datetime, last: datetime) -> dict[str, Any]:
    window = {"firstRecoverabilityPoint": first.isoformat(), "lastSuccessfulBackupTime": last.isoformat()}
    return {"status": {"serverRecoveryWindow": {CLUSTER: window, "other-1": {}}}}


def completed(name: str, end_lsn: str, stopped: datetime, cluster: str = CLUSTER) -> bk.BackupState:
    obj = {"metadata": {"name": name}, "spec": {"cluster": {"name": cluster}},
           "status": {"phase": "completed", "backupId": "20260301T120000", "beginLSN": "0/1000028",
                      "endLSN": end_lsn, "stoppedAt": stopped.isoformat()}}  # fmt: skip
    return bk.backup_state(obj)


def archiving(healthy: bool) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": "ContinuousArchiving", "status": "True" if healthy else "False"}]}}


def test_the_window_from_the_store_and_the_backups() -> None:
    first, last, now = T, T + timedelta(days=1), T + timedelta(days=2)
    backups = [completed("b2", "0/9000100", last), completed("b1", "0/2000100", first),
               completed("x", "5/0", now, cluster="other-1")]  # fmt: skip
    stopped = bk.archive_status(CLUSTER, store_with_window(first, last), backups, archiving(False), now)
    assert Window.from_dict(stopped["recovery_window"]) == Window(first, last, 0x2000100, 0x9000100)
    assert stopped["last_backup_at"] == last.isoformat() and stopped["last_archive_error"]
    live = bk.archive_status(CLUSTER, store_with_window(first, last), backups, archiving(True), now)
    assert Window.from_dict(live["recovery_window"]).latest == now - bk.ARCHIVE_TIMEOUT
    assert live["archiving"] is True and live["last_archive_error"] is None


def test_no_window_without_a_completed_backup_or_a_report() -> None:
    first = T
    assert bk.archive_status(CLUSTER, store_with_window(first, first), [], None, T)["recovery_window"] is None
    backups = [completed("b1", "0/2000100", first)]
    assert bk.archive_status(CLUSTER, {}, backups, None, T)["recovery_window"] is None
    assert bk.archive_status(CLUSTER, None, backups, None, T)["archiving"] is False
