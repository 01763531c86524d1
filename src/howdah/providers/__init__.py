"""Where instances really run: ``local`` (Postgres processes on this machine) and ``kubernetes`` (CloudNativePG)."""

from howdah.providers.base import (
    Backup,
    Capability,
    ConnectionInfo,
    InstanceStatus,
    Provider,
    ProviderError,
    RecoveryTarget,
    TransientProviderError,
    Unsupported,
)

__all__ = [
    "Backup",
    "Capability",
    "ConnectionInfo",
    "InstanceStatus",
    "Provider",
    "ProviderError",
    "RecoveryTarget",
    "TransientProviderError",
    "Unsupported",
]
