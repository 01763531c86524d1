-- name: instances_of_org
-- The instances table of an org, newest first: one statement per refresh of the whole page (the index
-- instances_org_created, read backwards). Deleted ones only when asked for.
SELECT id::text AS id, name, state, has_active_work, last_error, created_at,
       desired_spec->>'stack' AS stack, desired_spec->>'cpu' AS cpu, desired_spec->>'memory' AS memory,
       desired_spec->>'storage' AS storage
  FROM control.instances
 WHERE org_id = %(org_id)s AND (%(deleted)s OR state <> 'Deleted')
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s;

-- name: workflows_page
-- A page of workflows in one status, newest first, after the keyset cursor (created_at, id) when given:
-- the index workflows_status_created, never a count of the table.
SELECT id, name, status, attempts, created_at, updated_at, finished_at, wake_at, waiting_for
  FROM howdah.workflows
 WHERE status = %(status)s
   AND (%(before_at)s::timestamptz IS NULL OR (created_at, id) < (%(before_at)s::timestamptz, %(before_id)s::text))
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s;

-- name: workflows_page_named
-- The same page for the workflows of one name: the index workflows_status_name_created (durable 0003).
SELECT id, name, status, attempts, created_at, updated_at, finished_at, wake_at, waiting_for
  FROM howdah.workflows
 WHERE status = %(status)s AND name = %(name)s
   AND (%(before_at)s::timestamptz IS NULL OR (created_at, id) < (%(before_at)s::timestamptz, %(before_id)s::text))
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s;

-- name: workflow_children
-- The child workflows of one workflow (the index workflows_parent).
SELECT id, name, status FROM howdah.workflows WHERE parent_id = %(id)s ORDER BY created_at, id LIMIT 200;

-- name: queues
-- Every queue's depth and age, as PGMQ's metrics report them (read once: the CTE is used twice), each beside the
-- depth of its dead-letter queue: the queue named after it with the consumer's suffix (%(dlq_suffix)s, "_dlq"),
-- when one exists; a dead-letter queue names the queue it serves (source_queue).
WITH m AS MATERIALIZED (SELECT * FROM pgmq.metrics_all())
SELECT m.queue_name, m.queue_length, m.queue_visible_length, m.oldest_msg_age_sec, m.total_messages,
       dlq.queue_name AS dlq_name, dlq.queue_length AS dlq_length, src.queue_name AS source_queue
  FROM m
  LEFT JOIN m AS dlq ON lower(dlq.queue_name) = lower(m.queue_name || %(dlq_suffix)s)
  LEFT JOIN m AS src ON lower(m.queue_name) = lower(src.queue_name || %(dlq_suffix)s)
 ORDER BY m.queue_name;

-- name: instance_events
-- An instance's latest recorded states, newest first (the index instance_events_of_instance); the caller has
-- checked the instance belongs to the org.
SELECT at, state, generation, change, event_id, error
  FROM control.instance_events
 WHERE instance_id = %(id)s::uuid
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: queue_depth_history
-- Messages queued on the whole platform, per minute of the last hour that the reconciler sampled (control 0011:
-- about 61 rows a queue, pruned as it samples).
SELECT at, sum(queue_length)::bigint AS depth, now() AS now
  FROM control.queue_depth_samples
 WHERE at >= now() - interval '1 hour'
 GROUP BY at
 ORDER BY at;

-- name: orgs
-- The orgs a platform admin may choose to view (the primary key's order).
SELECT id, name, created_at FROM control.orgs ORDER BY id LIMIT %(limit)s;

-- name: org_exists
SELECT EXISTS (SELECT FROM control.orgs WHERE id = %(id)s) AS found;
