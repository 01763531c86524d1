"""The managed-Postgres control plane: instance specs, the state machine, stacks, the API and reconciler."""

#: "1": the API serves /metrics without a token to clients on 127.0.0.1/::1 (read by the API and ``howdah api``).
ENV_METRICS_OPEN_LOOPBACK = "HOWDAH_METRICS_OPEN_LOOPBACK"
