-- Howdah's df schema, part 2: variables, and df.explain.
--
-- Variables are per role (df.vars, row-level security): df.setvar / getvar / unsetvar / clearvars. A SQL node's
-- text has {name} replaced by the value of the starting role's variable `name` when the node runs (raw, not
-- quoted, before $-bindings), and {sys_instance_id} / {sys_label} by the instance's id and label; an unknown
-- {x} is left as written. They are for use before df.start, not inside a workflow.

CREATE FUNCTION df._outside_workflow(fn text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF coalesce(current_setting('df.in_workflow', true), '') = 'true' THEN
        RAISE EXCEPTION '% cannot be called inside a workflow', fn
            USING ERRCODE = 'invalid_transaction_state', HINT = format('Call %s before df.start().', fn);
    END IF;
END;
$fn$;

CREATE FUNCTION df.setvar(name text, value text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM df._outside_workflow('df.setvar()');
    IF name IS NULL OR name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'df.setvar: variable name ''%'' is not a valid identifier', name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO df.vars AS v (name, value) VALUES (setvar.name, setvar.value)
        ON CONFLICT ON CONSTRAINT vars_pkey DO UPDATE SET value = EXCLUDED.value;
    RETURN 'OK';
END;
$fn$;

CREATE FUNCTION df.getvar(name text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT v.value FROM df.vars v WHERE v.name = getvar.name AND v.owner = (quote_ident(current_user))::regrole;
$fn$;

CREATE FUNCTION df.unsetvar(name text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM df._outside_workflow('df.unsetvar()');
    DELETE FROM df.vars v WHERE v.name = unsetvar.name AND v.owner = (quote_ident(current_user))::regrole;
    RETURN 'OK';
END;
$fn$;

CREATE FUNCTION df.clearvars() RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM df._outside_workflow('df.clearvars()');
    DELETE FROM df.vars v WHERE v.owner = (quote_ident(current_user))::regrole;
    RETURN 'OK';
END;
$fn$;

-- ------------------------------------------------------------------------------------------------ explain
CREATE FUNCTION df._marker(status text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT CASE status WHEN 'completed' THEN '✓' WHEN 'failed' THEN '✗' WHEN 'running' THEN '⏳'
                       WHEN 'cancelled' THEN '⊘' ELSE '○' END;
$fn$;

-- The lines of one node and what it holds, indented by `depth`; `statuses` maps node ids to their status.
CREATE FUNCTION df._explain_lines(node jsonb, statuses jsonb, depth integer) RETURNS SETOF text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    pad text := repeat('  ', depth);
    kind text := node ->> 'node_type';
    mark text := CASE WHEN statuses IS NULL THEN '' ELSE df._marker(statuses ->> (node ->> 'node_id')) || ' ' END;
    bound text := CASE WHEN node ? 'result_name' THEN format(' |=> %L', node ->> 'result_name') ELSE '' END;
    query text := node ->> 'query';
    branch jsonb;
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

-- A graph as text: a running or finished instance (its 8-hex-digit id) with each node's status, or a graph not
-- started (node text, a DSL expression's value, or plain SQL). Never raises for what it cannot read.
CREATE FUNCTION df.explain(input text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    inst df.instances;
    statuses jsonb;
    node jsonb;
    output text;
BEGIN
    IF input IS NULL THEN
        RETURN 'Nothing to explain: give an instance id, a workflow graph or SQL text';
    END IF;
    IF input ~ '^[0-9a-f]{8}$' THEN
        SELECT * INTO inst FROM df.instances i WHERE i.id = input;
        IF NOT FOUND THEN
            RETURN format('Instance ''%s'' not found', input);
        END IF;
        SELECT jsonb_object_agg(n.id, n.status) INTO statuses FROM df.nodes n WHERE n.instance_id = inst.id;
        output := coalesce(inst.result::text, inst.error, '');
        RETURN format(E'Instance: %s%s\nStatus:   %s %s\nOutput:   %s\n\n', inst.id,
                      coalesce(' (' || inst.label || ')', ''), df._marker(inst.status), inst.status,
                      CASE WHEN length(output) > 60 THEN left(output, 57) || '...' ELSE output END)
               || string_agg(line, E'\n') FROM df._explain_lines(inst.graph, coalesce(statuses, '{}'), 0) AS line;
    END IF;
    BEGIN
        node := df._node(input);
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN format('Cannot explain %s: %s', left(input, 40), SQLERRM);
    END;
    RETURN string_agg(line, E'\n') FROM df._explain_lines(node, NULL, 0) AS line;
END;
$fn$;
