-- Howdah control plane: orgs, API tokens, data planes and instances (schema `control`).
-- An accepted change to an instance updates its row and enqueues a CRUD event on its data plane's queue in
-- ONE transaction; `generation` numbers the changes so late or repeated acknowledgements are recognised.

CREATE SCHEMA control;

CREATE TABLE control.orgs (
    id         text        PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Tokens are shown once; only their SHA-256 is kept.
CREATE TABLE control.tokens (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       text        NOT NULL REFERENCES control.orgs (id) ON DELETE CASCADE,
    name         text        NOT NULL DEFAULT '',
    role         text        NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    token_sha256 text        NOT NULL UNIQUE,
    prefix       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE TABLE control.data_planes (
    name        text        PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,30}$'),
    queue_name  text        NOT NULL UNIQUE,   -- where its CRUD events go
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seen_at timestamptz
);

CREATE TABLE control.instances (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          text        NOT NULL REFERENCES control.orgs (id) ON DELETE CASCADE,
    name            text        NOT NULL,
    data_plane      text        NOT NULL REFERENCES control.data_planes (name),
    state           text        NOT NULL,
    desired_spec    jsonb       NOT NULL,
    actual_spec     jsonb,
    status          jsonb       NOT NULL DEFAULT '{}',
    connection      jsonb,
    has_active_work boolean     NOT NULL DEFAULT false,
    generation      bigint      NOT NULL DEFAULT 1,
    pending_event   jsonb,                        -- the CRUD event in flight (re-sent if not acknowledged)
    work_sent_at    timestamptz,
    last_error      text,
    error_attempts  integer     NOT NULL DEFAULT 0,
    next_retry_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX instances_name_per_org ON control.instances (org_id, name) WHERE state <> 'Deleted';
CREATE INDEX instances_org_created ON control.instances (org_id, created_at, id);
CREATE INDEX instances_unacknowledged ON control.instances (work_sent_at) WHERE has_active_work;
CREATE INDEX instances_error_retry ON control.instances (next_retry_at) WHERE state = 'Error';
