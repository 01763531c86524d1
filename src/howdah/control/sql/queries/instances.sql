-- Instances as the API changes them: every accepted change writes the row and sends its CRUD event in one
-- transaction.

-- name: instance_of_org
-- One instance of an org with its data plane's queue, capacity, extension catalog and features, or nothing.
SELECT i.*, d.queue_name AS dp_queue, d.cpu AS dp_cpu, d.memory_bytes AS dp_memory_bytes,
       d.storage_bytes AS dp_storage_bytes, d.extension_catalog AS dp_extension_catalog,
       d.features AS dp_features
  FROM control.instances i JOIN control.data_planes d ON d.name = i.data_plane
 WHERE i.org_id = %(org_id)s AND i.id::text = %(id)s;

-- name: instance_of_org_for_update
-- The same, the instance row locked for a change.
SELECT i.*, d.queue_name AS dp_queue, d.cpu AS dp_cpu, d.memory_bytes AS dp_memory_bytes,
       d.storage_bytes AS dp_storage_bytes, d.extension_catalog AS dp_extension_catalog,
       d.features AS dp_features
  FROM control.instances i JOIN control.data_planes d ON d.name = i.data_plane
 WHERE i.org_id = %(org_id)s AND i.id::text = %(id)s
   FOR UPDATE OF i;

-- name: insert_instance
-- A new instance with its Create in flight.
INSERT INTO control.instances (org_id, name, data_plane, state, desired_spec, has_active_work, work_sent_at)
VALUES (%(org_id)s, %(name)s, %(data_plane)s, %(state)s, %(desired_spec)s, true, clock_timestamp())
RETURNING *;

-- name: track_sent_work
-- The CRUD event just sent is the instance's work in flight (re-sent until answered).
UPDATE control.instances
   SET pending_event = %(event)s, work_sent_at = clock_timestamp(), unanswered_sends = 0
 WHERE id = %(id)s
RETURNING *;

-- name: list_instances
-- A page of an org's instances (optionally in one state), each row with the total count.
SELECT *, count(*) OVER () AS total
  FROM control.instances
 WHERE org_id = %(org_id)s AND (%(state)s::text IS NULL OR state = %(state)s)
 ORDER BY created_at, id
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: accept_change
-- A change accepted by the state machine: the next generation; an error is cleared unless it is a Delete.
UPDATE control.instances
   SET state = %(state)s, desired_spec = %(desired_spec)s, has_active_work = %(has_active_work)s,
       generation = generation + 1, updated_at = clock_timestamp(),
       last_error = CASE WHEN %(clear_error)s THEN NULL ELSE last_error END,
       error_attempts = 0, next_retry_at = NULL
 WHERE id = %(id)s
RETURNING *;

-- name: instances_by_state
SELECT state, count(*) FROM control.instances GROUP BY state ORDER BY state;

-- name: supervised_instances
-- What a data plane's conductor supervises: its instances that should be Up with no work in flight.
SELECT id::text, generation
  FROM control.instances
 WHERE data_plane = %(data_plane)s AND state = 'Up' AND NOT has_active_work;

-- name: awaits_answer
-- Whether the instance, on this data plane, still waits for the answer to work of this generation.
SELECT EXISTS (
    SELECT FROM control.instances
     WHERE id::text = %(id)s AND data_plane = %(data_plane)s AND has_active_work AND generation = %(generation)s
);

-- name: instances_on_data_plane
-- Every org's instances on one data plane that are not deleted (for `howdah up` and `howdah down` on its host).
SELECT org_id, id::text AS id, name, state
  FROM control.instances
 WHERE data_plane = %(data_plane)s AND state <> 'Deleted'
 ORDER BY org_id, name;

-- name: live_panel
-- What `howdah up`'s live panel shows, in one statement: how many instances are in each state (not deleted), the
-- `rows` instances not deleted whose state began last (org, name, state, the change in flight, the last error,
-- and since when the instance is in its state: the first of its latest run of events in that state), the `events`
-- newest events of any instance (each with the change that led to it), the workflows not finished by status, and the queues holding messages at the
-- last minute's depth sample (the panel counts no queue itself).
WITH live AS (
    SELECT i.id, i.org_id, i.name, i.state, CASE WHEN i.has_active_work THEN i.pending_event ->> 'kind' END AS change,
           i.last_error AS error,
           (SELECT min(e.at) FROM control.instance_events e
             WHERE e.instance_id = i.id
               AND e.id > coalesce((SELECT max(p.id) FROM control.instance_events p
                                     WHERE p.instance_id = i.id AND p.state <> i.state), 0)) AS since
      FROM control.instances i
     WHERE i.state <> 'Deleted'
), recent AS (
    SELECT e.id, e.at, i.org_id, i.name, e.state, e.change, e.error
      FROM (SELECT * FROM control.instance_events ORDER BY id DESC LIMIT %(events)s) e
      JOIN control.instances i ON i.id = e.instance_id
)
SELECT
    (SELECT coalesce(jsonb_object_agg(state, n), '{}'::jsonb)
       FROM (SELECT state, count(*) AS n FROM live GROUP BY state) c) AS counts,
    (SELECT coalesce(jsonb_agg(to_jsonb(l) - 'id' ORDER BY l.since DESC NULLS LAST, l.org_id, l.name), '[]'::jsonb)
       FROM (SELECT * FROM live ORDER BY since DESC NULLS LAST, org_id, name LIMIT %(rows)s) l) AS instances,
    (SELECT coalesce(jsonb_agg(to_jsonb(r) - 'id' ORDER BY r.id DESC), '[]'::jsonb) FROM recent r) AS events,
    (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb)
       FROM (SELECT status, count(*) AS n FROM howdah.workflows
              WHERE status IN ('pending', 'running', 'sleeping', 'waiting') GROUP BY status) w) AS workflows,
    (SELECT coalesce(jsonb_object_agg(queue_name, queue_length), '{}'::jsonb)
       FROM control.queue_depth_samples
      WHERE at = (SELECT max(at) FROM control.queue_depth_samples) AND queue_length > 0) AS queues;
