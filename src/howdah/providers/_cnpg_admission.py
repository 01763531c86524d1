"""CloudNativePG's admission rules, as the operator applies them to the objects Howdah renders (pure: no I/O).

A ``Cluster`` or ``Pooler`` that passes the CRD schemas can still be refused by the operator's validating webhook
(``internal/webhook/v1/cluster_webhook.go`` and ``pooler_webhook.go``, with the parameter lists of
``pkg/postgres/configuration.go``, CloudNativePG 1.26 to 1.30). Each ``validate_*`` function below mirrors the
webhook function of the same name (in snake case) for the fields Howdah renders, and returns what the operator
would refuse as :class:`Refusal` records (field path, value, reason): empty means accepted.

The control plane refuses every spec that would come to this before it reaches a provider
(:mod:`howdah.control.stacks` and :mod:`howdah.control.spec`, so a spec means the same on every provider). These
rules are the second line: the Kubernetes provider checks each object with :func:`refusals` before applying it,
so a gap between the two lines is a clear permanent error naming the rule rather than an instance stuck in Error,
and the test-suite checks every rendered object of a matrix of hostile specs against them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from howdah.control.settings_check import parse_bool

# pkg/postgres/configuration.go, FixedConfigurationParameters: refused unless equal to the operator's own value.
FIXED_PARAMETERS = frozenset(
    {
        "allow_system_table_mods", "archive_cleanup_command", "archive_command", "archive_mode", "bonjour",
        "bonjour_name", "cluster_name", "config_file", "data_directory", "data_sync_retry", "event_source",
        "external_pid_file", "hba_file", "hot_standby", "ident_file", "jit_provider", "listen_addresses",
        "log_destination", "log_directory", "log_file_mode", "log_filename", "log_rotation_age",
        "log_rotation_size", "log_truncate_on_rotation", "logging_collector", "pg_failover_slots.primary_dsn",
        "pg_failover_slots.standby_slot_names", "port", "primary_conninfo", "primary_slot_name",
        "promote_trigger_file", "recovery_end_command", "recovery_min_apply_delay", "recovery_target",
        "recovery_target_action", "recovery_target_inclusive", "recovery_target_lsn", "recovery_target_name",
        "recovery_target_time", "recovery_target_timeline", "recovery_target_xid", "restart_after_crash",
        "restore_command", "shared_preload_libraries", "ssl", "ssl_ca_file", "ssl_cert_file", "ssl_crl_file",
        "ssl_dh_params_file", "ssl_ecdh_curve", "ssl_key_file", "ssl_passphrase_command",
        "ssl_passphrase_command_supports_reload", "ssl_prefer_server_ciphers", "stats_temp_directory",
        "synchronized_standby_slots", "synchronous_standby_names", "syslog_facility", "syslog_ident",
        "syslog_sequence_numbers", "syslog_split_messages", "temp_tablespaces", "unix_socket_directories",
        "unix_socket_group", "unix_socket_permissions",
    }
)  # fmt: skip
# The operator's own values of fixed parameters (its defaults and archive_mode): setting one to exactly this passes.
OPERATOR_VALUES = {
    "archive_mode": "on",
    "log_destination": "csvlog",
    "log_rotation_age": "0",
    "log_rotation_size": "0",
    "log_truncate_on_rotation": "false",
    "logging_collector": "on",
}
WAL_LEVELS = ("minimal", "replica", "logical")
MAX_CLUSTER_NAME = 50
# internal/webhook/v1/pooler_webhook.go, AllowedPgbouncerGenericConfigurationParameters.
PGBOUNCER_PARAMETERS = frozenset(
    {
        "application_name_add_host", "auth_type", "autodb_idle_timeout", "cancel_wait_timeout",
        "client_idle_timeout", "client_login_timeout", "client_tls_sslmode", "default_pool_size", "disable_pqexec",
        "dns_max_ttl", "dns_nxdomain_ttl", "idle_transaction_timeout", "ignore_startup_parameters",
        "listen_backlog", "log_connections", "log_disconnections", "log_pooler_errors", "log_stats",
        "max_client_conn", "max_db_connections", "max_packet_size", "max_prepared_statements",
        "max_user_connections", "min_pool_size", "pkt_buf", "query_timeout", "query_wait_timeout",
        "reserve_pool_size", "reserve_pool_timeout", "sbuf_loopcnt", "server_check_delay", "server_check_query",
        "server_connect_timeout", "server_fast_close", "server_idle_timeout", "server_lifetime",
        "server_login_retry", "server_reset_query", "server_reset_query_always", "server_round_robin",
        "server_tls_ciphers", "server_tls_protocols", "server_tls_sslmode", "stats_period", "suspend_timeout",
        "tcp_defer_accept", "tcp_socket_buffer", "tcp_keepalive", "tcp_keepcnt", "tcp_keepidle", "tcp_keepintvl",
        "tcp_user_timeout", "track_extra_parameters", "verbose",
    }
)  # fmt: skip

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_K8S_QUANTITY = re.compile(r"^([+-]?(\d+(\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_K8S_FACTORS: dict[str, Fraction | int] = {
    "": 1, "m": Fraction(1, 1000), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
_VERSION_TAG = re.compile(r"^\d+(\.\d+)*([-_.].*)?$")


@dataclass(frozen=True)
class Refusal:
    """One thing the operator's webhook refuses: the field, its value and the operator's reason."""

    path: str
    value: str
    reason: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.value!r}: {self.reason} (CloudNativePG {self.rule})"


def kubernetes_quantity(text: str) -> Fraction | None:
    """A Kubernetes quantity (``512Mi``, ``1.5G``, ``100m``, ``1e3``) as an exact number, or None."""
    match = _K8S_QUANTITY.match(text)
    if match is None:
        return None
    suffix = match[4] or ""
    if suffix[:1] in ("e", "E"):
        return Fraction(match[1]) * Fraction(10) ** int(suffix[1:])
    return Fraction(match[1]) * _K8S_FACTORS[suffix]


def postgres_quantity(value: str) -> Fraction | None:
    """A Postgres size as the webhook reads it (``parsePostgresQuantityValue``), in bytes, or None.

    A bare integer is MB; otherwise the unit must end in ``B`` (``kB``, ``MB``, ``GB``, ``TB``, or ``B`` alone),
    spaces are ignored, and the number is read as a Kubernetes binary quantity. That is not how Postgres reads
    every setting (``shared_buffers = 16384`` is 8 kB pages to Postgres), which is why Howdah renders every size
    with its unit.
    """
    text = value + "MB" if re.fullmatch(r"[+-]?\d+", value) else value
    if not text.endswith("B"):
        return None
    text = text.removesuffix("B").replace(" ", "")
    if not re.fullmatch(r"[+-]?\d+", text):
        text = (text + "i").replace("ki", "Ki")
    return kubernetes_quantity(text)


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _parameters(cluster: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_get(cluster, "spec", "postgresql", "parameters") or {}).items()}


def _instances(cluster: Mapping[str, Any]) -> int:
    value = _get(cluster, "spec", "instances")
    return value if isinstance(value, int) else 1


def _param_path(name: str) -> str:
    return f"spec.postgresql.parameters.{name}"


# --- Cluster: each rule of cluster_webhook.go that the fields Howdah renders can meet ---------------------------


def validate_name(cluster: Mapping[str, Any]) -> list[Refusal]:
    """``validateName``: a DNS-1035 label of at most 50 characters (Services are named after it)."""
    name = str(_get(cluster, "metadata", "name") or "")
    found = []
    if not _DNS_1035.match(name):
        found.append(
            Refusal("metadata.name", name, "not a DNS-1035 label (lowercase letters, digits, '-')", "validateName")
        )
    if len(name) > MAX_CLUSTER_NAME:
        reason = f"longer than {MAX_CLUSTER_NAME} characters"
        found.append(Refusal("metadata.name", name, reason, "validateName"))
    return found


def validate_image_name(cluster: Mapping[str, Any]) -> list[Refusal]:
    """``validateImageName``: a tag that names a Postgres version (not ``latest``, not a bare digest)."""
    image = _get(cluster, "spec", "imageName")
    if not isinstance(image, str) or not image:
        return []
    name = image.split("@", 1)[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
    if tag == "latest":
        reason = "the tag 'latest' names no Postgres version (upgrades could not be detected)"
    elif not tag:
        reason = "a digest without a tag names no Postgres version"
    elif not _VERSION_TAG.match(tag):
        reason = "the tag does not start with a Postgres version"
    else:
        return []
    return [Refusal("spec.imageName", image, reason, "validateImageName")]


def validate_primary_update_strategy(cluster: Mapping[str, Any]) -> list[Refusal]:
    """``validatePrimaryUpdateStrategy``: ``supervised`` or ``unsupervised``; supervised needs a replica."""
    strategy = _get(cluster, "spec", "primaryUpdateStrategy") or ""
    rule = "validatePrimaryUpdateStrategy"
    if strategy not in ("", "supervised", "unsupervised"):
        reason = "must be 'supervised' or 'unsupervised'"
        return [Refusal("spec.primaryUpdateStrategy", str(strategy), reason, rule)]
    if strategy == "supervised" and _instances(cluster) == 1:
        reason = "a supervised update needs a replica to switch over to"
        return [Refusal("spec.primaryUpdateStrategy", strategy, reason, rule)]
    return []


def validate_configuration(cluster: Mapping[str, Any]) -> list[Refusal]:
    """``validateConfiguration``: fixed parameters, ``wal_level``, ``shared_buffers``, ``wal_log_hints`` and
    ``validateWalSizeConfiguration`` (min_wal_size below max_wal_size, an unset one at Postgres's default)."""
    parameters = _parameters(cluster)
    rule = "validateConfiguration"
    found = [
        Refusal(_param_path(key), value, "the operator fixes this parameter", rule)
        for key, value in sorted(parameters.items())
        if key in FIXED_PARAMETERS and OPERATOR_VALUES.get(key) != value
    ]
    level = parameters.get("wal_level", "logical")  # the operator's default
    archiving = parameters.get("archive_mode", "on") != "off"
    if level not in WAL_LEVELS:
        reason = "not a wal_level the operator knows (minimal, replica, logical)"
        found.append(Refusal(_param_path("wal_level"), level, reason, rule))
    elif level == "minimal" and (_instances(cluster) > 1 or archiving):
        reason = "replicas and WAL archiving need wal_level replica or logical"
        found.append(Refusal(_param_path("wal_level"), level, reason, rule))
    if level == "minimal" and parameters.get("max_wal_senders") != "0":
        reason = "wal_level minimal needs max_wal_senders = 0"
        found.append(Refusal(_param_path("max_wal_senders"), level, reason, rule))
    buffers = parameters.get("shared_buffers", "")
    if buffers and postgres_quantity(buffers) is None:
        reason = "not a size the operator can read (a number of MB, or a number with kB, MB, GB or TB)"
        found.append(Refusal(_param_path("shared_buffers"), buffers, reason, rule))
    if "wal_log_hints" in parameters:
        hints = parse_bool(parameters["wal_log_hints"])
        if hints is None:
            reason = "not a boolean"
            found.append(Refusal(_param_path("wal_log_hints"), parameters["wal_log_hints"], reason, rule))
        elif not hints and _instances(cluster) > 1:
            reason = "must be on when the cluster has more than one instance"
            found.append(Refusal(_param_path("wal_log_hints"), parameters["wal_log_hints"], reason, rule))
    return found + _wal_sizes(parameters)


def _wal_sizes(parameters: Mapping[str, str]) -> list[Refusal]:
    """``validateWalSizeConfiguration`` (Howdah renders no separate WAL volume, so only min below max)."""
    low_text, high_text = parameters.get("min_wal_size") or "80MB", parameters.get("max_wal_size") or "1GB"
    low, high = postgres_quantity(low_text), postgres_quantity(high_text)
    rule = "validateWalSizeConfiguration"
    found = [
        Refusal(_param_path(name), text, "not a size the operator can read", rule)
        for name, text, size in (("min_wal_size", low_text, low), ("max_wal_size", high_text, high))
        if size is None
    ]
    if low and high and low >= high:
        reason = f"must be below max_wal_size ({high_text}; an unset one counts as 80MB and 1GB)"
        found.append(Refusal(_param_path("min_wal_size"), low_text, reason, rule))
    return found


def validate_resources(cluster: Mapping[str, Any]) -> list[Refusal]:
    """``validateResources``: requests within limits, and a memory request that holds ``shared_buffers``."""
    requests = _get(cluster, "spec", "resources", "requests") or {}
    limits = _get(cluster, "spec", "resources", "limits") or {}
    rule = "validateResources"
    found = []
    for what in ("cpu", "memory"):
        asked, cap = kubernetes_quantity(str(requests.get(what, ""))), kubernetes_quantity(str(limits.get(what, "")))
        if asked and cap and asked > cap:
            reason = f"the {what} request exceeds its limit"
            found.append(Refusal(f"spec.resources.requests.{what}", str(requests[what]), reason, rule))
    memory = kubernetes_quantity(str(requests.get("memory", "")))
    buffers = postgres_quantity(_parameters(cluster).get("shared_buffers", "") or "x")
    if memory and buffers is not None and memory < buffers:
        reason = "the memory request is smaller than shared_buffers"
        found.append(Refusal("spec.resources.requests.memory", str(requests["memory"]), reason, rule))
    return found


def validate_pg_failover_slots(cluster: Mapping[str, Any]) -> list[Refusal]:
    """``validatePgFailoverSlots``: a ``pg_failover_slots.*`` parameter needs ``hot_standby_feedback`` on (and the
    high-availability replication slots the operator enables by default, which Howdah leaves on)."""
    parameters = _parameters(cluster)
    if not any(key.startswith("pg_failover_slots.") for key in parameters):
        return []
    feedback = parameters.get("hot_standby_feedback", "")
    if parse_bool(feedback):
        return []
    reason = "pg_failover_slots needs hot_standby_feedback on"
    return [Refusal(_param_path("hot_standby_feedback"), feedback, reason, "validatePgFailoverSlots")]


def validate_hibernation_annotation(cluster: Mapping[str, Any]) -> list[Refusal]:
    """``validateHibernationAnnotation``: ``cnpg.io/hibernation`` is ``on`` or ``off`` when present."""
    annotations = _get(cluster, "metadata", "annotations") or {}
    value = annotations.get("cnpg.io/hibernation")
    if value is None or value in ("on", "off"):
        return []
    path = "metadata.annotations.cnpg.io/hibernation"
    reason = "must be 'on' or 'off'"
    return [Refusal(path, str(value), reason, "validateHibernationAnnotation")]


def validate_storage_change(cluster: Mapping[str, Any], old: Mapping[str, Any]) -> list[Refusal]:
    """``validateStorageChange``: a volume never shrinks."""
    new_size, old_size = _get(cluster, "spec", "storage", "size"), _get(old, "spec", "storage", "size")
    new_bytes, old_bytes = kubernetes_quantity(str(new_size or "")), kubernetes_quantity(str(old_size or ""))
    if new_bytes is None or old_bytes is None or new_bytes >= old_bytes:
        return []
    reason = f"storage can only grow (it is {old_size})"
    return [Refusal("spec.storage", str(new_size), reason, "validateStorageChange")]


def validate_wal_level_change(cluster: Mapping[str, Any], old: Mapping[str, Any]) -> list[Refusal]:
    """``validateWALLevelChange``: an existing cluster never changes to ``wal_level = minimal``."""
    new_level, old_level = _parameters(cluster).get("wal_level"), _parameters(old).get("wal_level")
    if new_level != "minimal" or not old_level or old_level == new_level:
        return []
    reason = f"an existing cluster cannot go to minimal (it has {old_level})"
    return [Refusal(_param_path("wal_level"), "minimal", reason, "validateWALLevelChange")]


CLUSTER_RULES: tuple[Callable[[Mapping[str, Any]], list[Refusal]], ...] = (
    validate_image_name,
    validate_primary_update_strategy,
    validate_name,
    validate_configuration,
    validate_pg_failover_slots,
    validate_resources,
    validate_hibernation_annotation,
)
CLUSTER_CHANGE_RULES: tuple[Callable[[Mapping[str, Any], Mapping[str, Any]], list[Refusal]], ...] = (
    validate_storage_change,
    validate_wal_level_change,
)


# --- Pooler: pooler_webhook.go ------------------------------------------------------------------------------------


_PARAMETERS_RULE = "validatePgbouncerGenericParameters"


def validate_pooler(pooler: Mapping[str, Any]) -> list[Refusal]:
    """``validatePgBouncer``, ``validatePgbouncerGenericParameters`` and ``validateCluster`` of the Pooler webhook:
    a ``pgbouncer`` section, only the parameters the operator allows, and a cluster that is named and is not the
    Pooler itself."""
    bouncer = _get(pooler, "spec", "pgbouncer")
    if not isinstance(bouncer, Mapping):
        return [Refusal("spec.pgbouncer", "", "a Pooler needs its pgbouncer section", "validatePgBouncer")]
    found = [
        Refusal(
            "spec.pgbouncer.parameters",
            key,
            "a parameter the operator does not let users set",
            "validatePgbouncerGenericParameters",
        )
        for key in sorted(bouncer.get("parameters") or {})
        if key not in PGBOUNCER_PARAMETERS
    ]
    cluster = str(_get(pooler, "spec", "cluster", "name") or "")
    if not cluster:
        found.append(Refusal("spec.cluster.name", "", "a Pooler names its Cluster", "validateCluster"))
    elif cluster == _get(pooler, "metadata", "name"):
        reason = "a Pooler cannot share its Cluster's name"
        found.append(Refusal("metadata.name", cluster, reason, "validateCluster"))
    return found


def refusals(obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[Refusal]:
    """What the operator's webhook refuses in ``obj`` (a Cluster or Pooler; other kinds have no rules here),
    given the live object ``old`` it replaces (None: a new object)."""
    kind = obj.get("kind")
    if kind == "Pooler":
        return validate_pooler(obj)
    if kind != "Cluster":
        return []
    found = [refusal for rule in CLUSTER_RULES for refusal in rule(obj)]
    if old is not None:
        found += [refusal for change_rule in CLUSTER_CHANGE_RULES for refusal in change_rule(obj, old)]
    return found


__all__ = [
    "FIXED_PARAMETERS",
    "PGBOUNCER_PARAMETERS",
    "Refusal",
    "kubernetes_quantity",
    "postgres_quantity",
    "refusals",
    "validate_configuration",
    "validate_hibernation_annotation",
    "validate_image_name",
    "validate_name",
    "validate_pg_failover_slots",
    "validate_pooler",
    "validate_primary_update_strategy",
    "validate_resources",
    "validate_storage_change",
    "validate_wal_level_change",
]
