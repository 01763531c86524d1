-- Howdah's consumer settles handled messages in batches, and its next read shares the round trip.
-- Only PGMQ-shaped tables and PGMQ's own functions are used, so this works on any queue the pgmq API created.

-- In ONE statement (one transaction): delete (or archive, when `archive`) the handled messages `done`; make the
-- failed messages `released` visible again, each after its own delay (seconds) with its handler's error recorded
-- in its headers (key x-howdah-last-error, as pgmq.howdah_release does); then read up to `qty` messages with
-- visibility timeout `vt`, exactly as pgmq.read does. `qty` = 0 settles without reading.
CREATE FUNCTION pgmq.howdah_settle_and_read(
    queue_name text, done bigint[], archive boolean, released bigint[], delays integer[], errors text[],
    vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql AS $fn$
BEGIN
    IF done IS NULL OR released IS NULL OR delays IS NULL OR errors IS NULL THEN
        RAISE EXCEPTION 'done, released, delays and errors must not be NULL (use empty arrays)'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF cardinality(released) <> cardinality(delays) OR cardinality(released) <> cardinality(errors) THEN
        RAISE EXCEPTION 'released, delays and errors must have one entry per message'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(done) > 0 THEN
        IF archive THEN
            PERFORM pgmq.archive(queue_name, done);
        ELSE
            PERFORM pgmq.delete(queue_name, done);
        END IF;
    END IF;
    IF cardinality(released) > 0 THEN
        IF EXISTS (SELECT 1 FROM unnest(delays) AS d WHERE d IS NULL OR d < 0) THEN
            RAISE EXCEPTION 'delays must be non-negative numbers of seconds'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        EXECUTE format(
            $q$UPDATE pgmq.%I AS q
                  SET vt = clock_timestamp() + make_interval(secs => r.delay),
                      headers = CASE WHEN r.error IS NULL THEN q.headers
                                     ELSE coalesce(q.headers, '{}'::jsonb)
                                          || jsonb_build_object('x-howdah-last-error', left(r.error, 2000)) END
                 FROM unnest($1, $2, $3) AS r(id, delay, error)
                WHERE q.msg_id = r.id$q$,
            pgmq.format_table_name(queue_name, 'q'))
        USING released, delays, errors;
    END IF;
    IF qty IS NOT NULL AND qty > 0 THEN
        RETURN QUERY SELECT * FROM pgmq.read(queue_name, vt, qty);
    END IF;
END;
$fn$;
