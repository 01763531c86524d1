-- Howdah queue, part 1: the `pgmq` schema, PGMQ's tables and record types, queue names, the queue
-- registry, the compiled per-queue "kernels", and the queue life cycle (create / drop / purge / list).
--
-- Compatibility contract: every object a PGMQ 1.13 client can see (function names, parameter names, defaults,
-- overloads, result types and columns, tables pgmq.meta / pgmq.q_<name> / pgmq.a_<name>, NOTIFY channels) looks
-- like PGMQ's. Everything Howdah needs on top lives in separate objects whose names start with `_howdah_`
-- (the public additions are pgmq.maintain_partitions and one send_topic overload, see 0004 and 0006).
-- All functions qualify every object they use and are SECURITY INVOKER, except _howdah_compile (see there).
--
-- How the hot path is fast (see _howdah_compile below): PGMQ builds every statement as text and EXECUTEs it, so
-- Postgres parses and plans it again on every call (~25 us of server CPU for a one-row INSERT, more than the
-- INSERT itself). Howdah instead generates, whenever the set of queues changes, one plpgsql "kernel" per hot
-- operation whose body holds the operation's statement written out for each queue, reached through a binary
-- search on the queue name. plpgsql caches the plan of each static statement per session, so a send is one
-- string comparison per tree level plus a cached-plan execution. Queues beyond the first
-- _howdah_compiled_limit() (by creation order) -- and any queue the kernels do not know -- take a fallback
-- inside the same kernel that looks the queue up in pgmq._howdah_queue and EXECUTEs the very same statement
-- text, so both paths always run identical SQL.
-- Trade-off: creating or dropping one of those compiled queues rewrites the ten kernels, and every session
-- recompiles them on its next call (a few milliseconds); creating queues beyond the limit rewrites nothing.

CREATE SCHEMA pgmq;
COMMENT ON SCHEMA pgmq IS 'Howdah''s PGMQ-compatible message queue (plain SQL, no extension)';

-- PGMQ's queue catalogue: same columns, types, order and constraints as PGMQ 1.13.
CREATE TABLE pgmq.meta (
    queue_name     varchar                  NOT NULL UNIQUE,
    is_partitioned boolean                  NOT NULL,
    is_unlogged    boolean                  NOT NULL,
    created_at     timestamp with time zone NOT NULL DEFAULT now()
);

-- Monitoring roles may read every queue (PGMQ grants the same).
GRANT USAGE ON SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL TABLES IN SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA pgmq TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON TABLES TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON SEQUENCES TO pg_monitor;

-- Field order of these types is part of PGMQ's wire contract (clients read rows by position).
CREATE TYPE pgmq.message_record AS (
    msg_id       bigint,
    read_ct      integer,
    enqueued_at  timestamp with time zone,
    last_read_at timestamp with time zone,
    vt           timestamp with time zone,
    message      jsonb,
    headers      jsonb
);

CREATE TYPE pgmq.queue_record AS (
    queue_name     varchar,
    is_partitioned boolean,
    is_unlogged    boolean,
    created_at     timestamp with time zone
);

-- Howdah's registry of queues: one row per queue, never extra columns in pgmq.meta.
-- PGMQ derives a queue's tables from lower(queue_name), so "Jobs" and "jobs" are the same queue; queue_key is
-- that lower-cased name and is what every lookup uses. queue_name is the spelling the queue was created with.
CREATE TABLE pgmq._howdah_queue (
    queue_key  text    PRIMARY KEY,
    queue_name varchar NOT NULL UNIQUE REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
    q_table    text    NOT NULL UNIQUE,
    a_table    text    NOT NULL UNIQUE,
    created    bigint  GENERATED ALWAYS AS IDENTITY  -- creation order: the oldest queues get compiled kernels
);
COMMENT ON TABLE pgmq._howdah_queue IS 'Howdah-only: the queues and their table names (kept out of pgmq.meta)';

------------------------------------------------------------------------------------------------------------
-- Errors and names
------------------------------------------------------------------------------------------------------------

-- The one place a missing queue is reported: SQLSTATE 42P01 (undefined_table), like the raw error PGMQ lets
-- through, so clients that catch that code keep working, but with a message that names the queue.
CREATE FUNCTION pgmq._howdah_no_such_queue(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RAISE EXCEPTION 'queue "%" does not exist', queue_name
        USING ERRCODE = 'undefined_table',
              HINT = 'Create it first, e.g. SELECT pgmq.create(''' || replace(queue_name, '''', '''''') || ''')';
END;
$fn$;

-- PGMQ's rules (at most 47 long; no $ ; -- or ') plus what else could break a name Howdah builds from it:
-- NULL, empty, control characters, and length in bytes (identifiers are cut at 63 bytes, and the longest one
-- derived from a queue name is 'archived_at_idx_' || queue_name).
CREATE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF queue_name = '' THEN
        RAISE EXCEPTION 'queue_name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF greatest(octet_length(queue_name), octet_length(lower(queue_name))) > 47 THEN
        RAISE EXCEPTION 'queue name is too long: % bytes, the maximum is 47', octet_length(queue_name)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Table, index and channel names are derived from the queue name and must fit in 63 bytes.';
    END IF;
    IF strpos(queue_name, '$') > 0 OR strpos(queue_name, ';') > 0 OR strpos(queue_name, '--') > 0
       OR strpos(queue_name, '''') > 0 THEN
        RAISE EXCEPTION 'queue name % contains a forbidden character: $, ;, -- or ''', quote_literal(queue_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF queue_name ~ '[\u0001-\u001f\u007f]' THEN
        RAISE EXCEPTION 'queue name % contains a control character', quote_literal(queue_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$fn$;

-- PGMQ's public helper: the table name for a queue and a prefix ('q' or 'a').
CREATE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF strpos(queue_name, '$') > 0 OR strpos(queue_name, ';') > 0 OR strpos(queue_name, '--') > 0
       OR strpos(queue_name, '''') > 0 THEN
        RAISE EXCEPTION 'queue name % contains a forbidden character: $, ;, -- or ''', quote_literal(queue_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN lower(prefix || '_' || queue_name);
END;
$fn$;

-- PGMQ's public per-queue lock (held until the end of the transaction).
CREATE FUNCTION pgmq.acquire_queue_lock(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pg_advisory_xact_lock(pg_catalog.hashtextextended('pgmq.queue.' || lower(queue_name), 0));
$fn$;

-- Serialises everything that changes the set of queues (and therefore the compiled kernels).
CREATE FUNCTION pgmq._howdah_lock_queue_ddl()
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pg_advisory_xact_lock(7521840127744516961);  -- fixed key: "howdah queue DDL"
$fn$;

-- The relations a queue lives in; raises the missing-queue error. Used by every path that is not compiled.
CREATE FUNCTION pgmq._howdah_resolve(queue_name text, OUT q_rel text, OUT a_rel text)
STABLE
LANGUAGE plpgsql
AS $fn$
BEGIN
    SELECT format('pgmq.%I', h.q_table), format('pgmq.%I', h.a_table)
      INTO q_rel, a_rel
      FROM pgmq._howdah_queue AS h
     WHERE h.queue_key = lower(_howdah_resolve.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_no_such_queue(queue_name);
    END IF;
END;
$fn$;

-- Fails with a clear error when one of the relation names a new queue needs is already taken (a queue named
-- "x_vt_idx" would otherwise collide with the vt index of queue "x", and a partition name with another queue).
CREATE FUNCTION pgmq._howdah_claim_names(queue_name text, relnames text[])
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    taken text;
BEGIN
    SELECT c.relname INTO taken
      FROM pg_catalog.pg_class AS c
     WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relname = ANY (relnames)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cannot create queue %: the name pgmq.% is already taken by another object',
            quote_literal(queue_name), quote_ident(taken)
            USING ERRCODE = 'duplicate_table',
                  HINT = 'Names of queues, their indexes and partitions share one namespace; choose another queue name.';
    END IF;
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- Kernels: generated per-queue static SQL for the hot operations
------------------------------------------------------------------------------------------------------------

-- How many queues (the oldest first) get compiled branches. Beyond it the kernels' dynamic fallback runs,
-- which is as fast as PGMQ's own code. The limit bounds the size of the generated functions (each session
-- compiles them once after every change to the set of compiled queues).
CREATE FUNCTION pgmq._howdah_compiled_limit()
RETURNS integer
IMMUTABLE
LANGUAGE sql
AS $fn$ SELECT 128 $fn$;

-- One row per kernel. In `statement`, %1$s is the queue table and %2$s the archive table (both already quoted);
-- $1.. are the kernel's parameters in order, so the same text serves as static SQL inside plpgsql (where $n
-- names the n-th parameter) and as dynamic SQL (EXECUTE ... USING the parameters in the same order).
-- `compiled` is a queue's branch and `fallback` the dynamic path; {stmt} stands for the statement and
-- {stmt_one} for it with "LIMIT $n" replaced by "LIMIT 1".
--
-- Plan caching: plpgsql re-plans a cached statement on every call ("custom plan") when the generic plan looks
-- more expensive than the custom ones, which is always the case for "LIMIT $n" and "= ANY ($n)". So reads
-- and pops of one message use a statement with LIMIT 1, whose generic plan is chosen; reads of more messages
-- keep custom plans (like any prepared statement with LIMIT $1 -- a generic plan guessing 10% of the table
-- could pick a sequential scan); kernels marked `generic` take array arguments, whose only sensible plan is
-- an index scan on the primary key, and are pinned to the generic plan.
CREATE FUNCTION pgmq._howdah_kernels(
    OUT name text, OUT params text, OUT returns text, OUT generic boolean,
    OUT statement text, OUT compiled text, OUT fallback text
)
RETURNS SETOF record
IMMUTABLE
LANGUAGE sql
AS $fn$
VALUES
    ('_howdah_k_send_one',
     'p_queue text, p_msg jsonb, p_headers jsonb, p_vt timestamp with time zone',
     'bigint', false,
     'INSERT INTO %1$s (vt, message, headers) VALUES ($4, $2, $3) RETURNING msg_id',
     '{stmt} INTO v_id; RETURN v_id;',
     'EXECUTE {dyn} INTO v_id USING p_queue, p_msg, p_headers, p_vt; RETURN v_id;'),
    ('_howdah_k_send_many',
     'p_queue text, p_msgs jsonb[], p_headers jsonb[], p_vt timestamp with time zone',
     'SETOF bigint', true,
     'INSERT INTO %1$s (vt, message, headers) SELECT $4, u.m, u.h FROM unnest($2, $3) AS u (m, h) RETURNING msg_id',
     'RETURN QUERY {stmt}; RETURN;',
     'RETURN QUERY EXECUTE {dyn} USING p_queue, p_msgs, p_headers, p_vt;'),
    -- Reads lock candidates with SKIP LOCKED inside an ARRAY() sub-select, then update them by primary key.
    ('_howdah_k_read',
     'p_queue text, p_vt integer, p_qty integer, p_now timestamp with time zone',
     'SETOF pgmq.message_record', false,
     'WITH r AS (UPDATE %1$s AS m SET read_ct = m.read_ct + 1, last_read_at = $4, '
        'vt = $4 + make_interval(secs => $2) '
        'WHERE m.msg_id = ANY (ARRAY(SELECT c.msg_id FROM %1$s AS c WHERE c.vt <= $4 '
        'ORDER BY c.msg_id LIMIT $3 FOR UPDATE SKIP LOCKED)) '
        'RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers) '
        'SELECT r.msg_id, r.read_ct, r.enqueued_at, r.last_read_at, r.vt, r.message, r.headers '
        'FROM r ORDER BY r.msg_id',
     'IF $3 = 1 THEN RETURN QUERY {stmt_one}; ELSE RETURN QUERY {stmt}; END IF; RETURN;',
     'RETURN QUERY EXECUTE {dyn} USING p_queue, p_vt, p_qty, p_now;'),
    ('_howdah_k_pop',
     'p_queue text, p_qty integer, p_now timestamp with time zone',
     'SETOF pgmq.message_record', false,
     'WITH r AS (DELETE FROM %1$s AS m '
        'WHERE m.msg_id = ANY (ARRAY(SELECT c.msg_id FROM %1$s AS c WHERE c.vt <= $3 '
        'ORDER BY c.msg_id LIMIT $2 FOR UPDATE SKIP LOCKED)) '
        'RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers) '
        'SELECT r.msg_id, r.read_ct, r.enqueued_at, r.last_read_at, r.vt, r.message, r.headers '
        'FROM r ORDER BY r.msg_id',
     'IF $2 = 1 THEN RETURN QUERY {stmt_one}; ELSE RETURN QUERY {stmt}; END IF; RETURN;',
     'RETURN QUERY EXECUTE {dyn} USING p_queue, p_qty, p_now;'),
    ('_howdah_k_delete_one',
     'p_queue text, p_msg_id bigint',
     'boolean', false,
     'DELETE FROM %1$s WHERE msg_id = $2',
     '{stmt}; RETURN FOUND;',
     'EXECUTE {dyn} USING p_queue, p_msg_id; GET DIAGNOSTICS v_n = ROW_COUNT; RETURN v_n > 0;'),
    ('_howdah_k_delete_many',
     'p_queue text, p_msg_ids bigint[]',
     'SETOF bigint', true,
     'DELETE FROM %1$s WHERE msg_id = ANY ($2) RETURNING msg_id',
     'RETURN QUERY {stmt}; RETURN;',
     'RETURN QUERY EXECUTE {dyn} USING p_queue, p_msg_ids;'),
    ('_howdah_k_archive_one',
     'p_queue text, p_msg_id bigint',
     'boolean', false,
     'WITH d AS (DELETE FROM %1$s WHERE msg_id = $2 '
        'RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers) '
        'INSERT INTO %2$s (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers) '
        'SELECT d.msg_id, d.read_ct, d.enqueued_at, d.last_read_at, d.vt, d.message, d.headers FROM d',
     '{stmt}; RETURN FOUND;',
     'EXECUTE {dyn} USING p_queue, p_msg_id; GET DIAGNOSTICS v_n = ROW_COUNT; RETURN v_n > 0;'),
    ('_howdah_k_archive_many',
     'p_queue text, p_msg_ids bigint[]',
     'SETOF bigint', true,
     'WITH d AS (DELETE FROM %1$s WHERE msg_id = ANY ($2) '
        'RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers) '
        'INSERT INTO %2$s (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers) '
        'SELECT d.msg_id, d.read_ct, d.enqueued_at, d.last_read_at, d.vt, d.message, d.headers FROM d '
        'RETURNING msg_id',
     'RETURN QUERY {stmt}; RETURN;',
     'RETURN QUERY EXECUTE {dyn} USING p_queue, p_msg_ids;'),
    ('_howdah_k_set_vt_one',
     'p_queue text, p_msg_id bigint, p_vt timestamp with time zone',
     'SETOF pgmq.message_record', false,
     'UPDATE %1$s SET vt = $3 WHERE msg_id = $2 '
        'RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers',
     'RETURN QUERY {stmt}; RETURN;',
     'RETURN QUERY EXECUTE {dyn} USING p_queue, p_msg_id, p_vt;'),
    ('_howdah_k_set_vt_many',
     'p_queue text, p_msg_ids bigint[], p_vt timestamp with time zone',
     'SETOF pgmq.message_record', true,
     'WITH r AS (UPDATE %1$s AS m SET vt = $3 WHERE m.msg_id = ANY ($2) '
        'RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers) '
        'SELECT r.msg_id, r.read_ct, r.enqueued_at, r.last_read_at, r.vt, r.message, r.headers '
        'FROM r ORDER BY r.msg_id',
     'RETURN QUERY {stmt}; RETURN;',
     'RETURN QUERY EXECUTE {dyn} USING p_queue, p_msg_ids, p_vt;')
$fn$;

-- A balanced binary search over keys[lo..hi] (sorted with COLLATE "C"); each leaf runs `leaf` formatted with
-- that queue's relations. Keys enter the generated code only through format('%L').
CREATE FUNCTION pgmq._howdah_search_tree(leaf text, keys text[], q_rels text[], a_rels text[], lo integer, hi integer)
RETURNS text
IMMUTABLE
LANGUAGE plpgsql
AS $fn$
DECLARE
    mid integer;
BEGIN
    IF lo > hi THEN
        RETURN '';
    END IF;
    IF lo = hi THEN
        RETURN format(E'IF v_key = %L THEN\n%s\nEND IF;', keys[lo], format(leaf, q_rels[lo], a_rels[lo]));
    END IF;
    mid := (lo + hi + 1) / 2;
    RETURN format(E'IF v_key < %L COLLATE "C" THEN\n%s\nELSE\n%s\nEND IF;', keys[mid],
                  pgmq._howdah_search_tree(leaf, keys, q_rels, a_rels, lo, mid - 1),
                  pgmq._howdah_search_tree(leaf, keys, q_rels, a_rels, mid, hi));
END;
$fn$;

-- (Re)generates every kernel from pgmq._howdah_queue. Deterministic (same queues => same text), and a kernel
-- whose text did not change is left alone, so sessions keep their compiled copy and cached plans.
-- SECURITY DEFINER: replacing a function needs its owner (the role that installed the schema), while queues
-- may be created by any role allowed to create tables in pgmq. That is safe: names only reach the generated
-- code through format('%I') / format('%L'), and the kernels themselves run with the caller's rights.
CREATE FUNCTION pgmq._howdah_compile()
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    k record;
    keys text[];
    q_rels text[];
    a_rels text[];
    body text;
    old_body text;
BEGIN
    SELECT coalesce(array_agg(s.queue_key ORDER BY s.queue_key COLLATE "C"), '{}'),
           coalesce(array_agg(format('pgmq.%I', s.q_table) ORDER BY s.queue_key COLLATE "C"), '{}'),
           coalesce(array_agg(format('pgmq.%I', s.a_table) ORDER BY s.queue_key COLLATE "C"), '{}')
      INTO keys, q_rels, a_rels
      FROM (SELECT h.queue_key, h.q_table, h.a_table
              FROM pgmq._howdah_queue AS h
             ORDER BY h.created
             LIMIT pgmq._howdah_compiled_limit()) AS s;

    FOR k IN SELECT * FROM pgmq._howdah_kernels() LOOP
        body := format(
            E'\n-- Generated by pgmq._howdah_compile(); do not edit.\n'
            '#variable_conflict use_column\n'
            'DECLARE\n'
            '    v_key text := lower(p_queue);\n'
            '    v_q text;\n'
            '    v_a text;\n'
            '    v_id bigint;\n'
            '    v_n bigint;\n'
            'BEGIN\n'
            '%s\n'
            '-- Not compiled in: look the queue up (raises the missing-queue error) and run the same statement.\n'
            'SELECT r.q_rel, r.a_rel INTO v_q, v_a FROM pgmq._howdah_resolve(p_queue) AS r;\n'
            '%s\n'
            'END;\n',
            pgmq._howdah_search_tree(
                replace(replace(k.compiled, '{stmt_one}', regexp_replace(k.statement, 'LIMIT \$\d+', 'LIMIT 1')),
                        '{stmt}', k.statement),
                keys, q_rels, a_rels, 1, cardinality(keys)),
            replace(k.fallback, '{dyn}', format('format(%L, v_q, v_a)', k.statement)));

        SELECT p.prosrc INTO old_body
          FROM pg_catalog.pg_proc AS p
         WHERE p.pronamespace = 'pgmq'::regnamespace AND p.proname = k.name
           AND p.proconfig IS NOT DISTINCT FROM CASE WHEN k.generic THEN '{plan_cache_mode=force_generic_plan}'::text[] END;
        IF old_body IS DISTINCT FROM body THEN
            EXECUTE format('CREATE OR REPLACE FUNCTION pgmq.%I(%s) RETURNS %s LANGUAGE plpgsql %s AS %L',
                           k.name, k.params, k.returns,
                           CASE WHEN k.generic THEN 'SET plan_cache_mode = force_generic_plan' ELSE '' END,
                           body);
        END IF;
    END LOOP;
END;
$fn$;

SELECT pgmq._howdah_compile();

------------------------------------------------------------------------------------------------------------
-- Queue life cycle
------------------------------------------------------------------------------------------------------------

-- Registers a queue whose tables were just created, and recompiles the kernels.
CREATE FUNCTION pgmq._howdah_register(queue_name text, partitioned boolean, unlogged boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
    VALUES (queue_name, partitioned, unlogged)
    ON CONFLICT DO NOTHING;
    INSERT INTO pgmq._howdah_queue (queue_key, queue_name, q_table, a_table)
    VALUES (lower(queue_name), queue_name, 'q_' || lower(queue_name), 'a_' || lower(queue_name));
    PERFORM pgmq._howdah_compile();
END;
$fn$;

-- Validates, takes the DDL lock, and tells whether the queue still has to be created (creating an existing
-- queue is a no-op, as in PGMQ, whatever kind it was created as).
CREATE FUNCTION pgmq._howdah_begin_create(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name);
    PERFORM pgmq._howdah_lock_queue_ddl();
    RETURN NOT EXISTS (
        SELECT 1 FROM pgmq._howdah_queue AS h WHERE h.queue_key = lower(_howdah_begin_create.queue_name)
    );
END;
$fn$;

-- Plain (logged or unlogged) queue: the same tables and indexes PGMQ creates.
CREATE FUNCTION pgmq._howdah_create_plain(queue_name text, unlogged boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    q text := 'q_' || lower(queue_name);
    a text := 'a_' || lower(queue_name);
BEGIN
    IF NOT pgmq._howdah_begin_create(queue_name) THEN
        RETURN;
    END IF;
    PERFORM pgmq._howdah_claim_names(queue_name, ARRAY[q, a, q || '_vt_idx', 'archived_at_idx_' || queue_name]);
    EXECUTE format(
        'CREATE %s TABLE pgmq.%I ('
        'msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY, '
        'read_ct integer NOT NULL DEFAULT 0, '
        'enqueued_at timestamp with time zone NOT NULL DEFAULT now(), '
        'last_read_at timestamp with time zone, '
        'vt timestamp with time zone NOT NULL, '
        'message jsonb, '
        'headers jsonb) '
        -- A queue table churns: every message is inserted, updated and deleted. Vacuum it after a fixed
        -- number of dead rows rather than a fraction of its (small) size, and without throttling.
        'WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000, '
        'autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_insert_scale_factor = 0, '
        'autovacuum_analyze_scale_factor = 0.02)',
        CASE WHEN unlogged THEN 'UNLOGGED' ELSE '' END, q);
    EXECUTE format('CREATE INDEX %I ON pgmq.%I (vt)', q || '_vt_idx', q);
    EXECUTE format(
        'CREATE TABLE pgmq.%I ('
        'msg_id bigint PRIMARY KEY, '
        'read_ct integer NOT NULL DEFAULT 0, '
        'enqueued_at timestamp with time zone NOT NULL DEFAULT now(), '
        'last_read_at timestamp with time zone, '
        'archived_at timestamp with time zone NOT NULL DEFAULT now(), '
        'vt timestamp with time zone NOT NULL, '
        'message jsonb, '
        'headers jsonb)',
        a);
    EXECUTE format('CREATE INDEX %I ON pgmq.%I (archived_at)', 'archived_at_idx_' || queue_name, a);
    PERFORM pgmq._howdah_register(queue_name, false, unlogged);
END;
$fn$;

CREATE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_create_plain(queue_name, false) $fn$;

CREATE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_create_plain(queue_name, true) $fn$;

CREATE FUNCTION pgmq."create"(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$ SELECT pgmq._howdah_create_plain(queue_name, false) $fn$;

-- Drops the queue, its archive, its notify and topic settings. A missing queue gives a NOTICE and false, as in
-- PGMQ (dropping is idempotent).
CREATE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    h pgmq._howdah_queue;
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pgmq._howdah_lock_queue_ddl();
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(drop_queue.queue_name);
    IF NOT FOUND THEN
        RAISE NOTICE 'queue "%" does not exist', queue_name;
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I, pgmq.%I', h.q_table, h.a_table);
    DELETE FROM pgmq.meta AS m WHERE m.queue_name = h.queue_name;  -- cascades to Howdah's and PGMQ's side tables
    PERFORM pgmq._howdah_compile();
    RETURN true;
END;
$fn$;

-- Deprecated in PGMQ; kept for compatibility (warns, drops, returns true).
CREATE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE WARNING 'pgmq.drop_queue(queue_name, partitioned) is deprecated; call pgmq.drop_queue(queue_name)';
    PERFORM pgmq.drop_queue(queue_name);
    RETURN true;
END;
$fn$;

-- Deletes every message of the queue (not its archive) and returns how many there were. The table is locked
-- first, so the count is exactly what was removed.
CREATE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    rel text := (pgmq._howdah_resolve(queue_name)).q_rel;
    n bigint;
BEGIN
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', rel);
    EXECUTE format('SELECT count(*) FROM %s', rel) INTO n;
    EXECUTE format('TRUNCATE TABLE %s', rel);
    RETURN n;
END;
$fn$;

CREATE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
STABLE
LANGUAGE sql
AS $fn$
    SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at FROM pgmq.meta AS m ORDER BY m.queue_name;
$fn$;

-- Deprecated no-op in PGMQ (archives are no longer extension members); kept for compatibility.
CREATE FUNCTION pgmq.detach_archive(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE WARNING 'pgmq.detach_archive(queue_name) is deprecated and does nothing';
END;
$fn$;
