-- Howdah queue, part 6: FIFO message groups and topic routing.
--
-- FIFO: a message's group is its header "x-pgmq-group" (messages without one form a single default group).
-- A group is available while its oldest message (its head) is visible; whoever locks the head (FOR UPDATE
-- SKIP LOCKED) owns the group for that read, so concurrent readers never interleave one group's messages and
-- never skip ahead of a message that is being processed. (PGMQ also takes advisory locks keyed on the group
-- name alone, shared by all queues; the row lock on the head is enough and is per queue.)
--   read_grouped       fills the batch from the group with the oldest head first, then the next group, ...
--   read_grouped_rr    round robin: the first message of each available group, then the second, ...
--   read_grouped_head  only the head of each available group (one message per group).
-- Results come back in that selection order. create_fifo_index adds a btree index on (group, msg_id), which
-- these reads use to find heads and walk groups in order (PGMQ creates a GIN index on headers instead).
--
-- Topics: bindings map wildcard patterns to queues (`*` = exactly one dot-separated segment, `#` = any text,
-- as PGMQ compiles them to regular expressions). send_topic / send_batch_topic send to every bound queue whose
-- pattern matches the routing key, in one transaction. Howdah adds one overload PGMQ lacks,
-- send_topic(routing_key, msg, headers), because the official Python client calls it for headers without delay.

------------------------------------------------------------------------------------------------------------
-- FIFO
------------------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq.create_fifo_index(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    h pgmq._howdah_queue;
BEGIN
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(create_fifo_index.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_no_such_queue(queue_name);
    END IF;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I '
                   '((coalesce(headers ->> ''x-pgmq-group'', ''_default_fifo_group'')), msg_id)',
                   h.q_table || '_fifo_idx', h.q_table);
END;
$fn$;

CREATE FUNCTION pgmq.create_fifo_indexes_all()
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    q text;
BEGIN
    FOR q IN SELECT h.queue_name FROM pgmq._howdah_queue AS h ORDER BY h.queue_key LOOP
        PERFORM pgmq.create_fifo_index(q);
    END LOOP;
END;
$fn$;

-- The three FIFO reads. mode: 'grouped', 'rr' or 'head'. $1 = vt seconds, $2 = qty, $3 = read time.
CREATE FUNCTION pgmq._howdah_read_fifo(queue_name text, vt integer, qty integer, mode text)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    grp constant text := 'coalesce(%1$s.headers ->> ''x-pgmq-group'', ''_default_fifo_group'')';
    heads text;
    picked text;
BEGIN
    IF vt IS NULL THEN PERFORM pgmq._howdah_null('vt'); END IF;
    IF vt < 0 THEN PERFORM pgmq._howdah_negative('vt', vt); END IF;
    IF qty IS NULL THEN PERFORM pgmq._howdah_null('qty'); END IF;
    IF qty < 0 THEN PERFORM pgmq._howdah_negative('qty', qty); END IF;

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

CREATE FUNCTION pgmq._howdah_read_fifo_with_poll(
    queue_name text, vt integer, qty integer, max_poll_seconds integer, poll_interval_ms integer, mode text
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    deadline timestamp with time zone;
BEGIN
    IF max_poll_seconds IS NULL THEN PERFORM pgmq._howdah_null('max_poll_seconds'); END IF;
    IF max_poll_seconds < 0 THEN PERFORM pgmq._howdah_negative('max_poll_seconds', max_poll_seconds); END IF;
    IF poll_interval_ms IS NULL THEN PERFORM pgmq._howdah_null('poll_interval_ms'); END IF;
    IF poll_interval_ms < 0 THEN PERFORM pgmq._howdah_negative('poll_interval_ms', poll_interval_ms); END IF;
    deadline := clock_timestamp() + make_interval(secs => max_poll_seconds);
    LOOP
        RETURN QUERY SELECT * FROM pgmq._howdah_read_fifo(queue_name, vt, qty, mode);
        EXIT WHEN FOUND OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(least(poll_interval_ms / 1000.0, extract(epoch FROM deadline - clock_timestamp())));
    END LOOP;
END;
$fn$;

CREATE FUNCTION pgmq.read_grouped(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_read_fifo(queue_name, vt, qty, 'grouped') $fn$;

CREATE FUNCTION pgmq.read_grouped_rr(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_read_fifo(queue_name, vt, qty, 'rr') $fn$;

CREATE FUNCTION pgmq.read_grouped_head(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_read_fifo(queue_name, vt, qty, 'head') $fn$;

CREATE FUNCTION pgmq.read_grouped_with_poll(
    queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100
)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq._howdah_read_fifo_with_poll(queue_name, vt, qty, max_poll_seconds, poll_interval_ms, 'grouped')
$fn$;

CREATE FUNCTION pgmq.read_grouped_rr_with_poll(
    queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100
)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq._howdah_read_fifo_with_poll(queue_name, vt, qty, max_poll_seconds, poll_interval_ms, 'rr')
$fn$;

CREATE FUNCTION pgmq.read_grouped_head_with_poll(
    queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100
)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq._howdah_read_fifo_with_poll(queue_name, vt, qty, max_poll_seconds, poll_interval_ms, 'head')
$fn$;

------------------------------------------------------------------------------------------------------------
-- Topics
------------------------------------------------------------------------------------------------------------

CREATE TABLE pgmq.topic_bindings (
    pattern        text                     NOT NULL,
    queue_name     text                     NOT NULL
        CONSTRAINT topic_bindings_meta_queue_name_fk REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
    bound_at       timestamp with time zone NOT NULL DEFAULT now(),
    -- The pattern as an anchored regular expression: characters other than letters, digits, _, -, * and #
    -- are escaped, then * becomes one segment ([^.]+) and # any text (.*).
    compiled_regex text GENERATED ALWAYS AS (
        '^' || replace(replace(regexp_replace(pattern, '([^A-Za-z0-9_*#-])', '\\\1', 'g'), '*', '[^.]+'), '#', '.*')
            || '$'
    ) STORED,
    CONSTRAINT topic_bindings_unique_pattern_queue UNIQUE (pattern, queue_name)
);

CREATE INDEX idx_topic_bindings_covering ON pgmq.topic_bindings (pattern) INCLUDE (queue_name, compiled_regex);

-- Routing keys: 1-255 characters from [A-Za-z0-9._-], dot-separated non-empty segments.
CREATE FUNCTION pgmq.validate_routing_key(routing_key text)
RETURNS boolean
IMMUTABLE
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF routing_key IS NULL THEN PERFORM pgmq._howdah_null('routing_key'); END IF;
    IF routing_key = '' THEN
        RAISE EXCEPTION 'routing_key must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(routing_key) > 255 THEN
        RAISE EXCEPTION 'routing_key is too long: % characters, the maximum is 255', length(routing_key)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF routing_key !~ '^[A-Za-z0-9._-]+$' THEN
        RAISE EXCEPTION 'routing_key % may only contain letters, digits, dots, hyphens and underscores',
            quote_literal(routing_key) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF left(routing_key, 1) = '.' OR right(routing_key, 1) = '.' OR strpos(routing_key, '..') > 0 THEN
        RAISE EXCEPTION 'routing_key % must not start or end with a dot or contain an empty segment (..)',
            quote_literal(routing_key) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END;
$fn$;

-- Patterns: like routing keys, plus the wildcards * and #, never two wildcards side by side.
CREATE FUNCTION pgmq.validate_topic_pattern(pattern text)
RETURNS boolean
IMMUTABLE
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF pattern IS NULL THEN PERFORM pgmq._howdah_null('pattern'); END IF;
    IF pattern = '' THEN
        RAISE EXCEPTION 'pattern must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(pattern) > 255 THEN
        RAISE EXCEPTION 'pattern is too long: % characters, the maximum is 255', length(pattern)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pattern !~ '^[A-Za-z0-9._*#-]+$' THEN
        RAISE EXCEPTION 'pattern % may only contain letters, digits, dots, hyphens, underscores, * and #',
            quote_literal(pattern) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF left(pattern, 1) = '.' OR right(pattern, 1) = '.' OR strpos(pattern, '..') > 0 THEN
        RAISE EXCEPTION 'pattern % must not start or end with a dot or contain an empty segment (..)',
            quote_literal(pattern) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pattern ~ '[*#][*#]' THEN
        RAISE EXCEPTION 'pattern % must not have two wildcards side by side (**, ##, *# or #*); separate them with dots',
            quote_literal(pattern) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END;
$fn$;

CREATE FUNCTION pgmq.bind_topic(pattern text, queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    canonical text;
BEGIN
    PERFORM pgmq.validate_topic_pattern(pattern);
    IF queue_name IS NULL THEN PERFORM pgmq._howdah_null('queue_name'); END IF;
    SELECT h.queue_name INTO canonical FROM pgmq._howdah_queue AS h WHERE h.queue_key = lower(bind_topic.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_no_such_queue(queue_name);
    END IF;
    INSERT INTO pgmq.topic_bindings AS b (pattern, queue_name)
    VALUES (bind_topic.pattern, canonical)
    ON CONFLICT ON CONSTRAINT topic_bindings_unique_pattern_queue DO NOTHING;
END;
$fn$;

CREATE FUNCTION pgmq.unbind_topic(pattern text, queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF pattern IS NULL THEN PERFORM pgmq._howdah_null('pattern'); END IF;
    IF queue_name IS NULL THEN PERFORM pgmq._howdah_null('queue_name'); END IF;
    DELETE FROM pgmq.topic_bindings AS b
     WHERE b.pattern = unbind_topic.pattern AND lower(b.queue_name) = lower(unbind_topic.queue_name);
    RETURN FOUND;
END;
$fn$;

CREATE FUNCTION pgmq.list_topic_bindings()
RETURNS TABLE (pattern text, queue_name text, bound_at timestamp with time zone, compiled_regex text)
STABLE
LANGUAGE sql
AS $fn$
    SELECT b.pattern, b.queue_name, b.bound_at, b.compiled_regex
      FROM pgmq.topic_bindings AS b
     ORDER BY b.bound_at DESC, b.pattern, b.queue_name;
$fn$;

CREATE FUNCTION pgmq.list_topic_bindings(queue_name text)
RETURNS TABLE (pattern text, queue_name text, bound_at timestamp with time zone, compiled_regex text)
STABLE
LANGUAGE sql
AS $fn$
    SELECT b.pattern, b.queue_name, b.bound_at, b.compiled_regex
      FROM pgmq.topic_bindings AS b
     WHERE lower(b.queue_name) = lower($1)
     ORDER BY b.bound_at DESC, b.pattern;
$fn$;

CREATE FUNCTION pgmq.test_routing(routing_key text)
RETURNS TABLE (pattern text, queue_name text, compiled_regex text)
STABLE
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    RETURN QUERY
        SELECT b.pattern, b.queue_name, b.compiled_regex
          FROM pgmq.topic_bindings AS b
         WHERE test_routing.routing_key ~ b.compiled_regex
         ORDER BY b.pattern, b.queue_name;
END;
$fn$;

-- The queues a routing key reaches, each once, in name order.
CREATE FUNCTION pgmq._howdah_route(routing_key text)
RETURNS SETOF text
STABLE
LANGUAGE sql
AS $fn$
    SELECT DISTINCT b.queue_name FROM pgmq.topic_bindings AS b WHERE $1 ~ b.compiled_regex ORDER BY 1;
$fn$;

CREATE FUNCTION pgmq._howdah_send_topic(routing_key text, msg jsonb, headers jsonb, vt timestamp with time zone)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    q text;
    n integer := 0;
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    IF msg IS NULL THEN PERFORM pgmq._howdah_null('msg'); END IF;
    FOR q IN SELECT pgmq._howdah_route(routing_key) LOOP
        PERFORM pgmq._howdah_k_send_one(q, msg, headers, vt);
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$fn$;

CREATE FUNCTION pgmq._howdah_delay(delay integer)
RETURNS timestamp with time zone
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative('delay', delay); END IF;
    RETURN clock_timestamp() + make_interval(secs => delay);
END;
$fn$;

CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb)
RETURNS integer
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_send_topic(routing_key, msg, NULL, clock_timestamp()) $fn$;

CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, delay integer)
RETURNS integer
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_send_topic(routing_key, msg, NULL, pgmq._howdah_delay(delay)) $fn$;

CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb)
RETURNS integer
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_send_topic(routing_key, msg, headers, clock_timestamp()) $fn$;

CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb, delay integer)
RETURNS integer
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_send_topic(routing_key, msg, headers, pgmq._howdah_delay(delay)) $fn$;

CREATE FUNCTION pgmq._howdah_send_batch_topic(
    routing_key text, msgs jsonb[], headers jsonb[], vt timestamp with time zone
)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    q text;
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    PERFORM pgmq._howdah_check_batch(msgs, headers);
    FOR q IN SELECT pgmq._howdah_route(routing_key) LOOP
        RETURN QUERY SELECT q, s.id FROM pgmq._howdah_k_send_many(q, msgs, headers, vt) AS s (id);
    END LOOP;
END;
$fn$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[])
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, NULL, clock_timestamp()) $fn$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[])
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, headers, clock_timestamp()) $fn$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, NULL, pgmq._howdah_delay(delay)) $fn$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay timestamp with time zone)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, NULL, delay);
END;
$fn$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, headers, pgmq._howdah_delay(delay)) $fn$;

CREATE FUNCTION pgmq.send_batch_topic(
    routing_key text, msgs jsonb[], headers jsonb[], delay timestamp with time zone
)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, headers, delay);
END;
$fn$;
