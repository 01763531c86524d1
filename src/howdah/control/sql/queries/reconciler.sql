-- The reconciler: state events from the data planes, and the sweeps that re-drive quiet or failed work.

-- name: instance_for_update
SELECT * FROM control.instances WHERE id::text = %(id)s FOR UPDATE;

-- name: record_observed_status
-- An acknowledgement of superseded work: what it observed is kept, not its verdict.
UPDATE control.instances
   SET status = status || %(status)s, updated_at = clock_timestamp()
 WHERE id = %(id)s;

-- name: record_state_event
-- A state event the state machine accepted: the new state, what the data plane observed, and the error with
-- its retry time (a NULL retry time: not retried).
UPDATE control.instances
   SET state = %(state)s, has_active_work = %(has_active_work)s,
       actual_spec = coalesce(%(actual_spec)s, actual_spec), status = status || %(status)s,
       connection = CASE WHEN %(deleted)s THEN NULL ELSE coalesce(%(connection)s, connection) END,
       last_error = CASE WHEN %(failed)s THEN %(error)s ELSE NULL END, error_attempts = %(error_attempts)s,
       next_retry_at = CASE WHEN %(retry)s THEN clock_timestamp() + make_interval(secs => %(retry_in)s) END,
       updated_at = clock_timestamp()
 WHERE id = %(id)s;

-- name: give_up_unanswered
-- Work that went unanswered too long: the instance goes to Error, not retried.
UPDATE control.instances
   SET state = %(state)s, has_active_work = %(has_active_work)s, last_error = %(error)s, next_retry_at = NULL,
       updated_at = clock_timestamp()
 WHERE id = %(id)s;

-- name: unanswered_work
-- Work sent more than ack_timeout seconds ago and not acknowledged, with the queue to send it to again.
SELECT i.id, i.state, i.pending_event, i.unanswered_sends, i.data_plane, d.queue_name
  FROM control.instances i JOIN control.data_planes d ON d.name = i.data_plane
 WHERE i.has_active_work AND i.pending_event IS NOT NULL
   AND i.work_sent_at < clock_timestamp() - make_interval(secs => %(ack_timeout)s)
   FOR UPDATE OF i SKIP LOCKED;

-- name: mark_resent
UPDATE control.instances
   SET work_sent_at = clock_timestamp(), unanswered_sends = unanswered_sends + 1
 WHERE id = %(id)s;

-- name: errors_due_for_retry
-- Instances in a transient Error whose backoff ran out.
SELECT i.*, d.queue_name AS dp_queue
  FROM control.instances i JOIN control.data_planes d ON d.name = i.data_plane
 WHERE i.state = 'Error' AND i.next_retry_at <= clock_timestamp() AND i.pending_event IS NOT NULL
   FOR UPDATE OF i SKIP LOCKED;

-- name: record_retry
-- The failed work sent again as the next generation.
UPDATE control.instances
   SET state = %(state)s, has_active_work = true, generation = generation + 1, pending_event = %(event)s,
       work_sent_at = clock_timestamp(), next_retry_at = NULL, updated_at = clock_timestamp()
 WHERE id = %(id)s;

-- name: sample_queue_depths
-- One row per queue for the current minute, unless this minute is sampled already (then the uncorrelated
-- NOT EXISTS is a one-time filter and pgmq.metrics_all() is not called); rows older than an hour are dropped in
-- the same statement. Returns how many queues were sampled (0: the minute had its sample).
WITH pruned AS (
    DELETE FROM control.queue_depth_samples WHERE at < date_trunc('minute', now()) - interval '1 hour'
), sampled AS (
    INSERT INTO control.queue_depth_samples (at, queue_name, queue_length)
    SELECT date_trunc('minute', now()), queue_name, queue_length
      FROM pgmq.metrics_all()
     WHERE NOT EXISTS (SELECT FROM control.queue_depth_samples
                        WHERE at = date_trunc('minute', now()))
    ON CONFLICT (at, queue_name) DO NOTHING
    RETURNING 1
)
SELECT count(*) AS sampled FROM sampled;
