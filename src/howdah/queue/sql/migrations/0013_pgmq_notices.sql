-- Howdah queue, part 13: notices as PGMQ 1.13 sends them.
--
-- * The "does not exist, skipping" notices that stand in for PGMQ's DROP TRIGGER IF EXISTS carry SQLSTATE
--   00000, as Postgres's own do (0009 gave them 42704 and 42P01); a RAISE NOTICE without ERRCODE has it.
-- * convert_archive_partitioned of a queue whose archive is already partitioned sends PGMQ's notice,
--   'Table a_<queue>s is already partitioned' (the trailing "s" is PGMQ's), and returns before it looks at
--   its partitioning arguments, as PGMQ does.
--
-- The functions are those of 0009 and 0004 but for these changes.

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
            q_table;
    END IF;
END;
$fn$;

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
        RAISE NOTICE 'relation "pgmq.%" does not exist, skipping', 'q_' || lower(queue_name);
        RETURN;
    END IF;
    PERFORM pgmq._howdah_drop_notify_trigger(h.q_table);
    DELETE FROM pgmq.notify_insert_throttle AS x WHERE x.queue_name = h.queue_name;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.convert_archive_partitioned(
    table_name text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000',
    leading_partition integer DEFAULT 10
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    p pgmq._howdah_partitioned;
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
        RAISE NOTICE 'Table %s is already partitioned', h.a_table;
        RETURN;
    END IF;
    p := pgmq._howdah_parse_partitioning(partition_interval, retention_interval, leading_partition, false);
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
