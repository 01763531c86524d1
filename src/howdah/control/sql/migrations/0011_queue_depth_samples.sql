-- Queue depth over the last hour, for the console's chart. The reconciler's sweep writes one row per queue per
-- minute (the first sweep of a minute; the others find the minute sampled and read no queue) and drops rows
-- older than an hour in the same statement, so the table holds about 61 rows per queue.
CREATE TABLE control.queue_depth_samples (
    at           timestamptz NOT NULL,  -- the minute sampled (date_trunc('minute'))
    queue_name   text        NOT NULL,
    queue_length bigint      NOT NULL CHECK (queue_length >= 0),
    PRIMARY KEY (at, queue_name)
);
