-- Howdah queue, part 12: partitioned queues take month and year intervals.
--
-- A time partition_interval may now also be a whole number of months or years ('1 month', '3 months',
-- '1 year'), as PGMQ users pass them on to pg_partman; an interval mixing months with days or seconds is still
-- refused. Month partitions start on the first of a month, counted from 2001-01-01 in UTC (so '3 months' gives
-- quarters), and are named like the others (<table>_pYYYYMMDDHH24MI). Retention is counted in UTC calendar time
-- ('1 month' back from today's date), partitions of seconds-to-weeks intervals keep their date_bin boundaries.
--
-- The functions are those of 0011 (0004 for _howdah_default_ranges) but for these changes.

-- How many months an interval spans in its months field ('1 year 2 months' = 14; '30 days' = 0).
CREATE FUNCTION pgmq._howdah_months(span interval)
RETURNS integer
IMMUTABLE
LANGUAGE sql
AS $fn$
    SELECT (extract(year FROM span) * 12 + extract(month FROM span))::integer;
$fn$;

-- The start of the partition range that holds `ts`: date_bin from 2001-01-01 UTC, or for month spans the first
-- of the month that is a whole number of spans after January 2001 (UTC).
CREATE FUNCTION pgmq._howdah_bin_start(span interval, ts timestamp with time zone)
RETURNS timestamp with time zone
IMMUTABLE
LANGUAGE sql
AS $fn$
    SELECT CASE
        WHEN pgmq._howdah_months(span) = 0 THEN date_bin(span, ts, timestamp with time zone '2001-01-01 00:00:00+00')
        ELSE (timestamp '2001-01-01' + make_interval(months => (floor(
                 ((extract(year FROM ts AT TIME ZONE 'UTC') - 2001) * 12 + extract(month FROM ts AT TIME ZONE 'UTC') - 1)
                 / pgmq._howdah_months(span)) * pgmq._howdah_months(span))::integer)) AT TIME ZONE 'UTC'
    END;
$fn$;

-- The bound `n` ranges after the range that starts at `lo` (epoch seconds for time partitions, else msg_id).
CREATE FUNCTION pgmq._howdah_bin_after(p pgmq._howdah_partitioned, lo numeric, n integer)
RETURNS numeric
IMMUTABLE
LANGUAGE sql
AS $fn$
    SELECT CASE
        WHEN NOT p.by_time THEN lo + n * p.id_span
        WHEN pgmq._howdah_months(p.time_span) = 0 THEN lo + n * extract(epoch FROM p.time_span)
        ELSE extract(epoch FROM ((to_timestamp(lo) AT TIME ZONE 'UTC')
                                 + make_interval(months => n * pgmq._howdah_months(p.time_span))) AT TIME ZONE 'UTC')
    END;
$fn$;

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
        IF (pgmq._howdah_months(p.time_span) = 0
            AND (p.time_span < interval '1 second' OR extract(epoch FROM p.time_span)::numeric % 1 <> 0))
           OR (pgmq._howdah_months(p.time_span) <> 0
               AND p.time_span <> make_interval(months => pgmq._howdah_months(p.time_span))) THEN
            RAISE EXCEPTION 'partition_interval % is not supported: use a whole number of seconds, minutes, hours, days or weeks, or of months or years (not both)',
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
    parent regclass := format('pgmq.%I', parent_name)::regclass;
    default_name text := parent_name || '_default';
    mirror regclass := CASE WHEN mirror_name IS NOT NULL THEN format('pgmq.%I', mirror_name)::regclass END;
    has_default boolean;
    step numeric;
    newest numeric;   -- newest msg_id handed out, or now() in epoch seconds
    first_lo numeric;
    cutoff numeric;   -- partitions whose whole range ends by here are past retention
    b_lo numeric;
    b_hi numeric;
    lo_lit text;
    hi_lit text;
    part_name text;
    not_empty boolean;
    moved bigint;
    part record;
BEGIN
    has_default := to_regclass(format('pgmq.%I', default_name)) IS NOT NULL;
    IF p.by_time THEN
        newest := extract(epoch FROM now());
        first_lo := extract(epoch FROM pgmq._howdah_bin_start(p.time_span, now()));
        cutoff := extract(epoch FROM ((now() AT TIME ZONE 'UTC') - p.time_retention) AT TIME ZONE 'UTC');
    ELSE
        step := p.id_span;
        newest := coalesce(pg_catalog.pg_sequence_last_value(
            pg_catalog.pg_get_serial_sequence(format('pgmq.%I', 'q_' || lower(queue)), 'msg_id')::regclass), 0);
        first_lo := floor(newest / step) * step;
        cutoff := newest - p.id_retention;
    END IF;
    IF is_queue_table THEN
        cutoff := newest;
    END IF;

    -- Partitions needed: the current one, `premake` ahead, one for every range the default partition holds,
    -- and (for a msg_id-partitioned archive) one for every range of the queue table within retention, since
    -- those messages may still be archived.
    FOR b_lo IN
        SELECT pgmq._howdah_bin_after(p, first_lo, g) FROM generate_series(0, p.premake) AS g
        UNION
        SELECT d.lo FROM pgmq._howdah_default_ranges(default_name, key_column, p, has_default) AS d
        UNION
        SELECT m.lo FROM pgmq._howdah_partitions(mirror, false) AS m
         WHERE NOT p.by_time AND NOT m.is_default AND m.lo IS NOT NULL
           AND m.hi > newest - p.id_retention AND m.hi - m.lo = step
        ORDER BY 1
    LOOP
        b_hi := pgmq._howdah_bin_after(p, b_lo, 1);
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pgmq._howdah_partitions(parent, p.by_time) AS x
             WHERE NOT x.is_default AND (x.lo IS NULL OR x.lo < b_hi) AND (x.hi IS NULL OR x.hi > b_lo));
        IF p.by_time THEN
            lo_lit := to_timestamp(b_lo)::text;
            hi_lit := to_timestamp(b_hi)::text;
            part_name := parent_name || '_p' || to_char(to_timestamp(b_lo) AT TIME ZONE 'UTC',
                                                        CASE WHEN (b_hi - b_lo) % 60 = 0 THEN 'YYYYMMDDHH24MI'
                                                             ELSE 'YYYYMMDDHH24MISS' END);
        ELSE
            lo_lit := b_lo::bigint::text;
            hi_lit := least(b_hi, 9223372036854775807)::bigint::text;
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
           AND x.hi <= cutoff
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
CREATE OR REPLACE FUNCTION pgmq._howdah_default_ranges(
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
            'SELECT DISTINCT extract(epoch FROM pgmq._howdah_bin_start($1, %I)) FROM pgmq.%I', key_column, default_name)
            USING p.time_span;
    ELSE
        RETURN QUERY EXECUTE format('SELECT DISTINCT floor(%I / $1::numeric) * $1 FROM pgmq.%I', key_column, default_name)
            USING p.id_span::numeric;
    END IF;
END;
$fn$;
