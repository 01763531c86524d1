-- Howdah's df schema, part 10: df.explain shows an HTTP node's method and URL (without its query string, which
-- may hold credentials) instead of its bare type.

-- The lines of one node and what it holds, indented by `depth`; `statuses` maps node ids to their status.
CREATE OR REPLACE FUNCTION df._explain_lines(node jsonb, statuses jsonb, depth integer) RETURNS SETOF text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    pad text := repeat('  ', depth);
    kind text := node ->> 'node_type';
    mark text := CASE WHEN statuses IS NULL THEN '' ELSE df._marker(statuses ->> (node ->> 'node_id')) || ' ' END;
    bound text := CASE WHEN node ? 'result_name' THEN format(' |=> %L', node ->> 'result_name') ELSE '' END;
    query text := node ->> 'query';
    branch jsonb;
    config jsonb;
    n integer := 0;
BEGIN
    IF kind = 'THEN' THEN  -- a sequence reads as one step after another
        RETURN QUERY SELECT * FROM df._explain_lines(node -> 'left_node', statuses, depth);
        RETURN QUERY SELECT * FROM df._explain_lines(node -> 'right_node', statuses, depth);
        RETURN;
    END IF;
    IF kind = 'SQL' THEN
        query := regexp_replace(query, '\s+', ' ', 'g');
        RETURN NEXT format('%s→ %sSQL: %s%s', pad, mark,
                           CASE WHEN length(query) > 50 THEN left(query, 47) || '...' ELSE query END, bound);
    ELSIF kind IN ('HTTP', 'HTTP_MULTIPART') THEN  -- the URL without its query string (it may hold credentials)
        BEGIN
            config := query::jsonb;
        EXCEPTION WHEN invalid_text_representation THEN
            config := '{}';
        END;
        RETURN NEXT format('%s→ %s%s %s %s%s', pad, mark, kind, coalesce(config ->> 'method', 'POST'),
                           split_part(split_part(coalesce(config ->> 'url', ''), '?', 1), '#', 1), bound);
    ELSIF kind = 'SLEEP' THEN
        RETURN NEXT format('%s→ %sSLEEP %ss%s', pad, mark, node ->> 'seconds', bound);
    ELSIF kind = 'WORKFLOW' THEN
        RETURN NEXT format('%s→ %sWORKFLOW %s%s', pad, mark, node ->> 'workflow_name', bound);
    ELSIF kind = 'WAIT_SCHEDULE' THEN
        RETURN NEXT format('%s→ %sWAIT %L%s', pad, mark, node ->> 'cron_expr', bound);
    ELSIF kind = 'SIGNAL' THEN
        RETURN NEXT format('%s→ %sWAIT SIGNAL %L%s%s', pad, mark, node ->> 'signal_name',
                           coalesce(format(' (timeout %ss)', node ->> 'timeout_seconds'), ''), bound);
    ELSIF kind = 'BREAK' THEN
        RETURN NEXT format('%s→ %sBREAK%s', pad, mark, coalesce(' ' || (node ->> 'break_value'), ''));
    ELSIF kind = 'IF' THEN
        RETURN NEXT format('%s→ %sIF%s', pad, mark, bound);
        IF node ? 'condition_node' THEN
            RETURN NEXT format('%s  ? condition:', pad);
            RETURN QUERY SELECT * FROM df._explain_lines(node -> 'condition_node', statuses, depth + 2);
        ELSE
            RETURN NEXT format('%s  ? condition: %s has rows', pad, node -> 'condition' ->> 'result_name');
        END IF;
        RETURN NEXT format('%s  ✓ then:', pad);
        RETURN QUERY SELECT * FROM df._explain_lines(node -> 'left_node', statuses, depth + 2);
        RETURN NEXT format('%s  ✗ else:', pad);
        RETURN QUERY SELECT * FROM df._explain_lines(node -> 'right_node', statuses, depth + 2);
    ELSIF kind IN ('JOIN', 'RACE') THEN
        RETURN NEXT format('%s→ %s%s (%s)%s', pad, mark, kind, 2 + coalesce(jsonb_array_length(node -> 'extra_nodes'), 0), bound);
        FOR branch IN SELECT b FROM (SELECT node -> 'left_node' AS b, 0 AS o UNION ALL SELECT node -> 'right_node', 1
                                     UNION ALL SELECT e, 2 + k FROM jsonb_array_elements(coalesce(node -> 'extra_nodes', '[]'))
                                                   WITH ORDINALITY AS x(e, k)) AS s ORDER BY o LOOP
            n := n + 1;
            RETURN NEXT format('%s  ║ branch %s:', pad, n);
            RETURN QUERY SELECT * FROM df._explain_lines(branch, statuses, depth + 2);
        END LOOP;
    ELSIF kind = 'LOOP' THEN
        RETURN NEXT format('%s→ %sLOOP (%s)%s', pad, mark, CASE WHEN node ? 'condition_node' THEN 'while' ELSE 'infinite' END, bound);
        IF node ? 'condition_node' THEN
            RETURN NEXT format('%s  ? while:', pad);
            RETURN QUERY SELECT * FROM df._explain_lines(node -> 'condition_node', statuses, depth + 2);
        END IF;
        RETURN NEXT format('%s  ↻ body:', pad);
        RETURN QUERY SELECT * FROM df._explain_lines(node -> 'left_node', statuses, depth + 2);
    ELSE
        RETURN NEXT format('%s→ %s%s%s', pad, mark, kind, bound);
    END IF;
END;
$fn$;
