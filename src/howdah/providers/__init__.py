"""Where instances really run: ``local`` (Postgres processes on this machine) and ``kubernetes`` (CloudNativePG)."""

from howdah.providers.base import (
    Backup,
    ConnectionInfo,
    InstanceStatus,
    Provider,
    ProviderError,
    TransientProviderError,
)

__all__ = ["Backup", "ConnectionInfo", "InstanceStatus", "Provider", "ProviderError", "TransientProviderError"]
