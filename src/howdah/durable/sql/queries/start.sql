-- name: start_many
-- Start many workflows of one type in one statement, so in one transaction: howdah.start_workflow for each
-- (args, workflow_id, key), in array order, one result row each, in the same order. An existing id (or one
-- given twice) is not started again (created = false); any refusal rolls back the whole batch.
SELECT s.id, s.status, s.created
FROM unnest(%(args)s::jsonb[], %(ids)s::text[], %(keys)s::text[]) WITH ORDINALITY AS a (args, workflow_id, key, n)
CROSS JOIN LATERAL howdah.start_workflow(
    %(name)s, a.args, a.workflow_id, a.key, NULL, make_interval(secs => %(timeout)s::double precision)
) AS s
ORDER BY a.n;
