-- Backups of instances, taken by their data plane (pg_basebackup for the local provider).
CREATE TABLE control.backups (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       text        NOT NULL REFERENCES control.orgs (id) ON DELETE CASCADE,
    instance_id  uuid        NOT NULL,          -- no FK: a backup outlives its instance
    data_plane   text        NOT NULL REFERENCES control.data_planes (name),
    spec         jsonb       NOT NULL,          -- the instance's desired spec when the backup was asked for
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'failed')),
    location     text,
    size_bytes   bigint,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at timestamptz
);
CREATE INDEX backups_instance ON control.backups (org_id, instance_id, created_at);
