-- Howdah's additions for its consumer: release a failed message with its error, and dead-letter messages.
-- They only use PGMQ-shaped tables (pgmq.q_<name>), so they work on any queue the pgmq API created.

-- Make a message visible again after `delay` seconds and record the handler's error in its headers
-- (key x-howdah-last-error), so the dead-letter reason can name the last failure. Returns false when the
-- message is gone (already deleted or archived by someone else).
CREATE FUNCTION pgmq.howdah_release(queue_name text, msg_id bigint, delay integer, error text)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    found_id bigint;
BEGIN
    IF delay IS NULL OR delay < 0 THEN
        RAISE EXCEPTION 'delay must be a non-negative number of seconds, got %', delay
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format(
        $q$UPDATE pgmq.%I
              SET vt = clock_timestamp() + make_interval(secs => $2),
                  headers = CASE WHEN $3 IS NULL THEN headers
                                 ELSE coalesce(headers, '{}'::jsonb)
                                      || jsonb_build_object('x-howdah-last-error', $3) END
            WHERE msg_id = $1
        RETURNING msg_id$q$,
        pgmq.format_table_name(queue_name, 'q'))
    INTO found_id
    USING msg_id, delay, left(error, 2000);
    RETURN found_id IS NOT NULL;
END;
$fn$;

-- Atomically move messages from `queue_name` to `dlq_name`: each copy keeps its body and headers and gains
-- `x-howdah-dead-letter` = {reason, source_queue, source_msg_id, read_ct, enqueued_at, dead_lettered_at}.
-- Returns the new msg_ids in the dead-letter queue.
CREATE FUNCTION pgmq.howdah_dead_letter(queue_name text, msg_ids bigint[], dlq_name text, reason text)
RETURNS SETOF bigint
LANGUAGE plpgsql AS $fn$
BEGIN
    IF msg_ids IS NULL THEN
        RAISE EXCEPTION 'msg_ids must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF lower(queue_name) = lower(dlq_name) THEN
        RAISE EXCEPTION 'a queue cannot be its own dead-letter queue (%)', queue_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format(
        $q$WITH moved AS (
               DELETE FROM pgmq.%I WHERE msg_id = ANY($1)
               RETURNING msg_id, read_ct, enqueued_at, message, headers)
           INSERT INTO pgmq.%I (vt, message, headers)
           SELECT clock_timestamp(), message,
                  coalesce(headers, '{}'::jsonb) || jsonb_build_object('x-howdah-dead-letter', jsonb_build_object(
                      'reason', $2, 'source_queue', $3, 'source_msg_id', msg_id, 'read_ct', read_ct,
                      'enqueued_at', enqueued_at, 'dead_lettered_at', clock_timestamp()))
             FROM moved
            ORDER BY msg_id
        RETURNING msg_id$q$,
        pgmq.format_table_name(queue_name, 'q'), pgmq.format_table_name(dlq_name, 'q'))
    USING msg_ids, reason, queue_name;
END;
$fn$;

-- Messages after `after_msg_id`, oldest first, without reading them (no vt or read_ct change): `howdah queue
-- tail`. The table name comes from pgmq.format_table_name, so Postgres's own lower() decides it.
CREATE FUNCTION pgmq.howdah_peek(queue_name text, after_msg_id bigint, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    IF qty IS NULL OR qty < 1 THEN
        RAISE EXCEPTION 'qty must be at least 1, got %', qty USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_regclass(format('pgmq.%I', pgmq.format_table_name(queue_name, 'q'))) IS NULL THEN
        RAISE EXCEPTION 'queue "%" does not exist', queue_name USING ERRCODE = 'undefined_table';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM pgmq.%I '
        'WHERE msg_id > $1 ORDER BY msg_id LIMIT $2', pgmq.format_table_name(queue_name, 'q'))
    USING coalesce(after_msg_id, 0), qty;
END;
$fn$;

-- The highest msg_id in the queue (0 when empty): one backward step on the primary key.
CREATE FUNCTION pgmq.howdah_last_msg_id(queue_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    last_id bigint;
BEGIN
    IF to_regclass(format('pgmq.%I', pgmq.format_table_name(queue_name, 'q'))) IS NULL THEN
        RAISE EXCEPTION 'queue "%" does not exist', queue_name USING ERRCODE = 'undefined_table';
    END IF;
    EXECUTE format('SELECT coalesce(max(msg_id), 0) FROM pgmq.%I', pgmq.format_table_name(queue_name, 'q'))
    INTO last_id;
    RETURN last_id;
END;
$fn$;
