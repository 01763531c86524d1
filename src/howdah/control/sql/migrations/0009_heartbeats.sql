-- Liveness for /readyz. A reconciler records, each time it ticks, when it did and how often it promises to
-- (any reconciler that ticked recently will do); a conductor does the same on its data plane's row
-- (last_seen_at, existing since 0001, and the interval it promises, NULL until a conductor registers).
CREATE TABLE control.heartbeats (
    component        text        PRIMARY KEY,
    last_seen_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    interval_seconds real        NOT NULL CHECK (interval_seconds > 0)
);

ALTER TABLE control.data_planes ADD COLUMN heartbeat_seconds real CHECK (heartbeat_seconds > 0);
