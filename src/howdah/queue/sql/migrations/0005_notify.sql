-- Howdah queue, part 5: NOTIFY on insert, with PGMQ's table, channel names and payloads.
--
-- After messages are inserted into pgmq.q_<name>, listeners on channel 'pgmq.q_<name>.INSERT' (the queue
-- table's name, i.e. the lower-cased queue name, as in PGMQ) get a notification with an empty payload, at most
-- once per throttle_interval_ms (0 = every insert statement).
--
-- Differences from PGMQ, for throughput: the trigger fires once per INSERT statement instead of once per row
-- (send_batch of 100 messages notifies once, and works for partitioned queues, where a row trigger would run on
-- the partition and use the partition's name as channel); with throttle_interval_ms = 0 it does not write to
-- pgmq.notify_insert_throttle at all (PGMQ updates the same row on every insert, which serialises concurrent
-- senders), so last_notified_at only moves for throttled queues; with throttling, a sender only writes that
-- row when the interval has elapsed, and waits for another sender only in that case.

CREATE UNLOGGED TABLE pgmq.notify_insert_throttle (
    queue_name           varchar                  NOT NULL UNIQUE
        CONSTRAINT notify_insert_throttle_meta_queue_name_fk
            REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
    throttle_interval_ms integer                  NOT NULL DEFAULT 0,
    last_notified_at     timestamp with time zone NOT NULL DEFAULT to_timestamp(0)
);

CREATE INDEX idx_notify_throttle_active
    ON pgmq.notify_insert_throttle (queue_name, last_notified_at)
    WHERE throttle_interval_ms > 0;

-- Statement-level AFTER INSERT trigger. TG_ARGV[0] is the queue's name in pgmq.meta, TG_ARGV[1] the channel.
CREATE FUNCTION pgmq.notify_queue_listeners()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    t pgmq.notify_insert_throttle;
BEGIN
    SELECT * INTO t FROM pgmq.notify_insert_throttle AS x WHERE x.queue_name = TG_ARGV[0];
    IF NOT FOUND THEN
        RETURN NULL;  -- disabled by a concurrent transaction
    END IF;
    IF t.throttle_interval_ms > 0 THEN
        IF clock_timestamp() - t.last_notified_at < make_interval(secs => t.throttle_interval_ms / 1000.0) THEN
            RETURN NULL;
        END IF;
        -- Claim this interval. If another sender claims it concurrently we wait for it; when it commits, our
        -- condition no longer holds and only its notification goes out; when it rolls back, ours does.
        UPDATE pgmq.notify_insert_throttle AS x
           SET last_notified_at = clock_timestamp()
         WHERE x.queue_name = TG_ARGV[0] AND x.last_notified_at = t.last_notified_at;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM pg_notify(TG_ARGV[1], NULL);
    RETURN NULL;
END;
$fn$;

CREATE FUNCTION pgmq._howdah_drop_notify_trigger(q_table text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS t
                WHERE t.tgrelid = format('pgmq.%I', q_table)::regclass
                  AND t.tgname = 'trigger_notify_queue_insert_listeners') THEN
        EXECUTE format('DROP TRIGGER trigger_notify_queue_insert_listeners ON pgmq.%I', q_table);
    END IF;
END;
$fn$;

CREATE FUNCTION pgmq.disable_notify_insert(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    h pgmq._howdah_queue;
BEGIN
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(disable_notify_insert.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_no_such_queue(queue_name);
    END IF;
    PERFORM pgmq._howdah_drop_notify_trigger(h.q_table);
    DELETE FROM pgmq.notify_insert_throttle AS x WHERE x.queue_name = h.queue_name;
END;
$fn$;

CREATE FUNCTION pgmq.enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    h pgmq._howdah_queue;
BEGIN
    IF throttle_interval_ms IS NULL THEN PERFORM pgmq._howdah_null('throttle_interval_ms'); END IF;
    IF throttle_interval_ms < 0 THEN PERFORM pgmq._howdah_negative('throttle_interval_ms', throttle_interval_ms); END IF;
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(enable_notify_insert.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_no_such_queue(queue_name);
    END IF;
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

CREATE FUNCTION pgmq.update_notify_insert(queue_name text, throttle_interval_ms integer)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    h pgmq._howdah_queue;
BEGIN
    IF throttle_interval_ms IS NULL THEN PERFORM pgmq._howdah_null('throttle_interval_ms'); END IF;
    IF throttle_interval_ms < 0 THEN PERFORM pgmq._howdah_negative('throttle_interval_ms', throttle_interval_ms); END IF;
    SELECT * INTO h FROM pgmq._howdah_queue AS x WHERE x.queue_key = lower(update_notify_insert.queue_name);
    IF NOT FOUND THEN
        PERFORM pgmq._howdah_no_such_queue(queue_name);
    END IF;
    UPDATE pgmq.notify_insert_throttle AS x
       SET throttle_interval_ms = update_notify_insert.throttle_interval_ms, last_notified_at = to_timestamp(0)
     WHERE x.queue_name = h.queue_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'queue "%" does not have notify_insert enabled', queue_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Enable it first with pgmq.enable_notify_insert().';
    END IF;
END;
$fn$;

CREATE FUNCTION pgmq.list_notify_insert_throttles()
RETURNS TABLE (queue_name text, throttle_interval_ms integer, last_notified_at timestamp with time zone)
STABLE
LANGUAGE sql
AS $fn$
    SELECT t.queue_name, t.throttle_interval_ms, t.last_notified_at
      FROM pgmq.notify_insert_throttle AS t
     ORDER BY t.queue_name;
$fn$;
