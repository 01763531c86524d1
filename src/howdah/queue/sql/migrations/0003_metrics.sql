-- Howdah queue, part 3: metrics.
--
-- PGMQ counts every row (count(*) over the whole queue) on each scrape. Howdah's metrics cost is bounded
-- whatever the queue's size -- at most about 2 x (N + 1) index entries, N = pgmq._howdah_exact_limit() = 10000:
--
--   queue_visible_length  EXACT when at most N messages are visible: counted through the vt index
--                         (vt <= now(), stopping after N + 1). Above N it is ESTIMATED (see below).
--   queue_length          EXACT when both the visible and the invisible (vt > now(), same bounded count)
--                         counts are at most N. Otherwise ESTIMATED from the statistics collector's live-tuple
--                         count of the queue's table(s) (pg_stat n_live_tup, falling back to pg_class.reltuples),
--                         never below what was counted and never above max(msg_id) - min(msg_id) + 1.
--                         When only the visible part is large, visible = length estimate - exact invisible
--                         count; when both are large, the visible share comes from a TABLESAMPLE SYSTEM sample
--                         of about N rows.
--   newest/oldest_msg_age_sec  EXACT for the messages with the highest / lowest msg_id (one primary-key probe
--                         each). PGMQ uses max/min(enqueued_at); they differ only when a transaction that
--                         started earlier committed a later msg_id.
--   total_messages        EXACT: the queue's identity sequence (ids handed out, including rolled-back sends),
--                         as in PGMQ.
--   default_partition_length  NULL for queues that are not partitioned (as in PGMQ); for partitioned ones the
--                         rows in the queue's and archive's DEFAULT partitions, exact up to N each.
--   scrape_time           now().
-- Nothing is written on send or read to support this (no counters that would serialise writers).

CREATE TYPE pgmq.metrics_result AS (
    queue_name               text,
    queue_length             bigint,
    newest_msg_age_sec       integer,
    oldest_msg_age_sec       integer,
    total_messages           bigint,
    scrape_time              timestamp with time zone,
    queue_visible_length     bigint,
    default_partition_length bigint
);

CREATE FUNCTION pgmq._howdah_exact_limit()
RETURNS bigint
IMMUTABLE
LANGUAGE sql
AS $fn$ SELECT 10000::bigint $fn$;

-- Rows in `rel` (optionally only those matching `condition`), counted exactly up to `cap`; cap + 1 means
-- "more than cap". `ordering` names an indexed column, and sequential and bitmap scans are switched off for
-- this one statement, so the count walks that index and stops early: the planner would otherwise prefer
-- reading the whole table when cap is a large share of it.
CREATE FUNCTION pgmq._howdah_count_upto(rel text, condition text, ordering text, cap bigint, at timestamp with time zone)
RETURNS bigint
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $fn$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %s WHERE %s ORDER BY %I LIMIT $1) AS s',
                   rel, condition, ordering)
       INTO n
      USING cap + 1, at;
    RETURN n;
END;
$fn$;

-- The statistics collector's idea of how many live rows a table (or all partitions of one) holds.
CREATE FUNCTION pgmq._howdah_estimated_rows(rel regclass)
RETURNS bigint
STABLE
LANGUAGE sql
AS $fn$
    WITH leaves AS (
        SELECT t.relid FROM pg_catalog.pg_partition_tree(rel) AS t WHERE t.isleaf
        UNION
        SELECT rel WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_partition_tree(rel))
    )
    SELECT coalesce(
        nullif(sum(pg_catalog.pg_stat_get_live_tuples(l.relid)), 0),
        sum(greatest(c.reltuples, 0)))::bigint
      FROM leaves AS l JOIN pg_catalog.pg_class AS c ON c.oid = l.relid;
$fn$;

CREATE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    cap constant bigint := pgmq._howdah_exact_limit();
    h pgmq._howdah_queue;
    rel text;
    arel text;
    at timestamp with time zone := now();
    visible bigint;
    invisible bigint;
    n_total bigint;
    estimate bigint;
    lo_id bigint;
    lo_at timestamp with time zone;
    hi_id bigint;
    hi_at timestamp with time zone;
    share double precision;
    pct double precision;
    in_default bigint;
    r pgmq.metrics_result;
BEGIN
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(metrics.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_no_such_queue(queue_name);
    END IF;
    rel := format('pgmq.%I', h.q_table);
    arel := format('pgmq.%I', h.a_table);

    visible := pgmq._howdah_count_upto(rel, 'vt <= $2', 'vt', cap, at);
    invisible := pgmq._howdah_count_upto(rel, 'vt > $2', 'vt', cap, at);
    EXECUTE format('SELECT (SELECT msg_id FROM %1$s ORDER BY msg_id LIMIT 1), '
                   '(SELECT enqueued_at FROM %1$s ORDER BY msg_id LIMIT 1), '
                   '(SELECT msg_id FROM %1$s ORDER BY msg_id DESC LIMIT 1), '
                   '(SELECT enqueued_at FROM %1$s ORDER BY msg_id DESC LIMIT 1)', rel)
       INTO lo_id, lo_at, hi_id, hi_at;

    IF visible <= cap AND invisible <= cap THEN
        n_total := visible + invisible;
    ELSE
        estimate := coalesce(pgmq._howdah_estimated_rows(rel::regclass), 0);
        n_total := least(greatest(estimate, visible + invisible), hi_id - lo_id + 1);
        IF visible > cap THEN
            IF invisible <= cap THEN
                visible := greatest(n_total - invisible, cap + 1);
            ELSE
                pct := least(100.0, 100.0 * cap / greatest(n_total, 1));
                EXECUTE format('SELECT avg((vt <= $1)::integer) FROM %s TABLESAMPLE SYSTEM ($2)', rel)
                   INTO share
                  USING at, pct;
                visible := least(greatest(round(n_total * coalesce(share, 0.5))::bigint, cap + 1), n_total - cap - 1);
            END IF;
        END IF;
    END IF;

    IF h.queue_name IN (SELECT m.queue_name FROM pgmq.meta AS m WHERE m.is_partitioned) THEN
        in_default := 0;
        IF to_regclass(format('pgmq.%I', h.q_table || '_default')) IS NOT NULL THEN
            in_default := in_default + pgmq._howdah_count_upto(
                format('pgmq.%I', h.q_table || '_default'), 'true', 'msg_id', cap, at);
        END IF;
        IF to_regclass(format('pgmq.%I', h.a_table || '_default')) IS NOT NULL THEN
            in_default := in_default + pgmq._howdah_count_upto(
                format('pgmq.%I', h.a_table || '_default'), 'true', 'msg_id', cap, at);
        END IF;
    END IF;

    r.queue_name := h.queue_name;
    r.queue_length := n_total;
    r.newest_msg_age_sec := extract(epoch FROM at - hi_at)::integer;
    r.oldest_msg_age_sec := extract(epoch FROM at - lo_at)::integer;
    r.total_messages := coalesce(
        pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence(rel, 'msg_id')::regclass), 0);
    r.scrape_time := at;
    r.queue_visible_length := visible;
    r.default_partition_length := in_default;
    RETURN r;
END;
$fn$;

CREATE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    q text;
BEGIN
    FOR q IN SELECT m.queue_name FROM pgmq.meta AS m ORDER BY m.queue_name LOOP
        RETURN NEXT pgmq.metrics(q);
    END LOOP;
END;
$fn$;
