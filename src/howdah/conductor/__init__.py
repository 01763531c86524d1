"""The data-plane agent: turns the control plane's CRUD events into real instances through a provider."""

from howdah.conductor.runner import LEASE, STATUS_INTERVAL, Conductor
from howdah.conductor.workflows import InstanceWorkflows, build_app

__all__ = ["LEASE", "STATUS_INTERVAL", "Conductor", "InstanceWorkflows", "build_app"]
