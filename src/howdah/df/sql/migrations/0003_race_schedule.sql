-- Howdah's df schema, part 3: races (df.race, a | b) and df.wait_for_schedule.
--
-- A race runs its two branches at once; the first to finish decides it (its result is the race's, or its failure
-- the race's failure) and the other is cancelled: `df.sleep(5) | 'SELECT slow()'` is a timeout. wait_for_schedule
-- waits until the next tick of a five-field cron expression (UTC), checked here for its shape and by the worker
-- for its meaning.

CREATE FUNCTION df.race(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT jsonb_build_object('node_type', 'RACE', 'left_node', df._node(a), 'right_node', df._node(b))::text;
$fn$;

CREATE OPERATOR df.| (LEFTARG = text, RIGHTARG = text, FUNCTION = df.race);

CREATE FUNCTION df.wait_for_schedule(cron_expr text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF cron_expr IS NULL OR array_length(regexp_split_to_array(btrim(cron_expr), '\s+'), 1) <> 5
       OR btrim(cron_expr) !~ '^[0-9A-Za-z*,/?#LW-]+(\s+[0-9A-Za-z*,/?#LW-]+){4}$' THEN
        RAISE EXCEPTION 'Invalid cron expression ''%'': five fields (minute hour day month weekday) expected', cron_expr
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('node_type', 'WAIT_SCHEDULE', 'cron_expr', btrim(cron_expr))::text;
END;
$fn$;
