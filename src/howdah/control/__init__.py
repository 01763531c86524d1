"""The managed-Postgres control plane: instance specs, the state machine, stacks, the API and reconciler."""
