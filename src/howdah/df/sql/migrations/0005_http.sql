-- Howdah's df schema, part 5: HTTP nodes, df.http and df.http_multipart, with pg_durable 0.2.5's signatures.
-- Calling them is a privilege of its own (EXECUTE is not PUBLIC; df.grant_usage(role, include_http => true)
-- gives it), and the worker checks it again when it runs the node, for the role that started the instance, so a
-- node written by hand into df.start's JSON is refused the same way. Where a request may go is the worker's
-- egress policy (private and internal addresses refused unless allowed; see the README).

CREATE OR REPLACE FUNCTION df._node_types() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT ARRAY['SQL', 'THEN', 'IF', 'JOIN', 'LOOP', 'BREAK', 'RACE', 'SLEEP', 'WAIT_SCHEDULE', 'SIGNAL', 'WORKFLOW',
                 'HTTP', 'HTTP_MULTIPART'];
$fn$;

-- The checks both builders share; raises on the first problem.
CREATE FUNCTION df._http_check(fn text, url text, method text, headers jsonb, timeout_seconds integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF url IS NULL OR btrim(url) = '' THEN
        RAISE EXCEPTION '%: a URL is required', fn USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lower(btrim(url)) !~ '^(https?://|\$|\{)' THEN  -- a $binding or {variable} may hold the whole URL
        RAISE EXCEPTION 'Blocked: unsupported URL scheme. Only http and https is allowed.'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('%s was given %s', fn, split_part(url, ':', 1));
    END IF;
    IF method IS NULL OR upper(method) NOT IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS') THEN
        RAISE EXCEPTION '%: unsupported HTTP method ''%''', fn, method
            USING ERRCODE = 'invalid_parameter_value', HINT = 'One of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS.';
    END IF;
    IF headers IS NOT NULL AND (jsonb_typeof(headers) <> 'object'
                                OR EXISTS (SELECT 1 FROM jsonb_each(headers) h WHERE jsonb_typeof(h.value) <> 'string')) THEN
        RAISE EXCEPTION '%: headers must be a JSON object of strings', fn USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timeout_seconds IS NULL OR timeout_seconds < 1 OR timeout_seconds > 3600 THEN
        RAISE EXCEPTION '%: timeout_seconds must be between 1 and 3600, got %', fn, timeout_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$fn$;

CREATE FUNCTION df.http(url text, method text DEFAULT 'POST', body text DEFAULT NULL, headers jsonb DEFAULT NULL,
                        timeout_seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM df._http_check('df.http', url, method, headers, timeout_seconds);
    RETURN jsonb_build_object('node_type', 'HTTP', 'query', jsonb_build_object(
        'url', url, 'method', upper(method), 'body', body, 'headers', headers,
        'timeout_seconds', timeout_seconds)::text)::text;
END;
$fn$;

CREATE FUNCTION df.http_multipart(url text, method text DEFAULT 'POST', parts jsonb DEFAULT NULL,
                                  headers jsonb DEFAULT NULL, timeout_seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM df._http_check('df.http_multipart', url, method, headers, timeout_seconds);
    IF parts IS NULL OR jsonb_typeof(parts) <> 'array' OR jsonb_array_length(parts) = 0 THEN
        RAISE EXCEPTION 'df.http_multipart: parts must be a non-empty JSON array of objects'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(parts) p
                WHERE jsonb_typeof(p) <> 'object' OR coalesce(p ->> 'name', '') = '' OR NOT p ? 'data_b64') THEN
        RAISE EXCEPTION 'df.http_multipart: every part needs a ''name'' and ''data_b64'' (its content in base64)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('node_type', 'HTTP_MULTIPART', 'query', jsonb_build_object(
        'url', url, 'method', upper(method), 'parts', parts, 'headers', headers,
        'timeout_seconds', timeout_seconds)::text)::text;
END;
$fn$;
REVOKE ALL ON FUNCTION df.http(text, text, text, jsonb, integer),
                       df.http_multipart(text, text, jsonb, jsonb, integer) FROM PUBLIC;

-- include_http now gives the HTTP builders (and the worker runs a role's HTTP nodes only while it holds them).
CREATE OR REPLACE FUNCTION df.grant_usage(p_role text, include_http boolean DEFAULT false,
                                          with_grant boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    r regrole := p_role::regrole;
    g text := CASE WHEN with_grant THEN ' WITH GRANT OPTION' ELSE '' END;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA df TO %s%s', r, g);
    EXECUTE format('GRANT SELECT, INSERT ON df.instances, df.nodes TO %s%s', r, g);
    EXECUTE format('GRANT UPDATE (status, error, updated_at, completed_at, root_node, graph) ON df.instances TO %s%s',
                   r, g);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON df.vars TO %s%s', r, g);
    EXECUTE format('GRANT EXECUTE ON FUNCTION df._enqueue(text), df._cancel_workflow(text), '
                   'df._signal_workflow(text, text, jsonb) TO %s%s', r, g);
    IF include_http THEN
        EXECUTE format('GRANT EXECUTE ON FUNCTION df.http(text, text, text, jsonb, integer), '
                       'df.http_multipart(text, text, jsonb, jsonb, integer) TO %s%s', r, g);
    ELSIF has_function_privilege(r::oid, 'df.http(text, text, text, jsonb, integer)', 'EXECUTE') THEN
        RAISE WARNING 'role % still has EXECUTE on df.http() through another grant', r
            USING HINT = 'REVOKE EXECUTE ON FUNCTION df.http(text, text, text, jsonb, integer) FROM the role or PUBLIC.';
    END IF;
    IF with_grant THEN  -- the role may pass usage on, as it was given
        EXECUTE format('GRANT EXECUTE ON FUNCTION df.grant_usage(text, boolean, boolean), df.revoke_usage(text), '
                       'df.metrics() TO %s', r);
    END IF;
END;
$fn$;

CREATE OR REPLACE FUNCTION df.revoke_usage(p_role text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    r regrole := p_role::regrole;
BEGIN
    EXECUTE format('REVOKE ALL ON df.instances, df.nodes, df.vars FROM %s CASCADE', r);
    EXECUTE format('REVOKE EXECUTE ON FUNCTION df._enqueue(text), df._cancel_workflow(text), '
                   'df._signal_workflow(text, text, jsonb), df.grant_usage(text, boolean, boolean), '
                   'df.revoke_usage(text), df.metrics(), df.http(text, text, text, jsonb, integer), '
                   'df.http_multipart(text, text, jsonb, jsonb, integer) FROM %s CASCADE', r);
    EXECUTE format('REVOKE USAGE ON SCHEMA df FROM %s CASCADE', r);
END;
$fn$;

-- What the worker asks before it runs an HTTP node: may `role` still call `fn`, and pg_durable's allow-list
-- setting as the worker's session sees it (NULL when unset).
CREATE FUNCTION df._http_access(p_role text, fn text) RETURNS TABLE (allowed boolean, allowed_domains text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT coalesce((SELECT has_function_privilege(r.oid, fn::regprocedure, 'EXECUTE')
                       FROM pg_roles r WHERE r.rolname = p_role), false),
           current_setting('pg_durable.http_allowed_domains', true);
$fn$;
REVOKE ALL ON FUNCTION df._http_access(text, text) FROM PUBLIC;
