"""The data-plane agent: turns the control plane's CRUD events into real instances through a provider."""

from howdah.conductor.runner import Conductor
from howdah.conductor.workflows import InstanceWorkflows, build_app

__all__ = ["Conductor", "InstanceWorkflows", "build_app"]
