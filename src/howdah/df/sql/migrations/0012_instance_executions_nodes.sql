-- Howdah's df schema, part 12: df.instance_executions, and df.instance_nodes in pg_durable 0.2.5's shape.
--
-- df.instance_nodes(instance_id) returns pg_durable 0.2.5's twelve columns in its order: node_id, node_type,
-- query, result_name, left_node, right_node, status, result, status_details, inferred_status,
-- inferred_status_from_ancestor_id, updated_at (all text but updated_at). How Howdah fills them:
-- - query: a SQL node's statement (an HTTP node's request, as JSON); for any other node the JSON of its settings
--   (a sleep's seconds, a signal's name, a break's value), with a condition or a join's third branch named by
--   node id ({"condition_node": "…"}, {"extra_nodes": ["…"]}); NULL for a node without any (a sequence).
-- - left_node / right_node: the ids of the first and second node it holds (a sequence's two sides, a join's or a
--   race's first two branches, an IF's then and else, a loop's body).
-- - result: the node's result as JSON text; for a failed node without one, {"error": "<Postgres's message>"}.
-- - status_details: {"execution_id": "<instance id>::1"} once the node has left 'pending' (Howdah runs an instance
--   as one execution and runs a loop's nodes again in place, so the generation is always 1), else NULL.
-- - inferred_status: the stored status, or 'skipped' for a node that has not finished and will not run: the
--   branch an IF did not take (its other branch has run), the right side of a sequence whose left side failed,
--   and every unfinished node of an instance that is over (completed, failed or cancelled).
--   inferred_status_from_ancestor_id names the ancestor that decided it (for an instance that is over, the
--   nearest finished ancestor, or NULL when there is none).
-- The two-argument form df.instance_nodes(instance_id, last_n_executions) is 0.2.5's compatibility overload: ten
-- columns (execution_id = 1, then the node's columns without the four above), last_n_executions ignored.
--
-- df.instance_executions(instance_id[, limit_count = 5]) returns pg_durable's columns execution_id, status,
-- event_count, duration_ms, output: one row once the instance has started (Howdah never continues an instance
-- as new, so there is only execution 1), none while it is pending or for an instance the caller cannot see.
-- status uses the execution vocabulary of pg_durable's engine: Running, Completed, Failed (a cancelled instance's
-- execution is Failed there too); event_count is the number of the instance's nodes that have run; duration_ms
-- runs from df.start to the end, 0 until the instance is over; output is the instance's result as JSON text.
-- limit_count below 1 is refused, as pg_durable refuses it.
--
-- Both are SECURITY INVOKER and read df.instances and df.nodes only, so row-level security shows each role its
-- own instances and nothing else.

DROP FUNCTION df.instance_nodes(text);

-- The nodes of a graph with the ids, node types and child slots of their ancestors (from the root down).
CREATE FUNCTION df._graph_nodes(graph jsonb)
RETURNS TABLE (node jsonb, ancestors text[], ancestor_types text[], slots text[])
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    WITH RECURSIVE walk (node, ancestors, ancestor_types, slots) AS (
        SELECT graph, ARRAY[]::text[], ARRAY[]::text[], ARRAY[]::text[]
        UNION ALL
        SELECT c.child, w.ancestors || (w.node ->> 'node_id'), w.ancestor_types || (w.node ->> 'node_type'),
               w.slots || c.slot
          FROM walk w
         CROSS JOIN LATERAL (
            SELECT w.node -> k.slot AS child, k.slot
              FROM unnest(ARRAY['condition_node', 'left_node', 'right_node']) AS k (slot)
             WHERE w.node ? k.slot
            UNION ALL
            SELECT e.child, 'extra_' || e.n
              FROM jsonb_array_elements(CASE WHEN jsonb_typeof(w.node -> 'extra_nodes') = 'array'
                                             THEN w.node -> 'extra_nodes' ELSE '[]' END)
                   WITH ORDINALITY AS e (child, n)
         ) AS c
    )
    SELECT w.node, w.ancestors, w.ancestor_types, w.slots FROM walk w WHERE w.node ? 'node_id';
$fn$;

-- What a node of the graph is set to, as the JSON text pg_durable shows in `query` for nodes other than SQL.
CREATE FUNCTION df._node_settings(node jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT nullif(
        (node - 'node_type' - 'node_id' - 'result_name' - 'query' - 'left_node' - 'right_node' - 'condition_node'
              - 'extra_nodes')
        || CASE WHEN node ? 'condition_node'
                THEN jsonb_build_object('condition_node', node -> 'condition_node' ->> 'node_id') ELSE '{}' END
        || CASE WHEN jsonb_typeof(node -> 'extra_nodes') = 'array'
                THEN jsonb_build_object('extra_nodes', (SELECT jsonb_agg(e ->> 'node_id' ORDER BY n)
                                                          FROM jsonb_array_elements(node -> 'extra_nodes')
                                                               WITH ORDINALITY AS x (e, n)))
                ELSE '{}' END,
        '{}')::text;
$fn$;

CREATE FUNCTION df.instance_nodes(instance_id_param text)
RETURNS TABLE (node_id text, node_type text, query text, result_name text, left_node text, right_node text,
               status text, result text, status_details text, inferred_status text,
               inferred_status_from_ancestor_id text, updated_at timestamptz)
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
    WITH inst AS (
        SELECT i.id, i.graph, i.status FROM df.instances i WHERE i.id = instance_id_param
    ), stored AS (
        SELECT n.id, n.node_type, n.query, n.result_name, n.status, n.result, n.error, n.updated_at
          FROM df.nodes n WHERE n.instance_id = instance_id_param
    ), graph AS (
        SELECT g.node ->> 'node_id' AS id, g.node, g.ancestors, g.ancestor_types, g.slots
          FROM inst, df._graph_nodes(inst.graph) AS g
    ), reached AS (  -- for each ancestor and child slot: has a node below it run, has one failed
        SELECT g.ancestors[k] AS ancestor, g.slots[k] AS slot,
               bool_or(s.status IN ('completed', 'failed')) AS ran, bool_or(s.status = 'failed') AS failed
          FROM graph g JOIN stored s ON s.id = g.id, generate_subscripts(g.ancestors, 1) AS k
         WHERE g.ancestor_types[k] IN ('IF', 'THEN')
         GROUP BY 1, 2
    )
    SELECT s.id, s.node_type,
           CASE WHEN s.node_type = 'SQL' OR s.query IS NOT NULL THEN s.query ELSE df._node_settings(g.node) END,
           s.result_name, g.node -> 'left_node' ->> 'node_id', g.node -> 'right_node' ->> 'node_id', s.status,
           coalesce(s.result::text,
                    CASE WHEN s.status = 'failed' THEN jsonb_build_object('error', s.error)::text END),
           CASE WHEN s.status <> 'pending' THEN jsonb_build_object('execution_id', inst.id || '::1')::text END,
           CASE WHEN s.status IN ('completed', 'failed') THEN s.status
                WHEN decided.ancestor IS NOT NULL OR inst.status IN ('completed', 'failed', 'cancelled')
                    THEN 'skipped'
                ELSE s.status END,
           CASE WHEN s.status IN ('completed', 'failed') THEN NULL
                WHEN decided.ancestor IS NOT NULL THEN decided.ancestor
                WHEN inst.status IN ('completed', 'failed', 'cancelled') THEN finished.ancestor END,
           s.updated_at
      FROM inst
      JOIN stored s ON true
      LEFT JOIN graph g ON g.id = s.id
      LEFT JOIN LATERAL (  -- the nearest IF whose other branch ran while this one did not, or sequence whose
                           -- left side failed while this node is on its right
        SELECT g.ancestors[k] AS ancestor
          FROM generate_subscripts(g.ancestors, 1) AS k
          LEFT JOIN reached mine ON mine.ancestor = g.ancestors[k] AND mine.slot = g.slots[k]
          LEFT JOIN reached other ON other.ancestor = g.ancestors[k]
                                 AND other.slot = CASE g.slots[k] WHEN 'left_node' THEN 'right_node'
                                                                  ELSE 'left_node' END
         WHERE (g.ancestor_types[k] = 'IF' AND g.slots[k] IN ('left_node', 'right_node')
                AND coalesce(other.ran, false) AND NOT coalesce(mine.ran, false))
            OR (g.ancestor_types[k] = 'THEN' AND g.slots[k] = 'right_node' AND coalesce(other.failed, false))
         ORDER BY k DESC LIMIT 1
      ) AS decided ON true
      LEFT JOIN LATERAL (  -- the nearest ancestor that finished
        SELECT g.ancestors[k] AS ancestor
          FROM generate_subscripts(g.ancestors, 1) AS k
          JOIN stored a ON a.id = g.ancestors[k]
         WHERE a.status IN ('completed', 'failed')
         ORDER BY k DESC LIMIT 1
      ) AS finished ON true
     ORDER BY s.id;
$fn$;

-- pg_durable 0.2.5's compatibility overload (its shape before 0.2.4): one row per node, execution_id 1.
CREATE FUNCTION df.instance_nodes(instance_id_param text, _last_n_executions integer)
RETURNS TABLE (execution_id bigint, node_id text, node_type text, query text, result_name text, left_node text,
               right_node text, status text, result text, updated_at timestamptz)
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT 1::bigint, n.node_id, n.node_type, n.query, n.result_name, n.left_node, n.right_node, n.status,
           n.result, n.updated_at
      FROM df.instance_nodes(instance_id_param) AS n;
$fn$;

CREATE FUNCTION df.instance_executions(instance_id text, limit_count integer DEFAULT 5)
RETURNS TABLE (execution_id bigint, status text, event_count bigint, duration_ms bigint, output text)
LANGUAGE plpgsql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF limit_count < 1 THEN
        RAISE EXCEPTION 'limit_count must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT 1::bigint,
           CASE i.status WHEN 'running' THEN 'Running' WHEN 'completed' THEN 'Completed' ELSE 'Failed' END,
           (SELECT count(*) FROM df.nodes n WHERE n.instance_id = i.id AND n.status <> 'pending'),
           CASE WHEN i.status IN ('completed', 'failed', 'cancelled') AND i.completed_at IS NOT NULL
                THEN greatest(0, floor(extract(epoch FROM i.completed_at - i.created_at) * 1000))::bigint
                ELSE 0 END,
           i.result::text
      FROM df.instances i
     WHERE i.id = instance_executions.instance_id AND i.status <> 'pending'
     LIMIT least(limit_count, 10000);
END;
$fn$;
