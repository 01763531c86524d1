-- Instances' Postgres logs as their data plane's conductor ships them (the lines it has not sent yet, every few
-- seconds), read through the API by the instance's org. Bounded: the conductor keeps the newest lines of each
-- instance (older ones are deleted as new ones come). end_offset is where the line ends in the server's log
-- file, so a restarted conductor resumes after the last line it sent.
CREATE TABLE control.instance_logs (
    instance_id uuid        NOT NULL REFERENCES control.instances (id) ON DELETE CASCADE,
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    server      text        NOT NULL CHECK (server ~ '^[a-z0-9-]{1,32}$'),
    line        text        NOT NULL,
    end_offset  bigint      NOT NULL CHECK (end_offset > 0),
    PRIMARY KEY (instance_id, seq)
);
