-- Howdah queue, part 11: partitioned queues take sub-minute intervals, and check their arguments in PGMQ's order.
--
-- A time partition_interval may now be any whole number of seconds, like the '5 seconds' or '10 seconds' PGMQ
-- users pass on to pg_partman; partitions of an interval that is not a whole number of minutes are named
-- with their start to the second (<table>_pYYYYMMDDHH24MISS, UTC), the others as before (_pYYYYMMDDHH24MI).
-- Months and years are still refused: partition boundaries are aligned with date_bin, which has no months.
-- create_partitioned checks the queue name before its partitioning arguments, as PGMQ does, and a premake
-- below 1 raises PGMQ's error (P0001 'premake must be at least 1, got N').
--
-- The functions are those of 0004 but for these changes.

CREATE OR REPLACE FUNCTION pgmq._howdah_parse_partitioning(
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
        RAISE EXCEPTION 'premake must be at least 1, got %', premake USING ERRCODE = 'raise_exception';
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
           OR p.time_span < interval '1 second'
           OR extract(epoch FROM p.time_span)::numeric % 1 <> 0 THEN
            RAISE EXCEPTION 'partition_interval % is not supported: use a whole number of seconds, minutes, hours, days or weeks (no months or years)',
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

CREATE OR REPLACE FUNCTION pgmq._howdah_maintain_table(
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
            part_name := parent_name || '_p' || to_char(to_timestamp(b_lo) AT TIME ZONE 'UTC',
                                                        CASE WHEN step % 60 = 0 THEN 'YYYYMMDDHH24MI'
                                                             ELSE 'YYYYMMDDHH24MISS' END);
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

CREATE OR REPLACE FUNCTION pgmq.create_partitioned(
    queue_name text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000',
    premake integer DEFAULT 4
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    p pgmq._howdah_partitioned;
    q text := 'q_' || lower(queue_name);
    a text := 'a_' || lower(queue_name);
BEGIN
    IF NOT pgmq._howdah_begin_create(queue_name) THEN
        RETURN;
    END IF;
    p := pgmq._howdah_parse_partitioning(partition_interval, retention_interval, premake, true);
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
