-- Howdah's df schema, part 14: df.instance_info, df.list_instances and df.metrics with pg_durable 0.2.5's columns.
--
-- df.instance_info(instance_id) returns pg_durable's seven columns: instance_id, label, function_name,
-- function_version, current_execution_id (bigint), status, output — instead of Howdah's earlier instance_id,
-- label, status, output, error, created_at, completed_at (the error and times stay in df.instances).
-- function_name is the durable workflow that runs instances ('df'), function_version '1.0.0' (that workflow has one
-- version; 1.0.0 is what pg_durable's engine reports by default), current_execution_id 1 once the instance has
-- started (Howdah never continues an instance as new) and 0 while it is pending. An instance the caller cannot
-- see gives no row. df.list_instances's execution_count is bigint, as pg_durable declares it (it was integer).
-- df.metrics() gets pg_durable's six columns (below).

DROP FUNCTION df.instance_info(text);

CREATE FUNCTION df.instance_info(instance_id text)
RETURNS TABLE (instance_id text, label text, function_name text, function_version text, current_execution_id bigint,
               status text, output text)
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT i.id, i.label, 'df'::text, '1.0.0'::text, CASE WHEN i.status = 'pending' THEN 0 ELSE 1 END::bigint,
           i.status, i.result::text
      FROM df.instances i WHERE i.id = instance_info.instance_id;
$fn$;

DROP FUNCTION df.list_instances(text, integer);
DROP FUNCTION df.list_instances(text, integer, text, text);

CREATE FUNCTION df.list_instances(status_filter text, limit_count integer, label_filter text,
                                  after_cursor text DEFAULT NULL)
RETURNS TABLE (instance_id text, label text, function_name text, status text, execution_count bigint,
               output text, created_at timestamptz, completed_at timestamptz, next_cursor text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    after_at timestamptz;
    after_id text;
BEGIN
    IF limit_count IS NULL OR limit_count < 1 OR limit_count > 1000 THEN
        RAISE EXCEPTION 'limit_count must be between 1 and 1000 (got %)', limit_count
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Page through larger sets with the paginated form and its next_cursor.';
    END IF;
    IF after_cursor IS NOT NULL THEN
        BEGIN
            after_at := split_part(after_cursor, '|', 1)::timestamptz;
            after_id := split_part(after_cursor, '|', 2);
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'invalid after_cursor %', quote_literal(after_cursor) USING ERRCODE = 'invalid_parameter_value';
        END;
        IF after_id !~ '^[0-9a-f]{8}$' THEN
            RAISE EXCEPTION 'invalid after_cursor %', quote_literal(after_cursor) USING ERRCODE = 'invalid_parameter_value';
        END IF;
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
    ), cursor AS (  -- the last row shown, when there is a row after it
        SELECT c.created_at::text || '|' || c.id AS value FROM numbered c
         WHERE c.n = limit_count AND EXISTS (SELECT 1 FROM numbered y WHERE y.n = limit_count + 1)
    )
    SELECT x.id, x.label, 'df'::text, x.status, CASE WHEN x.status = 'pending' THEN 0 ELSE 1 END::bigint, x.output,
           x.created_at, CASE WHEN x.status = 'completed' THEN x.completed_at END, (SELECT c.value FROM cursor c)
      FROM numbered x WHERE x.n <= limit_count ORDER BY x.n;
END;
$fn$;

CREATE FUNCTION df.list_instances(status_filter text DEFAULT NULL, limit_count integer DEFAULT 100)
RETURNS TABLE (instance_id text, label text, function_name text, status text, execution_count bigint, output text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT l.instance_id, l.label, l.function_name, l.status, l.execution_count, l.output
      FROM df.list_instances(status_filter, limit_count, NULL::text) AS l;
$fn$;

-- df.metrics() gains pg_durable's last two columns, total_executions (instances that have started: one execution
-- each) and total_events (nodes that have run, as df.instance_executions counts them). The roles that could call
-- it keep that right (a function's grants go with it when it is dropped).
CREATE TEMPORARY TABLE df_metrics_grantees ON COMMIT DROP AS
    SELECT a.grantee::regrole AS grantee, a.is_grantable
      FROM pg_proc p, aclexplode(p.proacl) AS a
     WHERE p.oid = 'df.metrics()'::regprocedure AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0
       AND a.grantee <> p.proowner;

DROP FUNCTION df.metrics();

CREATE FUNCTION df.metrics()
RETURNS TABLE (total_instances bigint, running_instances bigint, completed_instances bigint,
               failed_instances bigint, total_executions bigint, total_events bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT count(*), count(*) FILTER (WHERE i.status IN ('pending', 'running')),
           count(*) FILTER (WHERE i.status = 'completed'), count(*) FILTER (WHERE i.status = 'failed'),
           count(*) FILTER (WHERE i.status <> 'pending'),
           (SELECT count(*) FROM df.nodes n WHERE n.status <> 'pending')
      FROM df.instances i;
$fn$;
REVOKE ALL ON FUNCTION df.metrics() FROM PUBLIC;

DO $grants$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT * FROM df_metrics_grantees LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION df.metrics() TO %s%s', g.grantee,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END;
$grants$;
