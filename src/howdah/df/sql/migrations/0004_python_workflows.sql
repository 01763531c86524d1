-- Howdah's df schema, part 4: a graph may call a Python workflow registered with Howdah (df.workflow) and wait
-- for its result — an extension of pg_durable's API. The worker runs it as a child workflow, with the worker's
-- own rights, so calling one is a privilege the installer grants per workflow and role (df.allow_workflow);
-- without it the node fails.

CREATE TABLE df.callable_workflows (
    workflow_name text    NOT NULL,
    grantee       regrole NOT NULL,
    PRIMARY KEY (workflow_name, grantee)
);

-- Lets `role` call the Python workflow `name` from its graphs (the installer's to give: EXECUTE is not PUBLIC).
CREATE FUNCTION df.allow_workflow(name text, p_role text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $fn$
    INSERT INTO df.callable_workflows VALUES (name, p_role::regrole) ON CONFLICT DO NOTHING;
$fn$;

CREATE FUNCTION df.disallow_workflow(name text, p_role text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $fn$
    DELETE FROM df.callable_workflows c WHERE c.workflow_name = name AND c.grantee = p_role::regrole;
$fn$;
REVOKE ALL ON FUNCTION df.allow_workflow(text, text), df.disallow_workflow(text, text) FROM PUBLIC;

CREATE FUNCTION df.workflow(name text, args text DEFAULT '{}') RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'df.workflow: a workflow name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('node_type', 'WORKFLOW', 'workflow_name', name, 'args', coalesce(args, '{}'))::text;
END;
$fn$;
