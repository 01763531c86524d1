-- Howdah queue, part 10: the message API (0002) and the FIFO reads (0006) with the order of checks of 0009.
--
-- The functions are those of 0002 and 0006, unchanged but for one thing: an argument Howdah refuses and PGMQ
-- accepts (a NULL message, a negative visibility timeout, ...) is refused through the functions of 0009 that
-- check the queue name first, so an invalid name gets PGMQ's error, as in PGMQ, whatever else is wrong. The
-- functions only run when an argument is refused: the hot path is the same as before.

------------------------------------------------------------------------------------------------------------
-- send
------------------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, NULL, clock_timestamp());
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, headers, clock_timestamp());
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg'); END IF;
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
    IF msg IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg'); END IF;
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, NULL, delay);
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg'); END IF;
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
    IF msg IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg'); END IF;
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    RETURN NEXT pgmq._howdah_k_send_one(queue_name, msg, headers, delay);
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- send_batch (ids come back in the order of msgs)
------------------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(queue_name, msgs, NULL);
    RETURN QUERY SELECT pgmq._howdah_k_send_many(queue_name, msgs, NULL, clock_timestamp());
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(queue_name, msgs, headers);
    RETURN QUERY SELECT pgmq._howdah_k_send_many(queue_name, msgs, headers, clock_timestamp());
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(queue_name, msgs, NULL);
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'delay', delay); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_send_many(
        queue_name, msgs, NULL, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(queue_name, msgs, NULL);
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_send_many(queue_name, msgs, NULL, delay);
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(queue_name, msgs, headers);
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'delay', delay); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_send_many(
        queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_batch(queue_name, msgs, headers);
    IF delay IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'delay'); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_send_many(queue_name, msgs, headers, delay);
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- read, read_with_poll, pop
------------------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF vt IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'vt', vt); END IF;
    IF qty IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'qty'); END IF;
    IF qty < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'qty', qty); END IF;
    IF conditional IS NULL OR conditional = '{}' THEN
        RETURN QUERY SELECT * FROM pgmq._howdah_k_read(queue_name, vt, qty, clock_timestamp());
    ELSE
        RETURN QUERY SELECT * FROM pgmq._howdah_read_where(queue_name, vt, qty, conditional, clock_timestamp());
    END IF;
END;
$fn$;

-- Polls until at least one message arrives or max_poll_seconds pass. Each attempt is a new statement, so it
-- sees messages committed meanwhile (under READ COMMITTED).
CREATE OR REPLACE FUNCTION pgmq.read_with_poll(
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
    IF vt IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'vt', vt); END IF;
    IF qty IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'qty'); END IF;
    IF qty < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'qty', qty); END IF;
    IF max_poll_seconds IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'max_poll_seconds'); END IF;
    IF max_poll_seconds < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'max_poll_seconds', max_poll_seconds); END IF;
    IF poll_interval_ms IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'poll_interval_ms'); END IF;
    IF poll_interval_ms < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'poll_interval_ms', poll_interval_ms); END IF;
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
CREATE OR REPLACE FUNCTION pgmq.pop(queue_name text, qty integer DEFAULT 1)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF qty IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'qty'); END IF;
    IF qty < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'qty', qty); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_pop(queue_name, qty, clock_timestamp());
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- archive, delete
------------------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_id IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg_id'); END IF;
    RETURN pgmq._howdah_k_archive_one(queue_name, msg_id);
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_ids IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg_ids'); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_archive_many(queue_name, msg_ids);
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq."delete"(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_id IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg_id'); END IF;
    RETURN pgmq._howdah_k_delete_one(queue_name, msg_id);
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq."delete"(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_ids IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg_ids'); END IF;
    RETURN QUERY SELECT pgmq._howdah_k_delete_many(queue_name, msg_ids);
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- set_vt: make messages visible again at a time (timestamptz) or after some seconds (integer)
------------------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_id IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg_id'); END IF;
    IF vt IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'vt', vt); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_set_vt_one(
        queue_name, msg_id, clock_timestamp() + make_interval(secs => vt));
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt timestamp with time zone)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_id IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg_id'); END IF;
    IF vt IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'vt'); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_set_vt_one(queue_name, msg_id, vt);
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_ids IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg_ids'); END IF;
    IF vt IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'vt', vt); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_set_vt_many(
        queue_name, msg_ids, clock_timestamp() + make_interval(secs => vt));
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt timestamp with time zone)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF msg_ids IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'msg_ids'); END IF;
    IF vt IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'vt'); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_k_set_vt_many(queue_name, msg_ids, vt);
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- FIFO reads
------------------------------------------------------------------------------------------------------------

-- The three FIFO reads. mode: 'grouped', 'rr' or 'head'. $1 = vt seconds, $2 = qty, $3 = read time.
CREATE OR REPLACE FUNCTION pgmq._howdah_read_fifo(queue_name text, vt integer, qty integer, mode text)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    grp constant text := 'coalesce(%1$s.headers ->> ''x-pgmq-group'', ''_default_fifo_group'')';
    heads text;
    picked text;
BEGIN
    IF vt IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'vt', vt); END IF;
    IF qty IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'qty'); END IF;
    IF qty < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'qty', qty); END IF;

    -- Visible heads of at most qty groups, oldest first, each locked by this reader (or skipped).
    heads := format(
        'heads AS MATERIALIZED ('
        'SELECT c.msg_id, %1$s AS grp FROM %%1$s AS c '
        'WHERE c.msg_id IN (SELECT DISTINCT ON (%2$s) f.msg_id FROM %%1$s AS f ORDER BY %2$s, f.msg_id) '
        'AND c.vt <= $3 ORDER BY c.msg_id LIMIT $2 FOR UPDATE OF c SKIP LOCKED)',
        format(grp, 'c'), format(grp, 'f'));
    picked := CASE mode
        WHEN 'head' THEN
            'picked AS MATERIALIZED (SELECT h.msg_id, row_number() OVER (ORDER BY h.msg_id) AS pos FROM heads AS h)'
        WHEN 'grouped' THEN
            format('picked AS MATERIALIZED (SELECT x.msg_id, row_number() OVER (ORDER BY h.msg_id, x.msg_id) AS pos '
                   'FROM heads AS h JOIN %%1$s AS x ON %1$s = h.grp AND x.msg_id >= h.msg_id WHERE x.vt <= $3)',
                   format(grp, 'x'))
        WHEN 'rr' THEN
            format('picked AS MATERIALIZED (SELECT r.msg_id, row_number() OVER (ORDER BY r.rnk, r.head) AS pos FROM ('
                   'SELECT x.msg_id, h.msg_id AS head, row_number() OVER (PARTITION BY h.grp ORDER BY x.msg_id) AS rnk '
                   'FROM heads AS h JOIN %%1$s AS x ON %1$s = h.grp AND x.msg_id >= h.msg_id WHERE x.vt <= $3) AS r)',
                   format(grp, 'x'))
    END;
    RETURN QUERY EXECUTE format(
        'WITH ' || heads || ', ' || picked || ', '
        'locked AS MATERIALIZED (SELECT l.msg_id, p.pos FROM %1$s AS l JOIN picked AS p ON p.msg_id = l.msg_id '
        'WHERE p.pos <= $2 AND l.vt <= $3 FOR UPDATE OF l SKIP LOCKED), '
        'upd AS (UPDATE %1$s AS m SET vt = $3 + make_interval(secs => $1), read_ct = m.read_ct + 1, '
        'last_read_at = $3 FROM locked AS k WHERE m.msg_id = k.msg_id '
        'RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers, k.pos) '
        'SELECT u.msg_id, u.read_ct, u.enqueued_at, u.last_read_at, u.vt, u.message, u.headers FROM upd AS u '
        'ORDER BY u.pos',
        (pgmq._howdah_resolve(queue_name)).q_rel)
        USING vt, qty, clock_timestamp();
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq._howdah_read_fifo_with_poll(
    queue_name text, vt integer, qty integer, max_poll_seconds integer, poll_interval_ms integer, mode text
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    deadline timestamp with time zone;
BEGIN
    IF max_poll_seconds IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'max_poll_seconds'); END IF;
    IF max_poll_seconds < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'max_poll_seconds', max_poll_seconds); END IF;
    IF poll_interval_ms IS NULL THEN PERFORM pgmq._howdah_null(queue_name, 'poll_interval_ms'); END IF;
    IF poll_interval_ms < 0 THEN PERFORM pgmq._howdah_negative(queue_name, 'poll_interval_ms', poll_interval_ms); END IF;
    deadline := clock_timestamp() + make_interval(secs => max_poll_seconds);
    LOOP
        RETURN QUERY SELECT * FROM pgmq._howdah_read_fifo(queue_name, vt, qty, mode);
        EXIT WHEN FOUND OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(least(poll_interval_ms / 1000.0, extract(epoch FROM deadline - clock_timestamp())));
    END LOOP;
END;
$fn$;

-- The batch check without a queue name has no caller left (0009 and the functions above pass the name).
DROP FUNCTION pgmq._howdah_check_batch(jsonb[], jsonb[]);
