"""Units and enum values of Postgres's settings, which ``postgres --describe-config`` does not print.

Per major version and setting name (in lower case): each setting's base unit as ``pg_settings.unit`` shows it
(settings absent have none), and each enum's accepted values: ``pg_settings.enumvals`` followed by the spellings
Postgres accepts without listing them (``wal_level = hot_standby``, ``synchronous_commit = yes``). Read from a
Postgres 18.6 server; the integration tests compare every entry with the server they run against.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["ENUM_VALUES", "UNITS"]

_UNITS_18 = {
    "archive_timeout": "s",
    "authentication_timeout": "s",
    "autovacuum_naptime": "s",
    "autovacuum_vacuum_cost_delay": "ms",
    "autovacuum_work_mem": "kB",
    "backend_flush_after": "8kB",
    "bgwriter_delay": "ms",
    "bgwriter_flush_after": "8kB",
    "checkpoint_flush_after": "8kB",
    "checkpoint_timeout": "s",
    "checkpoint_warning": "s",
    "client_connection_check_interval": "ms",
    "commit_timestamp_buffers": "8kB",
    "deadlock_timeout": "ms",
    "effective_cache_size": "8kB",
    "gin_pending_list_limit": "kB",
    "huge_page_size": "kB",
    "idle_in_transaction_session_timeout": "ms",
    "idle_replication_slot_timeout": "s",
    "idle_session_timeout": "ms",
    "io_combine_limit": "8kB",
    "io_max_combine_limit": "8kB",
    "lock_timeout": "ms",
    "log_autovacuum_min_duration": "ms",
    "log_min_duration_sample": "ms",
    "log_min_duration_statement": "ms",
    "log_parameter_max_length": "B",
    "log_parameter_max_length_on_error": "B",
    "log_rotation_age": "min",
    "log_rotation_size": "kB",
    "log_startup_progress_interval": "ms",
    "log_temp_files": "kB",
    "logical_decoding_work_mem": "kB",
    "maintenance_work_mem": "kB",
    "max_slot_wal_keep_size": "MB",
    "max_stack_depth": "kB",
    "max_standby_archive_delay": "ms",
    "max_standby_streaming_delay": "ms",
    "max_wal_size": "MB",
    "min_dynamic_shared_memory": "MB",
    "min_parallel_index_scan_size": "8kB",
    "min_parallel_table_scan_size": "8kB",
    "min_wal_size": "MB",
    "multixact_member_buffers": "8kB",
    "multixact_offset_buffers": "8kB",
    "notify_buffers": "8kB",
    "recovery_min_apply_delay": "ms",
    "serializable_buffers": "8kB",
    "shared_buffers": "8kB",
    "statement_timeout": "ms",
    "subtransaction_buffers": "8kB",
    "tcp_keepalives_idle": "s",
    "tcp_keepalives_interval": "s",
    "tcp_user_timeout": "ms",
    "temp_buffers": "8kB",
    "temp_file_limit": "kB",
    "track_activity_query_size": "B",
    "transaction_buffers": "8kB",
    "transaction_timeout": "ms",
    "vacuum_buffer_usage_limit": "kB",
    "vacuum_cost_delay": "ms",
    "wal_buffers": "8kB",
    "wal_decode_buffer_size": "B",
    "wal_keep_size": "MB",
    "wal_receiver_status_interval": "s",
    "wal_receiver_timeout": "ms",
    "wal_retrieve_retry_interval": "ms",
    "wal_sender_timeout": "ms",
    "wal_skip_threshold": "kB",
    "wal_summary_keep_time": "min",
    "wal_writer_delay": "ms",
    "wal_writer_flush_after": "8kB",
    "work_mem": "kB",
}

_BOOL_SPELLINGS = ("true", "false", "yes", "no", "1", "0")
# client_min_messages accepts these levels; icu_validation_level these and "disabled".
_CLIENT_LEVELS = (
    "debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error", "debug", "info",
)  # fmt: skip
# log_min_messages and log_min_error_statement accept the same levels.
_SERVER_LOG_LEVELS = (
    "debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning", "error", "log", "fatal", "panic",
    "debug",
)  # fmt: skip

_ENUM_VALUES_18 = {
    "intervalstyle": ("postgres", "postgres_verbose", "sql_standard", "iso_8601"),
    "archive_mode": ("always", "on", "off", *_BOOL_SPELLINGS),
    "backslash_quote": ("safe_encoding", "on", "off", *_BOOL_SPELLINGS),
    "bytea_output": ("escape", "hex"),
    "client_min_messages": _CLIENT_LEVELS,
    "compute_query_id": ("auto", "regress", "on", "off", *_BOOL_SPELLINGS),
    "constraint_exclusion": ("partition", "on", "off", *_BOOL_SPELLINGS),
    "default_toast_compression": ("pglz",),
    "default_transaction_isolation": ("serializable", "repeatable read", "read committed", "read uncommitted"),
    "dynamic_shared_memory_type": ("posix", "sysv", "mmap"),
    "file_copy_method": ("copy", "clone"),
    "file_extend_method": ("posix_fallocate", "write_zeros"),
    "huge_pages": ("off", "on", "try", *_BOOL_SPELLINGS),
    "icu_validation_level": ("disabled", *_CLIENT_LEVELS),
    "io_method": ("sync", "worker"),
    "log_error_verbosity": ("terse", "default", "verbose"),
    "log_min_error_statement": _SERVER_LOG_LEVELS,
    "log_min_messages": _SERVER_LOG_LEVELS,
    "log_statement": ("none", "ddl", "mod", "all"),
    "password_encryption": ("md5", "scram-sha-256"),
    "plan_cache_mode": ("auto", "force_generic_plan", "force_custom_plan"),
    "recovery_init_sync_method": ("fsync", "syncfs"),
    "recovery_prefetch": ("off", "on", "try", *_BOOL_SPELLINGS),
    "recovery_target_action": ("pause", "promote", "shutdown"),
    "session_replication_role": ("origin", "replica", "local"),
    "shared_memory_type": ("sysv", "mmap"),
    "ssl_max_protocol_version": ("", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "ssl_min_protocol_version": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "stats_fetch_consistency": ("none", "cache", "snapshot"),
    "synchronous_commit": ("local", "remote_write", "remote_apply", "on", "off", *_BOOL_SPELLINGS),
    "syslog_facility": ("local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"),
    "track_functions": ("none", "pl", "all"),
    "wal_compression": ("pglz", "on", "off", *_BOOL_SPELLINGS),
    "wal_level": ("minimal", "replica", "logical", "archive", "hot_standby"),
    "wal_sync_method": ("fsync", "fdatasync", "open_sync", "open_datasync"),
    "xmlbinary": ("base64", "hex"),
    "xmloption": ("content", "document"),
}

#: Major version → setting name → base unit (``B``, ``kB``, ``8kB``, ``MB``, ``ms``, ``s``, ``min``).
UNITS: Mapping[int, Mapping[str, str]] = MappingProxyType({18: MappingProxyType(_UNITS_18)})
#: Major version → enum setting name → every value Postgres accepts for it (compared case-insensitively).
ENUM_VALUES: Mapping[int, Mapping[str, tuple[str, ...]]] = MappingProxyType({18: MappingProxyType(_ENUM_VALUES_18)})
