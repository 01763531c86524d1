-- Howdah's df schema, part 1: SQL-defined durable workflows with pg_durable's SQL API, in plain SQL.
--
-- A workflow is a graph of nodes, each a JSON object kept as text (as pg_durable's are): {"node_type": "SQL",
-- "query": ...}, {"node_type": "THEN", "left_node": ..., "right_node": ...}, and so on. Builders return that
-- text, and every argument that should be a node may be a plain SQL string instead, which becomes a SQL node.
-- df.start stores the graph (every node numbered with an id of its own) and starts Howdah's durable workflow
-- "df" for it in the caller's transaction; a Howdah worker executes it. Instances, nodes and variables are
-- visible only to the role that started them (row-level security); the worker runs each SQL node as that role,
-- in the transaction that checkpoints it.

CREATE SCHEMA df;

CREATE TABLE df.instances (
    id           text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{8}$'),
    label        text        CHECK (label IS NULL OR length(label) <= 1000),
    root_node    text        NOT NULL,
    graph        jsonb       NOT NULL,
    status       text        NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    result       jsonb,
    error        text,
    submitted_by regrole     NOT NULL DEFAULT (quote_ident(current_user))::regrole,
    database     text        NOT NULL DEFAULT current_database(),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at timestamptz
);
CREATE INDEX instances_created ON df.instances (created_at DESC, id);

CREATE TABLE df.nodes (
    instance_id  text        NOT NULL REFERENCES df.instances (id) ON DELETE CASCADE,
    id           text        NOT NULL,
    node_type    text        NOT NULL,
    query        text,
    result_name  text,
    parent_id    text,
    status       text        NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    result       jsonb,
    error        text,
    submitted_by regrole     NOT NULL DEFAULT (quote_ident(current_user))::regrole,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (instance_id, id)
);

CREATE TABLE df.vars (
    owner regrole NOT NULL DEFAULT (quote_ident(current_user))::regrole,
    name  text    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    value text,
    PRIMARY KEY (owner, name)
);

-- Each role sees and steers only what it started; the owner of these tables (the installer, whose role the
-- worker runs as) sees everything.
ALTER TABLE df.instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE df.nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE df.vars ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_instances ON df.instances
    USING (submitted_by = (quote_ident(current_user))::regrole)
    WITH CHECK (submitted_by = (quote_ident(current_user))::regrole);
CREATE POLICY own_nodes ON df.nodes
    USING (submitted_by = (quote_ident(current_user))::regrole)
    WITH CHECK (submitted_by = (quote_ident(current_user))::regrole);
CREATE POLICY own_vars ON df.vars
    USING (owner = (quote_ident(current_user))::regrole)
    WITH CHECK (owner = (quote_ident(current_user))::regrole);

-- submitted_by never changes.
CREATE FUNCTION df._keep_submitter() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NEW.submitted_by IS DISTINCT FROM OLD.submitted_by THEN
        RAISE EXCEPTION 'submitted_by cannot be changed' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$fn$;
CREATE TRIGGER keep_submitter BEFORE UPDATE ON df.instances FOR EACH ROW EXECUTE FUNCTION df._keep_submitter();
CREATE TRIGGER keep_submitter BEFORE UPDATE ON df.nodes FOR EACH ROW EXECUTE FUNCTION df._keep_submitter();

-- ------------------------------------------------------------------------------------------------ nodes
-- The node types a graph may hold.
CREATE FUNCTION df._node_types() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT ARRAY['SQL', 'THEN', 'IF', 'JOIN', 'LOOP', 'BREAK', 'RACE', 'SLEEP', 'WAIT_SCHEDULE', 'SIGNAL', 'WORKFLOW'];
$fn$;

-- The node a builder argument stands for: node text as it is, anything else a SQL node of that text.
CREATE FUNCTION df._node(val text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    j jsonb;
BEGIN
    IF val IS NULL THEN
        RAISE EXCEPTION 'a workflow node must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    BEGIN
        j := val::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        j := NULL;
    END;
    IF j IS NOT NULL AND jsonb_typeof(j) = 'object' AND j ? 'node_type' THEN
        IF NOT (j ->> 'node_type' = ANY (df._node_types())) THEN
            RAISE EXCEPTION 'Invalid durable function: Unknown node_type ''%''. Valid types: %',
                j ->> 'node_type', array_to_string(df._node_types(), ', ') USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN j;
    END IF;
    IF j IS NOT NULL AND jsonb_typeof(j) = 'object' AND j ? '_partial_if' THEN
        RAISE EXCEPTION 'Invalid if-then-else: a ?> expression needs its !> else branch'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('node_type', 'SQL', 'query', val);
END;
$fn$;

CREATE FUNCTION df.sql(query text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT jsonb_build_object('node_type', 'SQL', 'query', query)::text;
$fn$;

CREATE FUNCTION df.seq(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT jsonb_build_object('node_type', 'THEN', 'left_node', df._node(a), 'right_node', df._node(b))::text;
$fn$;

CREATE FUNCTION df.then(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT df.seq(a, b);
$fn$;

CREATE FUNCTION df.as(fut text, name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'df.as: result name ''%'' is not a valid identifier — must match [a-zA-Z_][a-zA-Z0-9_]*', name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN (df._node(fut) || jsonb_build_object('result_name', name))::text;
END;
$fn$;

CREATE FUNCTION df.as_op(fut text, name text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT df.as(fut, name);
$fn$;

CREATE FUNCTION df.join(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT jsonb_build_object('node_type', 'JOIN', 'left_node', df._node(a), 'right_node', df._node(b))::text;
$fn$;

CREATE FUNCTION df.join3(a text, b text, c text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT jsonb_build_object('node_type', 'JOIN', 'left_node', df._node(a), 'right_node', df._node(b),
                              'extra_nodes', jsonb_build_array(df._node(c)))::text;
$fn$;

CREATE FUNCTION df.if(condition text, then_branch text, else_branch text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT jsonb_build_object('node_type', 'IF', 'condition_node', df._node(condition),
                              'left_node', df._node(then_branch), 'right_node', df._node(else_branch))::text;
$fn$;

CREATE FUNCTION df.if_rows(result_name text, then_branch text, else_branch text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF result_name IS NULL OR result_name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'df.if_rows: result name ''%'' is not a valid identifier', result_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('node_type', 'IF',
                              'condition', jsonb_build_object('condition_type', 'result_has_rows',
                                                              'result_name', result_name),
                              'left_node', df._node(then_branch), 'right_node', df._node(else_branch))::text;
END;
$fn$;

CREATE FUNCTION df.if_then_op(condition text, then_branch text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT jsonb_build_object('_partial_if', true, 'condition', df._node(condition),
                              'then_branch', df._node(then_branch))::text;
$fn$;

CREATE FUNCTION df.if_else_op(partial_if text, else_branch text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    p jsonb;
BEGIN
    BEGIN
        p := partial_if::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        p := NULL;
    END;
    IF p IS NULL OR jsonb_typeof(p) <> 'object' OR NOT coalesce((p ->> '_partial_if')::boolean, false) THEN
        RAISE EXCEPTION 'Invalid if-then-else: left side of !> must be a ?> expression'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN df.if((p -> 'condition')::text, (p -> 'then_branch')::text, else_branch);
END;
$fn$;

CREATE FUNCTION df.loop(body text, condition text DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT (jsonb_build_object('node_type', 'LOOP', 'left_node', df._node(body))
            || CASE WHEN condition IS NULL THEN '{}'::jsonb
                    ELSE jsonb_build_object('condition_node', df._node(condition)) END)::text;
$fn$;

CREATE FUNCTION df.loop_prefix_op(body text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT df.loop(body);
$fn$;

CREATE FUNCTION df.break(value text DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT jsonb_build_object('node_type', 'BREAK', 'break_value', value)::text;
$fn$;

CREATE FUNCTION df.sleep(seconds bigint) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF seconds IS NULL OR seconds < 0 THEN
        RAISE EXCEPTION 'Sleep duration must be non-negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('node_type', 'SLEEP', 'seconds', seconds)::text;
END;
$fn$;

CREATE FUNCTION df.wait_for_signal(name text, timeout_seconds integer DEFAULT NULL) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'Signal name cannot be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timeout_seconds IS NOT NULL AND timeout_seconds <= 0 THEN
        RAISE EXCEPTION 'Timeout must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('node_type', 'SIGNAL', 'signal_name', name, 'timeout_seconds', timeout_seconds)::text;
END;
$fn$;

CREATE OPERATOR df.~> (LEFTARG = text, RIGHTARG = text, FUNCTION = df.seq);
CREATE OPERATOR df.|=> (LEFTARG = text, RIGHTARG = text, FUNCTION = df.as_op);
CREATE OPERATOR df.& (LEFTARG = text, RIGHTARG = text, FUNCTION = df.join);
CREATE OPERATOR df.?> (LEFTARG = text, RIGHTARG = text, FUNCTION = df.if_then_op);
CREATE OPERATOR df.!> (LEFTARG = text, RIGHTARG = text, FUNCTION = df.if_else_op);
CREATE OPERATOR df.@> (RIGHTARG = text, FUNCTION = df.loop_prefix_op);

-- ------------------------------------------------------------------------------------------------ start
-- Number every node of `node` (an id of 8 hex digits each, kept in the node as "node_id") and record it in
-- df.nodes; returns the numbered node.
CREATE FUNCTION df._number(instance text, node jsonb, parent text, INOUT counter integer, OUT numbered jsonb)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    nid text;
    child jsonb;
    extras jsonb := '[]';
    key text;
BEGIN
    counter := counter + 1;
    IF counter > 10000 THEN
        RAISE EXCEPTION 'Invalid durable function graph: it exceeds the maximum node count of 10000'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    nid := substr(md5(instance || ':' || counter::text), 1, 8);
    numbered := node || jsonb_build_object('node_id', nid);
    INSERT INTO df.nodes (instance_id, id, node_type, query, result_name, parent_id)
    VALUES (instance, nid, node ->> 'node_type', node ->> 'query', node ->> 'result_name', parent);
    FOREACH key IN ARRAY ARRAY['condition_node', 'left_node', 'right_node'] LOOP
        IF node ? key THEN
            SELECT n.counter, n.numbered INTO counter, child FROM df._number(instance, node -> key, nid, counter) AS n;
            numbered := numbered || jsonb_build_object(key, child);
        END IF;
    END LOOP;
    IF node ? 'extra_nodes' THEN
        FOR child IN SELECT value FROM jsonb_array_elements(node -> 'extra_nodes') LOOP
            SELECT n.counter, n.numbered INTO counter, child FROM df._number(instance, child, nid, counter) AS n;
            extras := extras || jsonb_build_array(child);
        END LOOP;
        numbered := numbered || jsonb_build_object('extra_nodes', extras);
    END IF;
END;
$fn$;

-- Starts Howdah's durable workflow for an instance the caller has just written (SECURITY DEFINER: callers
-- need no rights on Howdah's own schemas). Starting the same instance twice starts one workflow.
CREATE FUNCTION df._enqueue(instance text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM howdah.start_workflow('df', jsonb_build_object('instance_id', instance), workflow_id => 'df:' || instance);
END;
$fn$;
REVOKE ALL ON FUNCTION df._enqueue(text) FROM PUBLIC;

CREATE FUNCTION df.start(fut text, label text DEFAULT NULL, database text DEFAULT NULL,
                         transaction_mode text DEFAULT 'caller') RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    root jsonb := df._node(fut);
    instance text;
    numbered jsonb;
BEGIN
    IF lower(coalesce(transaction_mode, '')) NOT IN ('caller', 'new') THEN
        RAISE EXCEPTION 'invalid transaction_mode "%" for df.start(): expected ''caller'' or ''new''', transaction_mode
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lower(transaction_mode) = 'new' THEN
        RAISE EXCEPTION 'transaction_mode ''new'' is not supported yet: start the workflow in a transaction of its own'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF database IS NOT NULL AND database <> current_database() THEN
        IF NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = database) THEN
            RAISE EXCEPTION 'database "%" does not exist', database USING ERRCODE = 'invalid_catalog_name';
        END IF;
        RAISE EXCEPTION 'running a workflow in another database is not supported yet: call df.start in database "%"',
            database USING ERRCODE = 'feature_not_supported';
    END IF;
    IF root ->> 'node_type' = 'BREAK' THEN
        RAISE EXCEPTION 'Invalid durable function graph: df.break() outside a loop' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    instance := substr(md5(gen_random_uuid()::text), 1, 8);
    INSERT INTO df.instances (id, label, root_node, graph) VALUES (instance, label, '', '{}');
    SELECT n.numbered INTO numbered FROM df._number(instance, root, NULL, 0) AS n;
    UPDATE df.instances SET root_node = numbered ->> 'node_id', graph = numbered WHERE id = instance;
    PERFORM df._enqueue(instance);
    RETURN instance;
END;
$fn$;

-- ------------------------------------------------------------------------------------------- inspection
CREATE FUNCTION df.status(instance_id text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT i.status FROM df.instances i WHERE i.id = status.instance_id;
$fn$;

CREATE FUNCTION df.result(instance_id text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT i.result::text FROM df.instances i WHERE i.id = result.instance_id AND i.status = 'completed';
$fn$;

CREATE FUNCTION df.await_instance(instance_id text, timeout_seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_seconds);
    st text;
BEGIN
    LOOP
        SELECT i.status INTO st FROM df.instances i WHERE i.id = await_instance.instance_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'Instance not found: %', instance_id USING ERRCODE = 'no_data_found';
        END IF;
        IF st IN ('completed', 'failed', 'cancelled') THEN
            RETURN st;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'Timeout after %s waiting for instance %', timeout_seconds, instance_id
                USING ERRCODE = 'query_canceled', HINT = 'Check that a Howdah worker serves this database.';
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
END;
$fn$;

CREATE FUNCTION df.cancel(instance_id text, reason text DEFAULT 'Cancelled by user') RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    UPDATE df.instances i SET status = 'cancelled', error = reason, updated_at = clock_timestamp(),
                              completed_at = clock_timestamp()
     WHERE i.id = cancel.instance_id AND i.status NOT IN ('completed', 'failed', 'cancelled');
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM df.instances i WHERE i.id = cancel.instance_id) THEN
        RAISE EXCEPTION 'Instance not found or access denied: %', instance_id USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM df._cancel_workflow(instance_id);
    RETURN format('Instance %s cancelled: %s', instance_id, reason);
END;
$fn$;

-- Asks Howdah's workflow of an instance to stop (SECURITY DEFINER; only for an instance the caller can see).
CREATE FUNCTION df._cancel_workflow(instance text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM howdah.workflows w WHERE w.id = 'df:' || instance) THEN
        PERFORM howdah.cancel_workflow('df:' || instance);
    END IF;
END;
$fn$;
REVOKE ALL ON FUNCTION df._cancel_workflow(text) FROM PUBLIC;

CREATE FUNCTION df.signal(instance_id text, signal_name text, signal_data text DEFAULT '{}') RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    payload jsonb;
BEGIN
    IF signal_name IS NULL OR signal_name = '' THEN
        RAISE EXCEPTION 'Signal name cannot be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM df.instances i WHERE i.id = signal.instance_id) THEN
        RAISE EXCEPTION 'Instance not found or access denied: %', instance_id USING ERRCODE = 'no_data_found';
    END IF;
    BEGIN
        payload := coalesce(signal_data, 'null')::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        payload := to_jsonb(signal_data);  -- not JSON: sent as a JSON string
    END;
    PERFORM df._signal_workflow(instance_id, signal_name, payload);
    RETURN 'OK';
END;
$fn$;

-- Sends a signal to Howdah's workflow of an instance (SECURITY DEFINER; df.signal checks the caller sees it).
CREATE FUNCTION df._signal_workflow(instance text, signal_name text, payload jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM howdah.send_signal('df:' || instance, signal_name, payload);
END;
$fn$;
REVOKE ALL ON FUNCTION df._signal_workflow(text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION df.instance_nodes(instance_id_param text)
RETURNS TABLE (node_id text, node_type text, query text, result_name text, parent_id text, status text,
               result text, error text, updated_at timestamptz)
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT n.id, n.node_type, n.query, n.result_name, n.parent_id, n.status, n.result::text, n.error, n.updated_at
      FROM df.nodes n WHERE n.instance_id = instance_id_param ORDER BY n.id;
$fn$;

CREATE FUNCTION df.instance_info(instance_id text)
RETURNS TABLE (instance_id text, label text, status text, output text, error text, created_at timestamptz,
               completed_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT i.id, i.label, i.status, i.result::text, i.error, i.created_at, i.completed_at
      FROM df.instances i WHERE i.id = instance_info.instance_id;
$fn$;

CREATE FUNCTION df.list_instances(status_filter text DEFAULT NULL, limit_count integer DEFAULT 100,
                                  label_filter text DEFAULT NULL, after_cursor text DEFAULT NULL)
RETURNS TABLE (instance_id text, label text, status text, output text, created_at timestamptz,
               completed_at timestamptz, next_cursor text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    after_at timestamptz;
    after_id text;
BEGIN
    IF limit_count IS NULL OR limit_count < 1 OR limit_count > 1000 THEN
        RAISE EXCEPTION 'limit_count must be between 1 and 1000 (got %)', limit_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF after_cursor IS NOT NULL THEN
        BEGIN
            after_at := split_part(after_cursor, '|', 1)::timestamptz;
            after_id := split_part(after_cursor, '|', 2);
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'invalid after_cursor %', quote_literal(after_cursor) USING ERRCODE = 'invalid_parameter_value';
        END;
    END IF;
    RETURN QUERY
    WITH page AS (
        SELECT i.id, i.label, i.status, i.result::text AS output, i.created_at, i.completed_at
          FROM df.instances i
         WHERE (status_filter IS NULL OR i.status = status_filter)
           AND (label_filter IS NULL OR i.label = label_filter)
           AND (after_at IS NULL OR i.created_at < after_at OR (i.created_at = after_at AND i.id > after_id))
         ORDER BY i.created_at DESC, i.id
         LIMIT limit_count + 1
    ), numbered AS (
        SELECT p.*, row_number() OVER (ORDER BY p.created_at DESC, p.id) AS n FROM page p
    )
    SELECT x.id, x.label, x.status, x.output, x.created_at, x.completed_at,
           CASE WHEN x.n = limit_count AND EXISTS (SELECT 1 FROM numbered y WHERE y.n = limit_count + 1)
                THEN x.created_at::text || '|' || x.id END
      FROM numbered x WHERE x.n <= limit_count ORDER BY x.n;
END;
$fn$;

CREATE FUNCTION df.metrics()
RETURNS TABLE (total_instances bigint, running_instances bigint, completed_instances bigint,
               failed_instances bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT count(*), count(*) FILTER (WHERE status IN ('pending', 'running')),
           count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
      FROM df.instances;
$fn$;

-- ------------------------------------------------------------------------------------------ permissions
-- What a role needs to start and inspect its own workflows; the worker runs its SQL nodes as that role.
CREATE FUNCTION df.grant_usage(p_role text, include_http boolean DEFAULT false, with_grant boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    r regrole := p_role::regrole;
    g text := CASE WHEN with_grant THEN ' WITH GRANT OPTION' ELSE '' END;
BEGIN
    IF include_http THEN
        RAISE EXCEPTION 'include_http: HTTP nodes (df.http) are not available in Howdah''s df yet'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA df TO %s%s', r, g);
    EXECUTE format('GRANT SELECT, INSERT ON df.instances, df.nodes TO %s%s', r, g);
    EXECUTE format('GRANT UPDATE (status, error, updated_at, completed_at, root_node, graph) ON df.instances TO %s%s',
                   r, g);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON df.vars TO %s%s', r, g);
    EXECUTE format('GRANT EXECUTE ON FUNCTION df._enqueue(text), df._cancel_workflow(text), '
                   'df._signal_workflow(text, text, jsonb) TO %s%s', r, g);
    IF with_grant THEN  -- the role may pass usage on, as it was given
        EXECUTE format('GRANT EXECUTE ON FUNCTION df.grant_usage(text, boolean, boolean), df.revoke_usage(text), '
                       'df.metrics() TO %s', r);
    END IF;
END;
$fn$;

CREATE FUNCTION df.revoke_usage(p_role text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    r regrole := p_role::regrole;
BEGIN
    EXECUTE format('REVOKE ALL ON df.instances, df.nodes, df.vars FROM %s CASCADE', r);
    EXECUTE format('REVOKE EXECUTE ON FUNCTION df._enqueue(text), df._cancel_workflow(text), '
                   'df._signal_workflow(text, text, jsonb), df.grant_usage(text, boolean, boolean), '
                   'df.revoke_usage(text), df.metrics() FROM %s CASCADE', r);
    EXECUTE format('REVOKE USAGE ON SCHEMA df FROM %s CASCADE', r);
END;
$fn$;
REVOKE ALL ON FUNCTION df.grant_usage(text, boolean, boolean), df.revoke_usage(text), df.metrics() FROM PUBLIC;

-- pg_durable's deprecated name of df.await_instance, kept for scripts that use it.
CREATE FUNCTION df.wait_for_completion(instance_id text, timeout_seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    RAISE WARNING 'df.wait_for_completion() is deprecated; use df.await_instance()';
    RETURN df.await_instance(instance_id, timeout_seconds);
END;
$fn$;

-- Which df this is: pg_durable's API version it follows, and Howdah's.
CREATE FUNCTION df.version() RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT '0.2.5 (Howdah df, plain SQL)';
$fn$;

-- The durable workflow that runs instances, known before any worker registers it (a worker's registration
-- then names its own queue).
SELECT pgmq.create('howdah_workflows');
INSERT INTO howdah.workflow_types (name, queue_name) VALUES ('df', 'howdah_workflows') ON CONFLICT (name) DO NOTHING;
