-- Howdah's df schema, part 8: df.sleep takes fractions of a second (df.sleep(0.25)) — an extension of
-- pg_durable's whole seconds; a whole number makes the same node as before.

DROP FUNCTION df.sleep(bigint);

CREATE FUNCTION df.sleep(seconds double precision) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF seconds IS NULL OR seconds < 0 OR seconds = 'NaN' OR seconds = 'Infinity' THEN
        RAISE EXCEPTION 'Sleep duration must be non-negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('node_type', 'SLEEP', 'seconds',
                              CASE WHEN seconds = trunc(seconds) AND seconds < 1e15 THEN to_jsonb(seconds::bigint)
                                   ELSE to_jsonb(seconds) END)::text;
END;
$fn$;
