-- Howdah queue, part 14: NULL messages, as PGMQ 1.13 stores them.
--
-- PGMQ's send and send_batch store a NULL message and read it back as NULL (its own regression suite sends
-- one); 0009 and 0010 refused it. A NULL message is a value some producers use as a bare signal, so Howdah now
-- stores it as PGMQ does: send with a NULL msg, and send_batch with NULL elements in msgs. send_topic still
-- refuses a NULL msg, with PGMQ's own error ('msg cannot be NULL'); a NULL or empty msgs, and a msgs of more
-- than one dimension, are still refused.
--
-- The functions are those of 0010 (send) and 0009 (the batch checks) but for the NULL checks removed.

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, NULL, clock_timestamp());
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, headers, clock_timestamp());
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'delay', delay); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, NULL, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, NULL, delay);
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'delay', delay); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, headers, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, headers, delay);
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq._howdah_check_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF coalesce(cardinality(msgs), 0) = 0 THEN
        RAISE EXCEPTION 'msgs cannot be NULL or empty'
            USING ERRCODE = 'raise_exception',
                  DETAIL = CASE WHEN msgs IS NULL THEN 'msgs is NULL.' ELSE 'msgs is an empty array.' END;
    END IF;
    IF coalesce(array_length(headers, 1), 0) <> array_length(msgs, 1) AND headers IS NOT NULL THEN
        RAISE EXCEPTION 'headers array length (%) must match msgs array length (%)',
            coalesce(array_length(headers, 1), 0), array_length(msgs, 1)
            USING ERRCODE = 'raise_exception',
                  HINT = 'Pass one header object (or NULL) per message, or NULL instead of the headers array.';
    END IF;
    IF array_ndims(msgs) <> 1 OR array_ndims(headers) <> 1 THEN
        PERFORM pgmq._howdah_check_name_characters(queue_name);
        RAISE EXCEPTION 'msgs and headers must be one-dimensional arrays' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$fn$;
