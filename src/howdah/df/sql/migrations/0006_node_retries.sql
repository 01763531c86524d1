-- Howdah's df schema, part 6: a failing SQL or HTTP node retried, with pg_durable 0.2.7's df.start arguments
-- (max_attempts, max_backoff, on_failure) — an extension of 0.2.5, whose behaviour stays the default: one attempt,
-- and a node that fails fails the instance. Retried: a statement's error, a network error or a 5xx answer; never
-- a node that cannot be built (a missing $binding, a request the egress policy refuses, a missing privilege).
-- The waits double from 1 s up to max_backoff. on_failure => 'continue' abandons the rest of the loop iteration
-- a node failed in and starts the next one (outside a loop the instance fails either way).

ALTER TABLE df.instances
    ADD COLUMN max_attempts integer  NOT NULL DEFAULT 1 CHECK (max_attempts BETWEEN 1 AND 100),
    ADD COLUMN max_backoff  interval NOT NULL DEFAULT '16 seconds'
                            CHECK (max_backoff BETWEEN interval '1 second' AND interval '1 hour'),
    ADD COLUMN on_failure   text     NOT NULL DEFAULT 'fail' CHECK (on_failure IN ('fail', 'continue'));

DROP FUNCTION df.start(text, text, text, text);

CREATE FUNCTION df.start(fut text, label text DEFAULT NULL, database text DEFAULT NULL,
                         transaction_mode text DEFAULT 'caller', max_attempts integer DEFAULT 1,
                         max_backoff interval DEFAULT '16 seconds', on_failure text DEFAULT 'fail') RETURNS text
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
    IF max_attempts IS NULL OR max_attempts < 1 OR max_attempts > 100 THEN
        RAISE EXCEPTION 'invalid max_attempts % for df.start(): expected 1 to 100', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_backoff IS NULL OR max_backoff < interval '1 second' OR max_backoff > interval '1 hour' THEN
        RAISE EXCEPTION 'invalid max_backoff % for df.start(): expected 1 second to 1 hour', max_backoff
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lower(coalesce(on_failure, '')) NOT IN ('fail', 'continue') THEN
        RAISE EXCEPTION 'invalid on_failure "%" for df.start(): expected ''fail'' or ''continue''', on_failure
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lower(transaction_mode) = 'new' THEN
        RAISE EXCEPTION 'transaction_mode ''new'' is not supported: a plain-SQL install cannot commit apart from the caller'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Call df.start on a connection of its own (in autocommit) to have it survive a rollback.';
    END IF;
    IF database IS NOT NULL AND database <> current_database() THEN  -- its SQL nodes run there (part 9)
        IF NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = database) THEN
            RAISE EXCEPTION 'database "%" does not exist', database USING ERRCODE = 'invalid_catalog_name';
        END IF;
        IF NOT has_database_privilege(current_user, database, 'CONNECT') THEN
            RAISE EXCEPTION 'permission denied for database %', database USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF root ->> 'node_type' = 'BREAK' THEN
        RAISE EXCEPTION 'Invalid durable function graph: df.break() outside a loop' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    instance := substr(md5(gen_random_uuid()::text), 1, 8);
    INSERT INTO df.instances (id, label, root_node, graph, database, max_attempts, max_backoff, on_failure)
    VALUES (instance, label, '', '{}', coalesce(database, current_database()), max_attempts, max_backoff,
            lower(on_failure));
    SELECT n.numbered INTO numbered FROM df._number(instance, root, NULL, 0) AS n;
    UPDATE df.instances SET root_node = numbered ->> 'node_id', graph = numbered WHERE id = instance;
    PERFORM df._enqueue(instance);
    RETURN instance;
END;
$fn$;

-- Numbering a graph is linear in its nodes: a join's extra branches are collected in an array (appended in
-- place), not by concatenating JSON arrays (quadratic: 12 s for a 10,000-branch join before, well under 1 s now).
CREATE OR REPLACE FUNCTION df._number(instance text, node jsonb, parent text, INOUT counter integer,
                                      OUT numbered jsonb)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    nid text;
    child jsonb;
    extras jsonb[] := '{}';
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
            extras := array_append(extras, child);
        END LOOP;
        numbered := numbered || jsonb_build_object('extra_nodes', to_jsonb(extras));
    END IF;
END;
$fn$;
