"""CloudNativePG manifests for one instance, and what its ``Cluster`` status says (pure: no I/O).

One Howdah instance is a ``postgresql.cnpg.io/v1`` ``Cluster`` (plus a basic-auth ``Secret`` holding the app
role's password and, when the connection pooler is on, a ``Pooler``). Every object carries the labels
``howdah.dev/instance-id`` (how the provider finds it again) and ``app.kubernetes.io/managed-by: howdah``.

The objects are applied with server-side apply by a single field manager, so each render is the *whole*
desired object: a field left out is a field removed. :func:`parse_cluster` reads a rendered object back into
the arguments that rendered it, so that lifecycle changes (hibernate, wake, restart) re-render the same
object with only the annotations changed.

Rendering takes anything shaped like an instance spec (:class:`SpecLike`): the
:class:`~howdah.control.spec.InstanceSpec` itself, or the :class:`ClusterShape` read back from a live ``Cluster``
(which knows sizes and the pooler, not the stack or the user's configs: those are already in the settings).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from howdah.control._setting_facts import UNITS
from howdah.control.extensions import ExtensionCatalog, declared_catalog
from howdah.control.settings_check import parse_integer
from howdah.control.stacks import split_libraries
from howdah.providers._cnpg_backup import Recovery, recovery_of
from howdah.providers.base import InstanceStatus

GROUP = "postgresql.cnpg.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
CLUSTERS = "clusters"
POOLERS = "poolers"
DATABASES = "databases"

LABEL_INSTANCE = "howdah.dev/instance-id"
LABEL_NAME = "howdah.dev/instance-name"
LABEL_ORG = "howdah.dev/org"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "howdah"
HIBERNATION = "cnpg.io/hibernation"
# The parameters Howdah set, by name: the operator's defaulting webhook adds parameters of its own to the live
# Cluster (archive_timeout, wal_keep_size, …), which reading the object back must not take for Howdah's.
PARAMETERS = "howdah.dev/parameters"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

APP_USER = "app"
APP_DATABASE = "app"
SUPERUSER = "postgres"
# Extensions live in a schema the superuser owns and tenants can only use: objects a tenant plants in a schema
# it can write to would otherwise run with the rights of the extension scripts (CVE-2018-1058 class).
EXTENSION_SCHEMA = "extensions"
EXTENSION_SCHEMA_SQL = (
    f"CREATE SCHEMA IF NOT EXISTS {EXTENSION_SCHEMA} AUTHORIZATION {SUPERUSER}",
    f"GRANT USAGE ON SCHEMA {EXTENSION_SCHEMA} TO PUBLIC",
    f"ALTER DATABASE {APP_DATABASE} SET search_path = '\"$user\"', public, {EXTENSION_SCHEMA}",
)
POSTGRES_PORT = 5432
DEFAULT_IMAGE = "ghcr.io/cloudnative-pg/postgresql:{pg_version}"

# What CloudNativePG's standard image offers (its default image, ``DEFAULT_IMAGE``): the minimal image's Postgres
# with its contrib modules, plus pgaudit and pgvector (and the pg_failover_slots library, which has no SQL objects).
CONTRIB_EXTENSIONS = (
    "amcheck", "autoinc", "bloom", "btree_gin", "btree_gist", "citext", "cube", "dblink", "dict_int", "dict_xsyn",
    "earthdistance", "file_fdw", "fuzzystrmatch", "hstore", "insert_username", "intagg", "intarray", "isn", "lo",
    "ltree", "moddatetime", "pageinspect", "pg_buffercache", "pg_freespacemap", "pg_logicalinspect", "pg_prewarm",
    "pg_stat_statements", "pg_surgery", "pg_trgm", "pg_visibility", "pg_walinspect", "pgcrypto", "pgrowlocks",
    "pgstattuple", "plpgsql", "postgres_fdw", "refint", "seg", "sslinfo", "tablefunc", "tcn", "tsm_system_rows",
    "tsm_system_time", "unaccent", "uuid-ossp", "xml2",
)  # fmt: skip
STANDARD_IMAGE_EXTENSIONS = (*CONTRIB_EXTENSIONS, "pgaudit", "vector")
# The operator puts these extensions' libraries into shared_preload_libraries itself as soon as a setting of
# theirs (``pg_stat_statements.*``, ``pgaudit.*``) is set, and takes them out when none is (it does the same for
# the auto_explain and pg_failover_slots libraries, which are no extensions). Libraries Howdah lists are kept.
OPERATOR_PRELOADED = ("pg_stat_statements", "pgaudit")
PRELOAD = "shared_preload_libraries"

# CloudNativePG phases (api/v1/cluster_types.go); only the healthy one is final.
PHASE_HEALTHY = "Cluster in healthy state"
MAX_CLUSTER_NAME = 50  # the CloudNativePG webhook refuses longer Cluster names
_SUFFIX_LENGTH = 8
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class PoolerLike(Protocol):
    """The connection-pooler part of an instance spec."""

    @property
    def enabled(self) -> bool: ...
    @property
    def pool_mode(self) -> str: ...
    @property
    def max_client_connections(self) -> int: ...
    @property
    def default_pool_size(self) -> int: ...


class SpecLike(Protocol):
    """What rendering needs of an instance spec (``InstanceSpec`` has all of it)."""

    @property
    def pg_version(self) -> int: ...
    @property
    def cpu(self) -> str: ...
    @property
    def memory(self) -> str: ...
    @property
    def storage(self) -> str: ...
    @property
    def replicas(self) -> int: ...
    @property
    def connection_pooler(self) -> PoolerLike: ...
    @property
    def ip_allow_list(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class PoolerShape:
    enabled: bool = False
    pool_mode: str = "transaction"
    max_client_connections: int = 1000
    default_pool_size: int = 20


@dataclass(frozen=True)
class ClusterShape:
    """A :class:`SpecLike` read back from a live ``Cluster`` (and ``Pooler``), or the defaults of a new one."""

    pg_version: int = 18
    cpu: str = "1"
    memory: str = "1Gi"
    storage: str = "10Gi"
    replicas: int = 1
    connection_pooler: PoolerShape = field(default_factory=PoolerShape)
    ip_allow_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterState:
    """Everything :func:`render_cluster` / :func:`render_pooler` were called with, read back from live objects."""

    instance_id: str
    name: str
    shape: ClusterShape
    settings: dict[str, str]
    image: str | None
    org: str | None
    hibernated: bool
    restarted_at: str | None
    #: ``spec.plugins`` (the WAL archiver's entry when backups are on) and the restore it was bootstrapped from
    plugins: tuple[dict[str, Any], ...] = ()
    recovery: Recovery | None = None


# --- names and labels -----------------------------------------------------------------------------------------


def cluster_name(instance_id: str, name: str) -> str:
    """The ``Cluster``'s name: the instance name (made a DNS-1035 label) and 8 hex digits of the instance id.

    The suffix keeps two orgs' instances of the same name apart in one namespace; the whole stays within the
    50 characters CloudNativePG allows.
    """
    stem = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not stem or not stem[0].isalpha():
        stem = f"pg-{stem}".rstrip("-")
    stem = stem[: MAX_CLUSTER_NAME - _SUFFIX_LENGTH - 1].rstrip("-")
    suffix = hashlib.sha256(instance_id.encode()).hexdigest()[:_SUFFIX_LENGTH]
    return f"{stem}-{suffix}"


def secret_name(cluster: str) -> str:
    return f"{cluster}-credentials"


def pooler_name(cluster: str) -> str:
    return f"{cluster}-pooler"


def database_name(cluster: str) -> str:
    return f"{cluster}-{APP_DATABASE}"


def rw_host(cluster: str, namespace: str) -> str:
    """The read-write Service CloudNativePG creates for ``cluster`` (always points at the primary)."""
    return f"{cluster}-rw.{namespace}.svc"


def label_value(text: str) -> str:
    """``text`` as a valid label value (at most 63 characters of ``[-A-Za-z0-9_.]``, alphanumeric at both ends)."""
    if _LABEL_VALUE.match(text):
        return text
    cleaned = re.sub(r"[^-A-Za-z0-9_.]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def instance_selector(instance_id: str) -> str:
    """The label selector that finds every object of one instance."""
    return f"{LABEL_INSTANCE}={label_value(instance_id)}"


MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def labels(instance_id: str, name: str, org: str | None = None) -> dict[str, str]:
    result = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_INSTANCE: label_value(instance_id),
        LABEL_NAME: label_value(name),
    }
    if org:
        result[LABEL_ORG] = label_value(org)
    return dict(sorted(result.items()))


def _metadata(name: str, namespace: str, instance_id: str, instance_name: str, org: str | None) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(instance_id, instance_name, org)}


# --- rendering ------------------------------------------------------------------------------------------------


def preload_libraries(value: str) -> list[str]:
    """The names in a rendered ``shared_preload_libraries`` value, in order, without duplicates."""
    return list(dict.fromkeys(split_libraries(PRELOAD, value)))


# A setting of theirs makes the operator keep these extensions in every database (CREATE EXTENSION); without one
# it DROPs them from every database, the one Howdah's Database resource creates them in included. Each value is
# Postgres's default, so setting it changes nothing else.
OPERATOR_EXTENSION_SETTINGS = {
    "pg_stat_statements": ("pg_stat_statements.track", "top"),
    "pgaudit": ("pgaudit.log", "none"),
}
_BARE_NUMBER = re.compile(r"^\s*\+?(\d+(\.\d*)?|\.\d+)\s*$")
_UNIT = re.compile(r"^(\d*)(\D+)$")
# The operator reads these sizes itself (validateConfiguration, validateWalSizeConfiguration, validateResources):
# a bare number as MB, otherwise only a number with a unit ending in B. Postgres also reads hexadecimal, octal and
# exponents ('0x1000', '1e3'), so these three are rendered as a whole number of their unit whenever written
# otherwise.
OPERATOR_READ_SIZES = ("max_wal_size", "min_wal_size", "shared_buffers")
_PLAIN_SIZE = re.compile(r"^\d+(kB|MB|GB|TB)$")


# Client addresses: the operator's own rules (its replication and pooler users, local connections) come first in
# pg_hba.conf, then these, then its default that lets every address in with a password.
_HBA_ALLOW = "host all all {} scram-sha-256"
HBA_REJECT_OTHERS = "host all all all reject"


def hba_rules(ip_allow_list: Sequence[str]) -> list[str]:
    """``postgresql.pg_hba`` for an allow list: password logins from its CIDRs, every other address refused (none:
    the operator's default, any address with a password)."""
    if not ip_allow_list:
        return []
    return [*(_HBA_ALLOW.format(cidr) for cidr in ip_allow_list), HBA_REJECT_OTHERS]


def allow_list_of(rules: Sequence[str]) -> tuple[str, ...]:
    """The allow list that :func:`hba_rules` made ``rules`` from (rules it did not make are not read)."""
    prefix, suffix = _HBA_ALLOW.split("{}")
    return tuple(r[len(prefix) : -len(suffix)] for r in rules if r.startswith(prefix) and r.endswith(suffix))


def explicit_unit(value: str, unit: str | None) -> str:
    """``value`` with its unit spelled out when it is a bare positive number of a setting whose base unit is
    ``unit`` (``shared_buffers = 16384`` → ``131072kB``): Postgres reads a bare number in the base unit (8 kB pages
    for ``shared_buffers``), CloudNativePG's own checks in another (MB). Anything else is returned as it is."""
    match = _BARE_NUMBER.match(value)
    unit_match = _UNIT.match(unit or "")
    if match is None or unit_match is None or float(match[1]) == 0:
        return value
    factor, suffix = int(unit_match[1] or 1), unit_match[2]
    number = float(match[1]) * factor
    return (str(int(number)) if number.is_integer() else f"{number:g}") + suffix


def operator_size(value: str, unit: str | None) -> str:
    """``value`` of a size setting whose base unit is ``unit``, as a whole number with a unit the operator reads
    (``0x1000`` of ``shared_buffers`` → ``32768kB``, ``1e3`` of ``max_wal_size`` → ``1000MB``); a value already so
    written, or one Postgres would refuse (the API refuses it first), is returned as it is."""
    unit_match = _UNIT.match(unit or "")
    number = parse_integer(value, unit)
    if _PLAIN_SIZE.match(value) or unit_match is None or number is None or number <= 0:
        return value
    return f"{number * int(unit_match[1] or 1)}{unit_match[2]}"


def cluster_parameters(settings: Mapping[str, str], pg_version: int) -> dict[str, str]:
    """``postgresql.parameters`` of the Cluster: the rendered settings but ``shared_preload_libraries`` (a list of
    its own), sizes and durations with explicit units, and a setting for each extension the operator manages
    whose library is preloaded (:data:`OPERATOR_EXTENSION_SETTINGS`)."""
    units = UNITS.get(pg_version, {})
    parameters = {
        key: (operator_size if key in OPERATOR_READ_SIZES else explicit_unit)(str(value), units.get(key.lower()))
        for key, value in settings.items()
        if key != PRELOAD
    }
    preloaded = preload_libraries(settings.get(PRELOAD, ""))
    for library, (setting, default) in OPERATOR_EXTENSION_SETTINGS.items():
        if library in preloaded and not any(key.startswith(library + ".") for key in parameters):
            parameters[setting] = default
    return dict(sorted(parameters.items()))


def render_cluster(
    instance_id: str,
    name: str,
    spec: SpecLike,
    settings: Mapping[str, str],
    *,
    namespace: str,
    image: str | None = None,
    org: str | None = None,
    hibernated: bool = False,
    restarted_at: str | None = None,
    plugins: Sequence[Mapping[str, Any]] = (),
    recovery: Recovery | None = None,
) -> dict[str, Any]:
    """The CloudNativePG ``Cluster`` for one instance.

    ``settings`` are rendered Postgres settings (``render_settings``): all of them go to
    ``postgresql.parameters`` except ``shared_preload_libraries``, which becomes CloudNativePG's list of the
    same name. ``hibernated`` sets ``cnpg.io/hibernation`` (``on``: pods deleted, volumes kept; ``off``: running);
    ``restarted_at`` (an RFC 3339 time) sets ``kubectl.kubernetes.io/restartedAt``, which CloudNativePG answers
    with a rolling restart whenever its value changes. ``image`` defaults to CloudNativePG's image of the spec's
    Postgres major version. ``plugins`` is ``spec.plugins`` (the WAL archiver of
    :func:`~howdah.providers._cnpg_backup.archiver_plugin`); with ``recovery`` the cluster is bootstrapped from
    another's archive (``bootstrap.recovery`` and its ``externalClusters`` source) instead of ``initdb``, the app
    role getting the password of this instance's Secret.
    """
    cluster = cluster_name(instance_id, name)
    metadata = _metadata(cluster, namespace, instance_id, name, org)
    parameters = cluster_parameters(settings, spec.pg_version)
    ours = (k for k in settings if k != PRELOAD)
    annotations = {HIBERNATION: "on" if hibernated else "off", PARAMETERS: ",".join(sorted(ours))}
    if restarted_at is not None:
        annotations[RESTARTED_AT] = restarted_at
    metadata["annotations"] = annotations
    resources = {"cpu": spec.cpu, "memory": spec.memory}
    app = {"database": APP_DATABASE, "owner": APP_USER, "secret": {"name": secret_name(cluster)}}
    if recovery is None:
        # postInitApplicationSQL: run by the operator as superuser in the new app database, before the tenant
        # can log in.
        bootstrap: dict[str, Any] = {"initdb": {**app, "postInitApplicationSQL": list(EXTENSION_SCHEMA_SQL)}}
    else:  # the source's app database, extension schema included, comes with its data
        target = recovery.recovery_target()
        bootstrap = {"recovery": {"source": recovery.external_cluster()["name"], **app,
                                  **({"recoveryTarget": target} if target else {})}}  # fmt: skip
    extra: dict[str, Any] = {}
    if plugins:
        extra["plugins"] = [dict(p) for p in plugins]
    if recovery is not None:
        extra["externalClusters"] = [recovery.external_cluster()]
    return {
        "apiVersion": API_VERSION,
        "kind": "Cluster",
        "metadata": metadata,
        "spec": {
            "instances": spec.replicas,
            "imageName": image or DEFAULT_IMAGE.format(pg_version=spec.pg_version),
            "primaryUpdateStrategy": "unsupervised",
            "resources": {"requests": dict(resources), "limits": dict(resources)},
            "storage": {"size": spec.storage},
            "postgresql": {
                "parameters": parameters,
                "shared_preload_libraries": preload_libraries(settings.get(PRELOAD, "")),
                **({"pg_hba": hba_rules(spec.ip_allow_list)} if spec.ip_allow_list else {}),
            },
            "bootstrap": bootstrap,
            **extra,
        },
    }


def render_secret(
    instance_id: str,
    name: str,
    password: str,
    *,
    namespace: str,
    org: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The basic-auth ``Secret`` CloudNativePG's ``initdb`` (or ``recovery``) gives the app role's password
    from (user ``app``)."""
    cluster = cluster_name(instance_id, name)
    metadata = _metadata(secret_name(cluster), namespace, instance_id, name, org)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/basic-auth",
        "data": {"username": _b64(APP_USER), "password": _b64(password)},
    }


def render_pooler(
    instance_id: str, name: str, spec: SpecLike, *, namespace: str, org: str | None = None
) -> dict[str, Any] | None:
    """The PgBouncer ``Pooler`` in front of the primary, or None when the spec's pooler is off.

    Two PgBouncer pods when the instance has replicas (so the pooler is not its single point of failure), else one.
    """
    pooler = spec.connection_pooler
    if not pooler.enabled:
        return None
    cluster = cluster_name(instance_id, name)
    return {
        "apiVersion": API_VERSION,
        "kind": "Pooler",
        "metadata": _metadata(pooler_name(cluster), namespace, instance_id, name, org),
        "spec": {
            "cluster": {"name": cluster},
            "instances": 2 if spec.replicas > 1 else 1,
            "type": "rw",
            "pgbouncer": {
                "poolMode": pooler.pool_mode,
                "parameters": {
                    "default_pool_size": str(pooler.default_pool_size),
                    "max_client_conn": str(pooler.max_client_connections),
                },
            },
        },
    }


def standard_image_catalog(image: str | None = None) -> ExtensionCatalog:
    """The extension catalog of CloudNativePG's standard image, declared for ``image`` (default: the standard
    image of each Postgres major version)."""
    where = image or DEFAULT_IMAGE.format(pg_version="<major>")
    return declared_catalog(
        STANDARD_IMAGE_EXTENSIONS,
        operator_preload=OPERATOR_PRELOADED,
        source=f"declared for image {where}: the extensions of CloudNativePG's standard image",
    )


def render_database(
    instance_id: str,
    name: str,
    enabled: Sequence[str],
    disabled: Sequence[str],
    *,
    namespace: str,
    catalog: ExtensionCatalog,
    org: str | None = None,
) -> dict[str, Any]:
    """A ``Database`` (CloudNativePG ≥ 1.26) declaring the app database's extensions: created or dropped.

    Each goes into the schema ``extensions`` unless the data plane's ``catalog`` says its control file fixes its
    schema. It adopts the ``app`` database that ``initdb`` created; its reclaim policy (``retain``) keeps the
    database when the object is deleted.
    """
    cluster = cluster_name(instance_id, name)
    wanted = catalog.with_requirements(enabled)  # the operator creates them without CASCADE: requirements first
    unwanted = [e for e in dict.fromkeys(disabled) if e not in wanted]
    return {
        "apiVersion": API_VERSION,
        "kind": "Database",
        "metadata": _metadata(database_name(cluster), namespace, instance_id, name, org),
        "spec": {
            "name": APP_DATABASE,
            "owner": APP_USER,
            "cluster": {"name": cluster},
            "ensure": "present",
            "schemas": [{"name": EXTENSION_SCHEMA, "owner": SUPERUSER, "ensure": "present"}],
            "extensions": [_extension(e, catalog) for e in wanted]
            + [{"name": e, "ensure": "absent"} for e in unwanted],
        },
    }


def _extension(name: str, catalog: ExtensionCatalog) -> dict[str, str]:
    entry = {"name": name, "ensure": "present"}
    if not catalog.fixed_schema(name):
        entry["schema"] = EXTENSION_SCHEMA
    return entry


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_password(secret: Mapping[str, Any]) -> str | None:
    """The password in a basic-auth Secret read from the API (``data`` is base64), or None."""
    data = secret.get("data") or {}
    value = data.get("password")
    return base64.b64decode(value).decode() if isinstance(value, str) else None


# --- reading live objects back --------------------------------------------------------------------------------


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def parse_cluster(cluster: Mapping[str, Any], pooler: Mapping[str, Any] | None = None) -> ClusterState:
    """The arguments that rendered ``cluster`` (and ``pooler``, None when there is none).

    Re-rendering the result gives back the rendered fields of ``cluster``: :func:`render_cluster` and this
    function are inverse, which the unit tests check.
    """
    meta_labels: Mapping[str, str] = _get(cluster, "metadata", "labels") or {}
    annotations: Mapping[str, str] = _get(cluster, "metadata", "annotations") or {}
    spec: Mapping[str, Any] = cluster.get("spec") or {}
    requests: Mapping[str, str] = _get(spec, "resources", "requests") or {}
    postgresql: Mapping[str, Any] = spec.get("postgresql") or {}
    settings = {str(k): str(v) for k, v in (postgresql.get("parameters") or {}).items()}
    if PARAMETERS in annotations:  # only what Howdah set, not what the operator defaulted
        ours = set(filter(None, str(annotations[PARAMETERS]).split(",")))
        settings = {k: v for k, v in settings.items() if k in ours}
    for setting, value in OPERATOR_EXTENSION_SETTINGS.values():  # rendering adds them back where they belong
        if settings.get(setting) == value:
            del settings[setting]
    libraries = postgresql.get(PRELOAD) or []
    if libraries:
        settings[PRELOAD] = ",".join(libraries)
    pooler_shape = PoolerShape()
    if pooler is not None:
        bouncer: Mapping[str, Any] = _get(pooler, "spec", "pgbouncer") or {}
        parameters: Mapping[str, str] = bouncer.get("parameters") or {}
        pooler_shape = PoolerShape(
            enabled=True,
            pool_mode=str(bouncer.get("poolMode", pooler_shape.pool_mode)),
            max_client_connections=int(parameters.get("max_client_conn", pooler_shape.max_client_connections)),
            default_pool_size=int(parameters.get("default_pool_size", pooler_shape.default_pool_size)),
        )
    image = spec.get("imageName")
    default = ClusterShape()
    shape = ClusterShape(
        pg_version=_image_major(image) or default.pg_version,
        cpu=str(requests.get("cpu", default.cpu)),
        memory=str(requests.get("memory", default.memory)),
        storage=str(_get(spec, "storage", "size") or default.storage),
        replicas=int(spec.get("instances", default.replicas)),
        connection_pooler=pooler_shape,
        ip_allow_list=allow_list_of([str(rule) for rule in postgresql.get("pg_hba") or []]),
    )
    return ClusterState(
        instance_id=meta_labels.get(LABEL_INSTANCE, ""),
        name=meta_labels.get(LABEL_NAME, ""),
        shape=shape,
        settings=dict(sorted(settings.items())),
        image=image if isinstance(image, str) else None,
        org=meta_labels.get(LABEL_ORG),
        hibernated=is_hibernated(cluster),
        restarted_at=annotations.get(RESTARTED_AT),
        plugins=tuple(dict(p) for p in spec.get("plugins") or [] if isinstance(p, Mapping)),
        recovery=recovery_of(spec.get("bootstrap") or {}, spec.get("externalClusters") or []),
    )


def _image_major(image: object) -> int | None:
    match = re.search(r":(\d+)(\.|-|$)", image) if isinstance(image, str) else None
    return int(match[1]) if match else None


def is_hibernated(cluster: Mapping[str, Any]) -> bool:
    annotations: Mapping[str, str] = _get(cluster, "metadata", "annotations") or {}
    return annotations.get(HIBERNATION) == "on"


def instance_status(cluster: Mapping[str, Any] | None) -> InstanceStatus:
    """What a ``Cluster`` (None: there is none) says about its instance.

    ``running``: not hibernated and at least one ready Postgres pod. ``accepting_connections``: running, the
    operator reports a current primary, and that primary is among the healthy pods (or, when the operator
    does not list pods by state, the cluster is in its healthy phase). ``replicas`` lists every pod with its
    role and health. CloudNativePG does not publish the postmaster start time, data size or pending restarts
    in the ``Cluster``'s status (it restarts pods itself when a setting needs it), so those stay unset.
    """
    if cluster is None:
        return InstanceStatus(exists=False, running=False)
    status: Mapping[str, Any] = cluster.get("status") or {}
    hibernated = is_hibernated(cluster) or _condition_true(status, HIBERNATION)
    ready = int(status.get("readyInstances") or 0)
    primary = status.get("currentPrimary") or None
    by_state: Mapping[str, list[str]] = status.get("instancesStatus") or {}
    healthy = set(by_state.get("healthy") or [])
    running = not hibernated and ready > 0
    # Without per-pod states (older operators), the healthy phase says the primary is up.
    primary_ok = primary in healthy if by_state else status.get("phase") == PHASE_HEALTHY
    accepting = running and primary is not None and primary_ok
    names = list(status.get("instanceNames") or sorted({n for pods in by_state.values() for n in pods}))
    replicas = [
        {
            "name": pod,
            "role": "primary" if pod == primary else "replica",
            "ready": pod in healthy,
            "state": next((state for state, pods in sorted(by_state.items()) if pod in pods), "unknown"),
        }
        for pod in names
    ]
    major = _get(status, "pgDataImageInfo", "majorVersion")
    version = str(major) if major is not None else None
    if version is None:
        image_major = _image_major(_get(cluster, "spec", "imageName"))
        version = str(image_major) if image_major is not None else None
    return InstanceStatus(
        exists=True,
        running=running,
        accepting_connections=accepting,
        server_version=version,
        port=POSTGRES_PORT,
        replicas=replicas,
    )


def phase(cluster: Mapping[str, Any] | None) -> str | None:
    """The operator's phase text (``Cluster in healthy state``, ``Setting up primary``, …), None before any."""
    value = _get(cluster or {}, "status", "phase")
    return value if isinstance(value, str) else None


def _condition_true(status: Mapping[str, Any], kind: str) -> bool:
    conditions = status.get("conditions") or []
    return any(isinstance(c, Mapping) and c.get("type") == kind and c.get("status") == "True" for c in conditions)


__all__ = [
    "API_VERSION",
    "CLUSTERS",
    "DATABASES",
    "GROUP",
    "HIBERNATION",
    "LABEL_INSTANCE",
    "MANAGED_SELECTOR",
    "PARAMETERS",
    "PHASE_HEALTHY",
    "POOLERS",
    "POSTGRES_PORT",
    "RESTARTED_AT",
    "VERSION",
    "ClusterShape",
    "ClusterState",
    "PoolerLike",
    "PoolerShape",
    "SpecLike",
    "cluster_name",
    "instance_selector",
    "instance_status",
    "is_hibernated",
    "label_value",
    "labels",
    "parse_cluster",
    "phase",
    "pooler_name",
    "preload_libraries",
    "render_cluster",
    "render_database",
    "render_pooler",
    "render_secret",
    "rw_host",
    "secret_name",
    "secret_password",
    "standard_image_catalog",
]
