-- Howdah queue, part 2: the message API (send, send_batch, read, read_with_poll, pop, archive, delete, set_vt).
--
-- Each public overload checks its arguments and calls one compiled kernel (0001) directly: no chains of
-- overload -> overload, no per-call catalog look-ups. Bad arguments raise 22004 (null_value_not_allowed) or
-- 22023 (invalid_parameter_value) with the parameter's name; a missing queue raises 42P01 (undefined_table).
--
-- Deliberate differences from PGMQ 1.13 (PGMQ accepts these and then misbehaves or fails with a raw error):
-- NULL messages, NULL/negative delays, NULL ids, NULL/negative vt and qty are rejected. read_with_poll always
-- reads at least once, even with max_poll_seconds = 0.

CREATE FUNCTION pgmq._howdah_null(parameter text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE EXCEPTION '% must not be NULL', parameter USING ERRCODE = 'null_value_not_allowed';
END;
$fn$;

CREATE FUNCTION pgmq._howdah_negative(parameter text, value bigint)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE EXCEPTION '% must not be negative (got %)', parameter, value USING ERRCODE = 'invalid_parameter_value';
END;
$fn$;

-- msgs must be a non-empty, one-dimensional array without NULLs; headers, when given, must match it in length.
CREATE FUNCTION pgmq._howdah_check_batch(msgs jsonb[], headers jsonb[])
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    at integer;
BEGIN
    IF msgs IS NULL THEN
        PERFORM pgmq._howdah_null('msgs');
    END IF;
    IF cardinality(msgs) = 0 THEN
        RAISE EXCEPTION 'msgs must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_ndims(msgs) <> 1 OR array_ndims(headers) <> 1 THEN
        RAISE EXCEPTION 'msgs and headers must be one-dimensional arrays' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    at := array_position(msgs, NULL);
    IF at IS NOT NULL THEN
        RAISE EXCEPTION 'msgs must not contain NULL (element % is NULL)', at USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF headers IS NOT NULL AND cardinality(headers) <> cardinality(msgs) THEN
        RAISE EXCEPTION 'headers has % elements but msgs has %; they must have the same length',
            cardinality(headers), cardinality(msgs)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- send
------------------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null('msg'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, NULL, clock_timestamp());
END;
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null('msg'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, headers, clock_timestamp());
END;
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null('msg'); END IF;
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative('delay', delay); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, NULL, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null('msg'); END IF;
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, NULL, delay);
END;
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null('msg'); END IF;
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative('delay', delay); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, headers, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null('msg'); END IF;
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, headers, delay);
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- send_batch (ids come back in the order of msgs)
------------------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(msgs, NULL);
    RETURN QUERY SELECT pgmq._howdah_k_send_many(queue_name, msgs, NULL, clock_timestamp());
END;
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(msgs, headers);
    RETURN QUERY SELECT pgmq._howdah_k_send_many(queue_name, msgs, headers, clock_timestamp());
END;
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(msgs, NULL);
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative('delay', delay); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_send_many(
        queue_name, msgs, NULL, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(msgs, NULL);
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_send_many(queue_name, msgs, NULL, delay);
END;
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(msgs, headers);
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative('delay', delay); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_send_many(
        queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(msgs, headers);
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_send_many(queue_name, msgs, headers, delay);
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- read, read_with_poll, pop
------------------------------------------------------------------------------------------------------------

-- Reads with a JSON containment filter: rare, and its best plan depends on the filter, so it stays dynamic.
CREATE FUNCTION pgmq._howdah_read_where(
    queue_name text, vt integer, qty integer, conditional jsonb, read_at timestamp with time zone
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH r AS (UPDATE %1$s AS m SET read_ct = m.read_ct + 1, last_read_at = $4, '
        'vt = $4 + make_interval(secs => $2) '
        'WHERE m.msg_id = ANY (ARRAY(SELECT c.msg_id FROM %1$s AS c WHERE c.vt <= $4 AND c.message @> $5 '
        'ORDER BY c.msg_id LIMIT $3 FOR UPDATE SKIP LOCKED)) '
        'RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers) '
        'SELECT r.msg_id, r.read_ct, r.enqueued_at, r.last_read_at, r.vt, r.message, r.headers '
        'FROM r ORDER BY r.msg_id',
        (pgmq._howdah_resolve(queue_name)).q_rel)
        USING queue_name, vt, qty, read_at, conditional;
END;
$fn$;

CREATE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF vt IS NULL THEN PERFORM pgmq._howdah_null('vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative('vt', vt); END IF;
    IF qty IS NULL THEN PERFORM pgmq._howdah_null('qty'); END IF;
    IF qty < 0 THEN PERFORM pgmq._howdah_negative('qty', qty); END IF;
    IF conditional IS NULL OR conditional = '{}' THEN
        RETURN QUERY SELECT * FROM pgmq._howdah_k_read(queue_name, vt, qty, clock_timestamp());
    ELSE
        RETURN QUERY SELECT * FROM pgmq._howdah_read_where(queue_name, vt, qty, conditional, clock_timestamp());
    END IF;
END;
$fn$;

-- Polls until at least one message arrives or max_poll_seconds pass. Each attempt is a new statement, so it
-- sees messages committed meanwhile (under READ COMMITTED).
CREATE FUNCTION pgmq.read_with_poll(
    queue_name text,
    vt integer,
    qty integer,
    max_poll_seconds integer DEFAULT 5,
    poll_interval_ms integer DEFAULT 100,
    conditional jsonb DEFAULT '{}'
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    deadline timestamp with time zone;
    plain boolean := conditional IS NULL OR conditional = '{}';
BEGIN
    IF vt IS NULL THEN PERFORM pgmq._howdah_null('vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative('vt', vt); END IF;
    IF qty IS NULL THEN PERFORM pgmq._howdah_null('qty'); END IF;
    IF qty < 0 THEN PERFORM pgmq._howdah_negative('qty', qty); END IF;
    IF max_poll_seconds IS NULL THEN PERFORM pgmq._howdah_null('max_poll_seconds'); END IF;
    IF max_poll_seconds < 0 THEN PERFORM pgmq._howdah_negative('max_poll_seconds', max_poll_seconds); END IF;
    IF poll_interval_ms IS NULL THEN PERFORM pgmq._howdah_null('poll_interval_ms'); END IF;
    IF poll_interval_ms < 0 THEN PERFORM pgmq._howdah_negative('poll_interval_ms', poll_interval_ms); END IF;
    deadline := clock_timestamp() + make_interval(secs => max_poll_seconds);
    LOOP
        IF plain THEN
            RETURN QUERY SELECT * FROM pgmq._howdah_k_read(queue_name, vt, qty, clock_timestamp());
        ELSE
            RETURN QUERY SELECT * FROM pgmq._howdah_read_where(queue_name, vt, qty, conditional, clock_timestamp());
        END IF;
        EXIT WHEN FOUND OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(least(poll_interval_ms / 1000.0, extract(epoch FROM deadline - clock_timestamp())));
    END LOOP;
END;
$fn$;

-- Reads and deletes in one step (at-most-once delivery).
CREATE FUNCTION pgmq.pop(queue_name text, qty integer DEFAULT 1)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF qty IS NULL THEN PERFORM pgmq._howdah_null('qty'); END IF;
    IF qty < 0 THEN PERFORM pgmq._howdah_negative('qty', qty); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_pop(queue_name, qty, clock_timestamp());
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- archive, delete
------------------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_id IS NULL THEN PERFORM pgmq._howdah_null('msg_id'); END IF;
    RETURN pgmq._howdah_k_archive_one(queue_name, msg_id);
END;
$fn$;

CREATE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_ids IS NULL THEN PERFORM pgmq._howdah_null('msg_ids'); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_archive_many(queue_name, msg_ids);
END;
$fn$;

CREATE FUNCTION pgmq."delete"(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_id IS NULL THEN PERFORM pgmq._howdah_null('msg_id'); END IF;
    RETURN pgmq._howdah_k_delete_one(queue_name, msg_id);
END;
$fn$;

CREATE FUNCTION pgmq."delete"(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_ids IS NULL THEN PERFORM pgmq._howdah_null('msg_ids'); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_delete_many(queue_name, msg_ids);
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- set_vt: make messages visible again at a time (timestamptz) or after some seconds (integer)
------------------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_id IS NULL THEN PERFORM pgmq._howdah_null('msg_id'); END IF;
    IF vt IS NULL THEN PERFORM pgmq._howdah_null('vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative('vt', vt); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_set_vt_one(
        queue_name, msg_id, clock_timestamp() + make_interval(secs => vt));
END;
$fn$;

CREATE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt timestamp with time zone)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_id IS NULL THEN PERFORM pgmq._howdah_null('msg_id'); END IF;
    IF vt IS NULL THEN PERFORM pgmq._howdah_null('vt'); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_set_vt_one(queue_name, msg_id, vt);
END;
$fn$;

CREATE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_ids IS NULL THEN PERFORM pgmq._howdah_null('msg_ids'); END IF;
    IF vt IS NULL THEN PERFORM pgmq._howdah_null('vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative('vt', vt); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_set_vt_many(
        queue_name, msg_ids, clock_timestamp() + make_interval(secs => vt));
END;
$fn$;

CREATE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt timestamp with time zone)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_ids IS NULL THEN PERFORM pgmq._howdah_null('msg_ids'); END IF;
    IF vt IS NULL THEN PERFORM pgmq._howdah_null('vt'); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_set_vt_many(queue_name, msg_ids, vt);
END;
$fn$;
