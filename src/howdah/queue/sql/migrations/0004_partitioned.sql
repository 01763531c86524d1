-- Howdah queue, part 4: partitioned queues with native Postgres partitioning (no pg_partman).
--
-- A partitioned queue's q_ and a_ tables are range-partitioned by msg_id (partition_interval is a number of
-- messages, e.g. '10000') or by time (an interval such as '1 hour' or '1 day': q_ by enqueued_at, a_ by
-- archived_at). pgmq.maintain_partitions(), which Howdah calls periodically, keeps `premake` partitions ready
-- ahead of the current msg_id / time and drops partitions that fall entirely behind the retention:
--   * archive (a_) partitions are dropped past retention, with their messages (that is what retention means);
--   * queue (q_) partitions are dropped once their range is behind the newest message and they are empty
--     (retention does not matter for them: a drained partition only slows reads down). PGMQ (via pg_partman) drops
--     them even when they still hold unread messages; Howdah never deletes undelivered messages silently.
--
-- Bursts: every partitioned table has a DEFAULT partition (q_<name>_default / a_<name>_default, the names
-- pg_partman uses and PGMQ's metrics look for), so a send never fails for lack of a partition, however far
-- ahead of the premade partitions it lands. maintain_partitions() later creates the partitions those rows
-- belong to and moves the rows out of the default partition into them (reported as moved_rows). New
-- partitions are built as plain tables and ATTACHed, which needs only SHARE UPDATE EXCLUSIVE on the parent
-- (sends and reads go on), plus ACCESS EXCLUSIVE on the default partition until the maintenance transaction
-- commits; every lock is taken with a lock_timeout, and a partition that cannot be locked in time is reported
-- as 'skipped' and retried on the next run.
--
-- Partition names: <table>_p<suffix>, where the suffix is the partition's number (first msg_id / interval) for
-- msg_id partitions, and its start as YYYYMMDDHH24MI (UTC) for time partitions. Time intervals must be whole
-- minutes and contain no months or years (partition boundaries are aligned with date_bin on UTC).

CREATE TABLE pgmq._howdah_partitioned (
    queue_key          text    PRIMARY KEY REFERENCES pgmq._howdah_queue (queue_key) ON DELETE CASCADE,
    queue_table        boolean NOT NULL,  -- false when only the archive is partitioned (convert_archive_partitioned)
    by_time            boolean NOT NULL,
    id_span            bigint   CHECK (id_span > 0),
    id_retention       bigint   CHECK (id_retention >= 0),
    time_span          interval CHECK (time_span > interval '0'),
    time_retention     interval CHECK (time_retention >= interval '0'),
    premake            integer NOT NULL CHECK (premake >= 1),
    partition_interval text    NOT NULL,
    retention_interval text    NOT NULL,
    CHECK (by_time = (time_span IS NOT NULL) AND by_time = (id_span IS NULL)),
    CHECK (by_time = (time_retention IS NOT NULL) AND by_time = (id_retention IS NULL))
);
COMMENT ON TABLE pgmq._howdah_partitioned IS 'Howdah-only: how each partitioned queue is partitioned';

-- Parses PGMQ's textual partitioning arguments into a _howdah_partitioned row (queue_key left NULL).
CREATE FUNCTION pgmq._howdah_parse_partitioning(
    partition_interval text, retention_interval text, premake integer, queue_table boolean
)
RETURNS pgmq._howdah_partitioned
LANGUAGE plpgsql
AS $fn$
DECLARE
    p pgmq._howdah_partitioned;
BEGIN
    IF partition_interval IS NULL THEN PERFORM pgmq._howdah_null('partition_interval'); END IF;
    IF retention_interval IS NULL THEN PERFORM pgmq._howdah_null('retention_interval'); END IF;
    IF premake IS NULL THEN PERFORM pgmq._howdah_null('premake'); END IF;
    IF premake < 1 THEN
        RAISE EXCEPTION 'premake must be at least 1 (got %)', premake USING ERRCODE = 'invalid_parameter_value';
    END IF;
    p.queue_table := queue_table;
    p.premake := premake;
    p.partition_interval := partition_interval;
    p.retention_interval := retention_interval;
    IF partition_interval ~ '^\s*[0-9]+\s*$' THEN
        p.by_time := false;
        p.id_span := partition_interval::numeric;
        IF p.id_span < 1 THEN
            RAISE EXCEPTION 'partition_interval must be at least 1 message (got %)', partition_interval
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF retention_interval !~ '^\s*[0-9]+\s*$' THEN
            RAISE EXCEPTION 'retention_interval must be a number of messages like ''100000'' when partition_interval is one (got %)',
                quote_literal(retention_interval)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        p.id_retention := retention_interval::numeric;
    ELSE
        p.by_time := true;
        BEGIN
            p.time_span := partition_interval::interval;
            p.time_retention := retention_interval::interval;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
            RAISE EXCEPTION 'partition_interval and retention_interval must be numbers of messages (e.g. ''10000'') or time intervals (e.g. ''1 day''); got % and %',
                quote_literal(partition_interval), quote_literal(retention_interval)
                USING ERRCODE = 'invalid_parameter_value';
        END;
        IF extract(month FROM p.time_span) <> 0 OR extract(year FROM p.time_span) <> 0
           OR p.time_span < interval '1 minute'
           OR extract(epoch FROM p.time_span)::numeric % 60 <> 0 THEN
            RAISE EXCEPTION 'partition_interval % is not supported: use a whole number of minutes, hours, days or weeks (no months or years)',
                quote_literal(partition_interval)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF p.time_retention < interval '0' THEN
            RAISE EXCEPTION 'retention_interval must not be negative (got %)', quote_literal(retention_interval)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    RETURN p;
END;
$fn$;

-- The partitions of `parent` with their bounds as numbers (msg_id, or epoch seconds for time partitions);
-- NULL bounds mean MINVALUE / MAXVALUE.
CREATE FUNCTION pgmq._howdah_partitions(parent regclass, by_time boolean)
RETURNS TABLE (part regclass, relname text, is_default boolean, lo numeric, hi numeric)
STABLE
LANGUAGE sql
AS $fn$
    SELECT c.oid::regclass, c.relname::text, b.expr = 'DEFAULT',
           CASE WHEN m[1] IS NULL OR m[1] IN ('MINVALUE', 'MAXVALUE') THEN NULL
                WHEN by_time THEN extract(epoch FROM m[1]::timestamp with time zone)
                ELSE m[1]::numeric END,
           CASE WHEN m[2] IS NULL OR m[2] IN ('MINVALUE', 'MAXVALUE') THEN NULL
                WHEN by_time THEN extract(epoch FROM m[2]::timestamp with time zone)
                ELSE m[2]::numeric END
      FROM pg_catalog.pg_inherits AS i
      JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
     CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS expr) AS b
      LEFT JOIN LATERAL regexp_match(b.expr, '^FOR VALUES FROM \(''?([^'')]*)''?\) TO \(''?([^'')]*)''?\)$') AS m
        ON true
     WHERE i.inhparent = parent;
$fn$;

-- Creates the missing partitions of one partitioned table and drops those past retention.
CREATE FUNCTION pgmq._howdah_maintain_table(
    queue text, parent_name text, key_column text, p pgmq._howdah_partitioned, is_queue_table boolean,
    mirror_name text
)
RETURNS TABLE (partition_table text, action text, range_from text, range_to text, moved_rows bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    origin constant timestamp with time zone := '2001-01-01 00:00:00+00';
    parent regclass := format('pgmq.%I', parent_name)::regclass;
    default_name text := parent_name || '_default';
    mirror regclass := CASE WHEN mirror_name IS NOT NULL THEN format('pgmq.%I', mirror_name)::regclass END;
    has_default boolean;
    step numeric;
    newest numeric;   -- newest msg_id handed out, or now() in epoch seconds
    first_lo numeric;
    b_lo numeric;
    lo_lit text;
    hi_lit text;
    part_name text;
    not_empty boolean;
    moved bigint;
    part record;
BEGIN
    has_default := to_regclass(format('pgmq.%I', default_name)) IS NOT NULL;
    IF p.by_time THEN
        step := extract(epoch FROM p.time_span);
        newest := extract(epoch FROM now());
        first_lo := extract(epoch FROM date_bin(p.time_span, now(), origin));
    ELSE
        step := p.id_span;
        newest := coalesce(pg_catalog.pg_sequence_last_value(
            pg_catalog.pg_get_serial_sequence(format('pgmq.%I', 'q_' || lower(queue)), 'msg_id')::regclass), 0);
        first_lo := floor(newest / step) * step;
    END IF;

    -- Partitions needed: the current one, `premake` ahead, one for every range the default partition holds,
    -- and (for a msg_id-partitioned archive) one for every range of the queue table within retention, since
    -- those messages may still be archived.
    FOR b_lo IN
        SELECT first_lo + g * step FROM generate_series(0, p.premake) AS g
        UNION
        SELECT d.lo FROM pgmq._howdah_default_ranges(default_name, key_column, p, has_default) AS d
        UNION
        SELECT m.lo FROM pgmq._howdah_partitions(mirror, false) AS m
         WHERE NOT p.by_time AND NOT m.is_default AND m.lo IS NOT NULL
           AND m.hi > newest - p.id_retention AND m.hi - m.lo = step
        ORDER BY 1
    LOOP
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pgmq._howdah_partitions(parent, p.by_time) AS x
             WHERE NOT x.is_default AND (x.lo IS NULL OR x.lo < b_lo + step) AND (x.hi IS NULL OR x.hi > b_lo));
        IF p.by_time THEN
            lo_lit := to_timestamp(b_lo)::text;
            hi_lit := to_timestamp(b_lo + step)::text;
            part_name := parent_name || '_p' || to_char(to_timestamp(b_lo) AT TIME ZONE 'UTC', 'YYYYMMDDHH24MI');
        ELSE
            lo_lit := b_lo::bigint::text;
            hi_lit := least(b_lo + step, 9223372036854775807)::bigint::text;
            part_name := parent_name || '_p' || (b_lo / step)::bigint::text;
        END IF;
        partition_table := part_name;
        range_from := lo_lit;
        range_to := hi_lit;
        moved_rows := 0;
        IF octet_length(part_name) > 63 OR to_regclass(format('pgmq.%I', part_name)) IS NOT NULL THEN
            action := 'skipped: the name is too long or already taken';
            RETURN NEXT;
            CONTINUE;
        END IF;
        BEGIN
            IF has_default THEN
                EXECUTE format('LOCK TABLE pgmq.%I IN ACCESS EXCLUSIVE MODE', default_name);
            END IF;
            EXECUTE format('CREATE TABLE pgmq.%I (LIKE %s INCLUDING DEFAULTS)', part_name, parent);
            IF has_default THEN
                EXECUTE format('WITH m AS (DELETE FROM pgmq.%I WHERE %I >= %L AND %I < %L RETURNING *) '
                               'INSERT INTO pgmq.%I SELECT * FROM m',
                               default_name, key_column, lo_lit, key_column, hi_lit, part_name);
                GET DIAGNOSTICS moved = ROW_COUNT;
                moved_rows := moved;
            END IF;
            EXECUTE format('ALTER TABLE %s ATTACH PARTITION pgmq.%I FOR VALUES FROM (%L) TO (%L)',
                           parent, part_name, lo_lit, hi_lit);
            action := 'created';
        EXCEPTION WHEN lock_not_available THEN
            action := 'skipped: lock timeout';
            moved_rows := 0;
        END;
        RETURN NEXT;
    END LOOP;

    -- Retention: archive partitions whose whole range is older than newest - retention. Queue partitions go
    -- as soon as their whole range is behind the newest message and they are empty: no new message can land
    -- there, and a drained partition full of dead rows would otherwise slow every read until retention.
    FOR part IN
        SELECT x.part, x.relname, x.lo, x.hi
          FROM pgmq._howdah_partitions(parent, p.by_time) AS x
         WHERE NOT x.is_default AND x.hi IS NOT NULL
           AND x.hi <= newest - CASE WHEN is_queue_table THEN 0
                                     WHEN p.by_time THEN extract(epoch FROM p.time_retention)
                                     ELSE p.id_retention END
         ORDER BY x.lo
    LOOP
        partition_table := part.relname;
        IF p.by_time THEN
            range_from := to_timestamp(part.lo)::text;
            range_to := to_timestamp(part.hi)::text;
        ELSE
            range_from := part.lo::text;
            range_to := part.hi::text;
        END IF;
        moved_rows := 0;
        BEGIN
            IF is_queue_table THEN
                EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', part.part);
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', part.part) INTO STRICT not_empty;
                IF not_empty THEN
                    action := 'kept: still holds messages';
                    RETURN NEXT;
                    CONTINUE;
                END IF;
            END IF;
            EXECUTE format('DROP TABLE %s', part.part);
            action := 'dropped';
        EXCEPTION WHEN lock_not_available THEN
            action := 'skipped: lock timeout';
        END;
        RETURN NEXT;
    END LOOP;
END;
$fn$;

-- Start of each partition-sized range that has rows in the default partition.
CREATE FUNCTION pgmq._howdah_default_ranges(
    default_name text, key_column text, p pgmq._howdah_partitioned, has_default boolean
)
RETURNS TABLE (lo numeric)
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF NOT has_default THEN
        RETURN;
    END IF;
    IF p.by_time THEN
        RETURN QUERY EXECUTE format(
            'SELECT DISTINCT extract(epoch FROM date_bin($1, %I, $2)) FROM pgmq.%I', key_column, default_name)
            USING p.time_span, '2001-01-01 00:00:00+00'::timestamp with time zone;
    ELSE
        RETURN QUERY EXECUTE format('SELECT DISTINCT floor(%I / $1::numeric) * $1 FROM pgmq.%I', key_column, default_name)
            USING p.id_span::numeric;
    END IF;
END;
$fn$;

-- Keeps premade partitions ahead and drops expired ones, for one queue or (NULL) all partitioned queues.
-- Returns one row per partition created, dropped, kept or skipped; nothing for a queue that is not
-- partitioned (so a maintenance loop may call it for every queue), and 42P01 for a queue that does not exist.
CREATE FUNCTION pgmq.maintain_partitions(queue_name text DEFAULT NULL)
RETURNS TABLE (
    queue text, partition_table text, action text, range_from text, range_to text, moved_rows bigint
)
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $fn$
DECLARE
    h record;
    t record;
BEGIN
    IF queue_name IS NOT NULL THEN
        PERFORM pgmq._howdah_resolve(queue_name);
    END IF;
    FOR h IN
        SELECT q.queue_name AS name, q.q_table, q.a_table, x AS p
          FROM pgmq._howdah_queue AS q
          JOIN pgmq._howdah_partitioned AS x ON x.queue_key = q.queue_key
         WHERE maintain_partitions.queue_name IS NULL OR q.queue_key = lower(maintain_partitions.queue_name)
         ORDER BY q.queue_key
    LOOP
        IF (h.p).queue_table THEN
            FOR t IN SELECT * FROM pgmq._howdah_maintain_table(
                         h.name, h.q_table, CASE WHEN (h.p).by_time THEN 'enqueued_at' ELSE 'msg_id' END, h.p, true, NULL)
            LOOP
                queue := h.name;
                partition_table := t.partition_table;
                action := t.action;
                range_from := t.range_from;
                range_to := t.range_to;
                moved_rows := t.moved_rows;
                RETURN NEXT;
            END LOOP;
        END IF;
        FOR t IN SELECT * FROM pgmq._howdah_maintain_table(
                     h.name, h.a_table, CASE WHEN (h.p).by_time THEN 'archived_at' ELSE 'msg_id' END, h.p, false,
                     CASE WHEN (h.p).queue_table THEN h.q_table END)
        LOOP
            queue := h.name;
            partition_table := t.partition_table;
            action := t.action;
            range_from := t.range_from;
            range_to := t.range_to;
            moved_rows := t.moved_rows;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END;
$fn$;

-- The archive table of a partitioned queue (or of a converted archive), with its DEFAULT partition.
CREATE FUNCTION pgmq._howdah_create_partitioned_archive(queue_name text, a text, by_time boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    EXECUTE format(
        'CREATE TABLE pgmq.%I ('
        'msg_id bigint NOT NULL, '
        'read_ct integer NOT NULL DEFAULT 0, '
        'enqueued_at timestamp with time zone NOT NULL DEFAULT now(), '
        'last_read_at timestamp with time zone, '
        'archived_at timestamp with time zone NOT NULL DEFAULT now(), '
        'vt timestamp with time zone NOT NULL, '
        'message jsonb, '
        'headers jsonb, '
        'PRIMARY KEY (msg_id%s)) PARTITION BY RANGE (%s)',
        a, CASE WHEN by_time THEN ', archived_at' ELSE '' END, CASE WHEN by_time THEN 'archived_at' ELSE 'msg_id' END);
    EXECUTE format('CREATE INDEX %I ON pgmq.%I (archived_at)', 'archived_at_idx_' || queue_name, a);
    EXECUTE format('CREATE TABLE pgmq.%I PARTITION OF pgmq.%I DEFAULT', a || '_default', a);
END;
$fn$;

CREATE FUNCTION pgmq.create_partitioned(
    queue_name text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000',
    premake integer DEFAULT 4
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    p pgmq._howdah_partitioned := pgmq._howdah_parse_partitioning(partition_interval, retention_interval, premake, true);
    q text := 'q_' || lower(queue_name);
    a text := 'a_' || lower(queue_name);
BEGIN
    IF NOT pgmq._howdah_begin_create(queue_name) THEN
        RETURN;
    END IF;
    PERFORM pgmq._howdah_claim_names(queue_name, ARRAY[q, a, q || '_vt_idx', 'archived_at_idx_' || queue_name,
                                                       q || '_default', a || '_default']);
    EXECUTE format(
        'CREATE TABLE pgmq.%I ('
        'msg_id bigint GENERATED BY DEFAULT AS IDENTITY, '
        'read_ct integer NOT NULL DEFAULT 0, '
        'enqueued_at timestamp with time zone NOT NULL DEFAULT now(), '
        'last_read_at timestamp with time zone, '
        'vt timestamp with time zone NOT NULL, '
        'message jsonb, '
        'headers jsonb, '
        'PRIMARY KEY (msg_id%s)) PARTITION BY RANGE (%s)',
        q, CASE WHEN p.by_time THEN ', enqueued_at' ELSE '' END, CASE WHEN p.by_time THEN 'enqueued_at' ELSE 'msg_id' END);
    EXECUTE format('CREATE INDEX %I ON pgmq.%I (vt)', q || '_vt_idx', q);
    EXECUTE format('CREATE TABLE pgmq.%I PARTITION OF pgmq.%I DEFAULT', q || '_default', q);
    PERFORM pgmq._howdah_create_partitioned_archive(queue_name, a, p.by_time);
    PERFORM pgmq._howdah_register(queue_name, true, false);
    p.queue_key := lower(queue_name);
    INSERT INTO pgmq._howdah_partitioned SELECT p.*;
    PERFORM pgmq.maintain_partitions(queue_name);
END;
$fn$;

-- Turns a plain queue's archive into a partitioned one (the queue table itself stays as it is). Existing
-- archived messages are moved into the new partitions; the ones already past retention are dropped.
CREATE FUNCTION pgmq.convert_archive_partitioned(
    table_name text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000',
    leading_partition integer DEFAULT 10
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    p pgmq._howdah_partitioned :=
        pgmq._howdah_parse_partitioning(partition_interval, retention_interval, leading_partition, false);
    h pgmq._howdah_queue;
    old_name text;
BEGIN
    PERFORM pgmq._howdah_lock_queue_ddl();
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(convert_archive_partitioned.table_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_no_such_queue(table_name);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c
                WHERE c.oid = format('pgmq.%I', h.a_table)::regclass AND c.relkind = 'p') THEN
        RAISE NOTICE 'the archive of queue "%" is already partitioned', h.queue_name;
        RETURN;
    END IF;
    old_name := h.a_table || '_old';
    PERFORM pgmq._howdah_claim_names(h.queue_name, ARRAY[old_name, h.a_table || '_default']);
    EXECUTE format('LOCK TABLE pgmq.%I IN ACCESS EXCLUSIVE MODE', h.a_table);
    EXECUTE format('ALTER TABLE pgmq.%I RENAME TO %I', h.a_table, old_name);
    EXECUTE format('DROP INDEX pgmq.%I', 'archived_at_idx_' || h.queue_name);
    PERFORM pgmq._howdah_create_partitioned_archive(h.queue_name, h.a_table, p.by_time);
    EXECUTE format('INSERT INTO pgmq.%I SELECT * FROM pgmq.%I', h.a_table, old_name);
    EXECUTE format('DROP TABLE pgmq.%I', old_name);
    p.queue_key := h.queue_key;
    INSERT INTO pgmq._howdah_partitioned SELECT p.*;
    PERFORM pgmq.maintain_partitions(h.queue_name);
END;
$fn$;
