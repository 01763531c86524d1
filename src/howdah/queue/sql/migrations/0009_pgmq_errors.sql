-- Howdah queue, part 9: PGMQ's errors, to the letter.
--
-- Clients catch PGMQ's errors by SQLSTATE and match their text, so wherever PGMQ 1.13 raises an error of its
-- own (SQLSTATE P0001, raise_exception) for some input, Howdah raises the same SQLSTATE with the same primary
-- message for that input, in the same order of checks; Howdah's extra precision goes into DETAIL and HINT.
-- Where PGMQ lets a raw Postgres error through, Howdah keeps its own clearer one with the same SQLSTATE (a
-- missing queue is 42P01 'queue "x" does not exist', never 'relation "pgmq.q_x" does not exist'). Where PGMQ
-- accepts input it then stores or ignores silently (NULL messages, negative visibility timeouts, ...), Howdah
-- still refuses it, but only after PGMQ's own checks, so an input PGMQ refuses gets PGMQ's error first.
-- tests/integration/queue_sql/test_error_matrix.py holds both schemas to this; README lists the differences.
--
-- Checking the queue name first, as PGMQ does, costs nothing on the hot path: a name is only looked at when
-- something is wrong already (the queue was not found, or another argument is about to be refused). An
-- existing queue's name passed these checks when it was created.

------------------------------------------------------------------------------------------------------------
-- Queue names
------------------------------------------------------------------------------------------------------------

-- The characters PGMQ forbids in a queue name (they could end a quoted SQL literal or start a comment).
-- NULL passes: whether NULL is allowed is the caller's decision.
CREATE FUNCTION pgmq._howdah_check_name_characters(queue_name text)
RETURNS void
IMMUTABLE
LANGUAGE plpgsql
AS $fn$
DECLARE
    offending text;
BEGIN
    SELECT string_agg(s.seq, ' and ' ORDER BY s.ord) INTO offending
      FROM unnest(ARRAY['$', ';', '--', '''']) WITH ORDINALITY AS s (seq, ord)
     WHERE strpos(queue_name, s.seq) > 0;
    IF offending IS NOT NULL THEN
        RAISE EXCEPTION 'queue name contains invalid characters: $, ;, --, or \'''
            USING ERRCODE = 'raise_exception',
                  DETAIL = format('The queue name %s contains %s.', quote_literal(queue_name), offending);
    END IF;
END;
$fn$;

-- The one place a missing queue is reported (42P01, as the raw error PGMQ lets through), now after the same
-- name check PGMQ runs first. SCHEMA and TABLE name the queue table that is missing, so clients can tell this
-- error apart without parsing its text.
CREATE OR REPLACE FUNCTION pgmq._howdah_no_such_queue(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    RAISE EXCEPTION 'queue "%" does not exist', queue_name
        USING ERRCODE = 'undefined_table',
              HINT = 'Create it first, e.g. SELECT pgmq.create(''' || replace(queue_name, '''', '''''') || ''')',
              SCHEMA = 'pgmq',
              TABLE = 'q_' || lower(queue_name);
END;
$fn$;

-- PGMQ's P0001 form of the missing-queue error, raised by the functions where PGMQ checks for the queue itself
-- (enable_notify_insert, update_notify_insert, bind_topic); `advice` is the sentence PGMQ appends there.
CREATE FUNCTION pgmq._howdah_queue_missing(queue_name text, advice text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE EXCEPTION 'Queue "%" does not exist. %', queue_name, advice
        USING ERRCODE = 'raise_exception',
              SCHEMA = 'pgmq',
              TABLE = coalesce('q_' || lower(queue_name), '');
END;
$fn$;

-- PGMQ's rule (at most 47 characters; PGMQ checks the forbidden characters before, in create, see
-- _howdah_begin_create), then Howdah's: not NULL, at most 47 bytes too (table and index names derived from it
-- must fit in 63 bytes), none of PGMQ's forbidden characters, not empty, no control characters.
CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF greatest(length(queue_name), octet_length(queue_name), octet_length(lower(queue_name))) > 47 THEN
        RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters'
            USING ERRCODE = 'raise_exception',
                  DETAIL = format('The name is %s characters and %s bytes long; table, index and channel names '
                                  'derived from it must fit in 63 bytes, so Howdah also allows at most 47 bytes.',
                                  length(queue_name), octet_length(queue_name));
    END IF;
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    IF queue_name = '' THEN
        RAISE EXCEPTION 'queue_name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF queue_name ~ '[\u0001-\u001f\u007f]' THEN
        RAISE EXCEPTION 'queue name % contains a control character', quote_literal(queue_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$fn$;

-- Creating a queue checks its name as PGMQ's create does: the forbidden characters first, then the length.
-- Creating a queue that exists does nothing, with the notices PGMQ's CREATE ... IF NOT EXISTS statements give.
CREATE OR REPLACE FUNCTION pgmq._howdah_begin_create(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    relname text;
BEGIN
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    PERFORM pgmq.validate_queue_name(queue_name);
    PERFORM pgmq._howdah_lock_queue_ddl();
    IF NOT EXISTS (SELECT 1 FROM pgmq._howdah_queue AS h WHERE h.queue_key = lower(_howdah_begin_create.queue_name)) THEN
        RETURN true;
    END IF;
    FOREACH relname IN ARRAY ARRAY['q_' || lower(queue_name), 'a_' || lower(queue_name),
                                   'q_' || lower(queue_name) || '_vt_idx', 'archived_at_idx_' || queue_name] LOOP
        RAISE NOTICE 'relation "%" already exists, skipping', relname USING ERRCODE = 'duplicate_table';
    END LOOP;
    RETURN false;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    RETURN lower(prefix || '_' || queue_name);
END;
$fn$;

-- Dropping: the name is checked as in PGMQ; a missing queue gives PGMQ's NOTICE and false.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    h pgmq._howdah_queue;
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    PERFORM pgmq._howdah_lock_queue_ddl();
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(drop_queue.queue_name);
    IF NOT FOUND THEN
        RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I, pgmq.%I', h.q_table, h.a_table);
    DELETE FROM pgmq.meta AS m WHERE m.queue_name = h.queue_name;  -- cascades to Howdah's and PGMQ's side tables
    PERFORM pgmq._howdah_compile();
    RETURN true;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead';
    PERFORM pgmq.drop_queue(queue_name);
    RETURN true;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.detach_archive(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    RAISE WARNING 'detach_archive(queue_name) is deprecated and is a no-op. It will be removed in PGMQ v2.0. Archive tables are no longer member objects.';
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- Arguments Howdah refuses and PGMQ accepts: refused after the queue name's check, as PGMQ checks it first
------------------------------------------------------------------------------------------------------------

CREATE FUNCTION pgmq._howdah_null(queue_name text, parameter text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    PERFORM pgmq._howdah_null(parameter);
END;
$fn$;

CREATE FUNCTION pgmq._howdah_negative(queue_name text, parameter text, value bigint)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    PERFORM pgmq._howdah_negative(parameter, value);
END;
$fn$;

-- PGMQ's checks of a batch (msgs neither NULL nor empty, headers as long as msgs), then Howdah's (one
-- dimension, no NULL messages).
CREATE FUNCTION pgmq._howdah_check_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    at integer;
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
    at := array_position(msgs, NULL);
    IF at IS NOT NULL THEN
        PERFORM pgmq._howdah_check_name_characters(queue_name);
        RAISE EXCEPTION 'msgs must not contain NULL (element % is NULL)', at USING ERRCODE = 'null_value_not_allowed';
    END IF;
END;
$fn$;


------------------------------------------------------------------------------------------------------------
-- Notify on insert
------------------------------------------------------------------------------------------------------------

-- Drops the insert trigger if there is one, with the NOTICE PGMQ's DROP TRIGGER IF EXISTS gives when there is
-- none (which is not used here: it would wait for an ACCESS EXCLUSIVE lock on a busy queue for nothing).
CREATE OR REPLACE FUNCTION pgmq._howdah_drop_notify_trigger(q_table text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS t
                WHERE t.tgrelid = format('pgmq.%I', q_table)::regclass
                  AND t.tgname = 'trigger_notify_queue_insert_listeners') THEN
        EXECUTE format('DROP TRIGGER trigger_notify_queue_insert_listeners ON pgmq.%I', q_table);
    ELSE
        RAISE NOTICE 'trigger "trigger_notify_queue_insert_listeners" for relation "pgmq.%" does not exist, skipping',
            q_table USING ERRCODE = 'undefined_object';
    END IF;
END;
$fn$;

-- Disabling is idempotent, as in PGMQ: for a queue that does not exist it does nothing, with the NOTICE PGMQ's
-- DROP TRIGGER IF EXISTS gives then.
CREATE OR REPLACE FUNCTION pgmq.disable_notify_insert(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    h pgmq._howdah_queue;
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(disable_notify_insert.queue_name);
    IF NOT FOUND THEN
        RAISE NOTICE 'relation "pgmq.%" does not exist, skipping', 'q_' || lower(queue_name)
            USING ERRCODE = 'undefined_table';
        RETURN;
    END IF;
    PERFORM pgmq._howdah_drop_notify_trigger(h.q_table);
    DELETE FROM pgmq.notify_insert_throttle AS x WHERE x.queue_name = h.queue_name;
END;
$fn$;

-- PGMQ's order: the name's characters, a negative throttle, the queue's existence; then Howdah's NULL check.
CREATE OR REPLACE FUNCTION pgmq.enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    h pgmq._howdah_queue;
BEGIN
    PERFORM pgmq._howdah_check_name_characters(queue_name);
    IF throttle_interval_ms < 0 THEN
        RAISE EXCEPTION 'throttle_interval_ms must be non-negative'
            USING ERRCODE = 'raise_exception', DETAIL = format('throttle_interval_ms is %s.', throttle_interval_ms);
    END IF;
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(enable_notify_insert.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_queue_missing(queue_name, 'Create it first using pgmq.create()');
    END IF;
    IF throttle_interval_ms IS NULL THEN PERFORM pgmq._howdah_null('throttle_interval_ms'); END IF;
    -- The lock CREATE TRIGGER takes anyway, taken first: concurrent enables run one after the other instead of
    -- both seeing no trigger and the second failing on "already exists".
    EXECUTE format('LOCK TABLE pgmq.%I IN SHARE ROW EXCLUSIVE MODE', h.q_table);
    PERFORM pgmq._howdah_drop_notify_trigger(h.q_table);
    INSERT INTO pgmq.notify_insert_throttle AS x (queue_name, throttle_interval_ms)
    VALUES (h.queue_name, enable_notify_insert.throttle_interval_ms)
    ON CONFLICT ON CONSTRAINT notify_insert_throttle_queue_name_key DO UPDATE
       SET throttle_interval_ms = excluded.throttle_interval_ms, last_notified_at = to_timestamp(0);
    EXECUTE format('CREATE TRIGGER trigger_notify_queue_insert_listeners AFTER INSERT ON pgmq.%I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgmq.notify_queue_listeners(%L, %L)',
                   h.q_table, h.queue_name, 'pgmq.' || h.q_table || '.INSERT');
END;
$fn$;

-- PGMQ's order: a negative throttle, the queue's existence, notify being enabled; then Howdah's NULL check.
-- (PGMQ does not check the name's characters here: a name it forbids is simply not found.)
CREATE OR REPLACE FUNCTION pgmq.update_notify_insert(queue_name text, throttle_interval_ms integer)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    h pgmq._howdah_queue;
BEGIN
    IF throttle_interval_ms < 0 THEN
        RAISE EXCEPTION 'throttle_interval_ms must be non-negative, got: %', throttle_interval_ms
            USING ERRCODE = 'raise_exception';
    END IF;
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(update_notify_insert.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_queue_missing(queue_name, 'Create the queue first using pgmq.create()');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgmq.notify_insert_throttle AS x WHERE x.queue_name = h.queue_name) THEN
        RAISE EXCEPTION 'Queue "%" does not have notify_insert enabled. Enable it first using pgmq.enable_notify_insert()',
            queue_name
            USING ERRCODE = 'raise_exception';
    END IF;
    IF throttle_interval_ms IS NULL THEN PERFORM pgmq._howdah_null('throttle_interval_ms'); END IF;
    UPDATE pgmq.notify_insert_throttle AS x
       SET throttle_interval_ms = update_notify_insert.throttle_interval_ms, last_notified_at = to_timestamp(0)
     WHERE x.queue_name = h.queue_name;
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- Topics
------------------------------------------------------------------------------------------------------------

-- What is wrong with a routing key (is_pattern = false) or a binding pattern, as PGMQ words it after the
-- subject ('routing_key' / 'pattern'), in PGMQ's order of checks; NULL when nothing is.
CREATE FUNCTION pgmq._howdah_topic_problem(subject text, is_pattern boolean)
RETURNS text
IMMUTABLE
LANGUAGE sql
AS $fn$
    SELECT CASE
        WHEN coalesce(subject, '') = '' THEN 'cannot be NULL or empty'
        WHEN length(subject) > 255 THEN format('length cannot exceed 255 characters, got %s characters', length(subject))
        WHEN is_pattern AND subject !~ '^[A-Za-z0-9._*#-]+$' THEN
            'contains invalid characters. Only alphanumeric, dots, hyphens, underscores, *, and # are allowed. Got: '
            || subject
        WHEN NOT is_pattern AND subject !~ '^[A-Za-z0-9._-]+$' THEN
            'contains invalid characters. Only alphanumeric, dots, hyphens, and underscores are allowed. Got: '
            || subject
        WHEN left(subject, 1) = '.' THEN 'cannot start with a dot. Got: ' || subject
        WHEN right(subject, 1) = '.' THEN 'cannot end with a dot. Got: ' || subject
        WHEN strpos(subject, '..') > 0 THEN 'cannot contain consecutive dots. Got: ' || subject
        WHEN strpos(subject, '**') > 0 THEN
            'cannot contain consecutive stars (**). Use # for multi-segment matching. Got: ' || subject
        WHEN strpos(subject, '##') > 0 THEN
            'cannot contain consecutive hashes (##). A single # already matches zero or more segments. Got: '
            || subject
        WHEN strpos(subject, '*#') > 0 OR strpos(subject, '#*') > 0 THEN
            'cannot contain adjacent wildcards (*# or #*). Separate wildcards with dots. Got: ' || subject
    END
$fn$;

-- Routing keys: 1-255 characters from [A-Za-z0-9._-], dot-separated non-empty segments.
CREATE OR REPLACE FUNCTION pgmq.validate_routing_key(routing_key text)
RETURNS boolean
IMMUTABLE
LANGUAGE plpgsql
AS $fn$
DECLARE
    problem text := pgmq._howdah_topic_problem(routing_key, false);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'routing_key %', problem
            USING ERRCODE = 'raise_exception',
                  HINT = 'A routing key is dot-separated words of letters, digits, hyphens and underscores, e.g. logs.error.';
    END IF;
    RETURN true;
END;
$fn$;

-- Patterns: like routing keys, plus the wildcards * (one word) and #, never two wildcards side by side.
CREATE OR REPLACE FUNCTION pgmq.validate_topic_pattern(pattern text)
RETURNS boolean
IMMUTABLE
LANGUAGE plpgsql
AS $fn$
DECLARE
    problem text := pgmq._howdah_topic_problem(pattern, true);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'pattern %', problem
            USING ERRCODE = 'raise_exception',
                  HINT = 'A pattern is dot-separated words, where * stands for one word and # for any number, e.g. logs.*.';
    END IF;
    RETURN true;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.bind_topic(pattern text, queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    canonical text;
BEGIN
    PERFORM pgmq.validate_topic_pattern(pattern);
    IF coalesce(queue_name, '') = '' THEN
        RAISE EXCEPTION 'queue_name cannot be NULL or empty' USING ERRCODE = 'raise_exception';
    END IF;
    SELECT h.queue_name INTO canonical FROM pgmq._howdah_queue AS h WHERE h.queue_key = lower(bind_topic.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_queue_missing(queue_name, 'Create the queue first using pgmq.create()');
    END IF;
    INSERT INTO pgmq.topic_bindings AS b (pattern, queue_name)
    VALUES (bind_topic.pattern, canonical)
    ON CONFLICT ON CONSTRAINT topic_bindings_unique_pattern_queue DO NOTHING;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.unbind_topic(pattern text, queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF coalesce(pattern, '') = '' THEN
        RAISE EXCEPTION 'pattern cannot be NULL or empty' USING ERRCODE = 'raise_exception';
    END IF;
    IF coalesce(queue_name, '') = '' THEN
        RAISE EXCEPTION 'queue_name cannot be NULL or empty' USING ERRCODE = 'raise_exception';
    END IF;
    DELETE FROM pgmq.topic_bindings AS b
     WHERE b.pattern = unbind_topic.pattern AND lower(b.queue_name) = lower(unbind_topic.queue_name);
    RETURN FOUND;
END;
$fn$;

-- send_topic: PGMQ's checks in PGMQ's order (routing key, msg, negative delay), then Howdah's (NULL delay).
CREATE FUNCTION pgmq._howdah_send_topic(routing_key text, msg jsonb, headers jsonb, delay integer)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    IF msg IS NULL THEN
        RAISE EXCEPTION 'msg cannot be NULL' USING ERRCODE = 'raise_exception';
    END IF;
    IF delay < 0 THEN
        RAISE EXCEPTION 'delay cannot be negative, got: %', delay USING ERRCODE = 'raise_exception';
    END IF;
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    RETURN pgmq._howdah_send_topic(routing_key, msg, headers, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

-- The worker behind it: sends to every queue the (checked) routing key reaches.
CREATE OR REPLACE FUNCTION pgmq._howdah_send_topic(
    routing_key text, msg jsonb, headers jsonb, vt timestamp with time zone
)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    q text;
    n integer := 0;
BEGIN
    FOR q IN SELECT pgmq._howdah_route(routing_key) LOOP
        PERFORM pgmq._howdah_k_send_one(q, msg, headers, vt);
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb)
RETURNS integer
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_send_topic(routing_key, msg, NULL::jsonb, 0) $fn$;

CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, delay integer)
RETURNS integer
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_send_topic(routing_key, msg, NULL::jsonb, delay) $fn$;

CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb)
RETURNS integer
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_send_topic(routing_key, msg, headers, 0) $fn$;

CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb, delay integer)
RETURNS integer
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_send_topic(routing_key, msg, headers, delay) $fn$;

-- send_batch_topic: PGMQ's checks in PGMQ's order (routing key, batch), then Howdah's (delay).
CREATE OR REPLACE FUNCTION pgmq._howdah_send_batch_topic(
    routing_key text, msgs jsonb[], headers jsonb[], vt timestamp with time zone
)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    q text;
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    PERFORM pgmq._howdah_check_batch(NULL::text, msgs, headers);
    IF vt IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    FOR q IN SELECT pgmq._howdah_route(routing_key) LOOP
        RETURN QUERY SELECT q, s.id FROM pgmq._howdah_k_send_many(q, msgs, headers, vt) AS s (id);
    END LOOP;
END;
$fn$;

CREATE FUNCTION pgmq._howdah_send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    PERFORM pgmq._howdah_check_batch(NULL::text, msgs, headers);
    IF delay IS NULL THEN PERFORM pgmq._howdah_null('delay'); END IF;
    IF delay < 0 THEN PERFORM pgmq._howdah_negative('delay', delay); END IF;
    RETURN QUERY SELECT * FROM pgmq._howdah_send_batch_topic(
        routing_key, msgs, headers, clock_timestamp() + make_interval(secs => delay));
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, NULL::jsonb[], delay) $fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay timestamp with time zone)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, NULL::jsonb[], delay) $fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, headers, delay) $fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(
    routing_key text, msgs jsonb[], headers jsonb[], delay timestamp with time zone
)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $fn$ SELECT * FROM pgmq._howdah_send_batch_topic(routing_key, msgs, headers, delay) $fn$;

