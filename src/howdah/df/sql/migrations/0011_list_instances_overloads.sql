-- Howdah's df schema, part 11: df.list_instances as pg_durable documents it — two overloads told apart by their
-- number of arguments. Basic (0-2 arguments): instance_id, label, function_name, status, execution_count, output.
-- Paginated (3-4 arguments: status_filter, limit_count, label_filter[, after_cursor]): those six plus created_at,
-- completed_at (NULL unless completed) and next_cursor, the same on every row of a page and NULL on the last page.
-- function_name is the durable workflow that runs instances ('df'); execution_count is 1 once an instance has
-- started (Howdah runs an instance as one execution, never continued as new), 0 while it is pending.

DROP FUNCTION df.list_instances(text, integer, text, text);

CREATE FUNCTION df.list_instances(status_filter text, limit_count integer, label_filter text,
                                  after_cursor text DEFAULT NULL)
RETURNS TABLE (instance_id text, label text, function_name text, status text, execution_count integer,
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
    SELECT x.id, x.label, 'df'::text, x.status, CASE WHEN x.status = 'pending' THEN 0 ELSE 1 END, x.output,
           x.created_at, CASE WHEN x.status = 'completed' THEN x.completed_at END, (SELECT c.value FROM cursor c)
      FROM numbered x WHERE x.n <= limit_count ORDER BY x.n;
END;
$fn$;

CREATE FUNCTION df.list_instances(status_filter text DEFAULT NULL, limit_count integer DEFAULT 100)
RETURNS TABLE (instance_id text, label text, function_name text, status text, execution_count integer, output text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT l.instance_id, l.label, l.function_name, l.status, l.execution_count, l.output
      FROM df.list_instances(status_filter, limit_count, NULL::text) AS l;
$fn$;
