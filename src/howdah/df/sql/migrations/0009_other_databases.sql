-- Howdah's df schema, part 9: df.start(…, database => 'other') runs the instance's SQL nodes in that database,
-- as pg_durable does; the instance, its nodes and its workflow stay in the database df.start was called in. So
-- that each statement still happens exactly once, it commits in the other database together with a row here
-- naming its step: a replay of the step finds the row and takes the result recorded in it instead of running the
-- statement again. Rows are deleted when their instance completes. Only the worker reads and writes them.

CREATE TABLE df.remote_steps (
    workflow_id text        NOT NULL,
    step        text        NOT NULL,
    result      jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, step)
);
REVOKE ALL ON df.remote_steps FROM PUBLIC;
