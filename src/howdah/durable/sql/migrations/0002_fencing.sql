-- Howdah durable workflows 0002: fenced runs, workflow deadlines.
--
-- A run holds its workflow through the dispatch message it read -- (msg_id, read_ct): every read of a message
-- increments its read_ct, so a later reader changes it -- until that message's vt, and through its fencing
-- token: workflows.attempts, the claim epoch, incremented by every claim. Every write of a run (checkpoint,
-- signal taken, suspend, finish) checks the token under a row lock that a concurrent claim conflicts with, and
-- is refused with HW423 once a later claim exists. Before each step attempt the worker makes sure it still holds
-- the lease (`_hold` confirms the token and the read count and extends vt), so a run that has lost its workflow
-- starts nothing more.

ALTER TABLE howdah.workflows
    ADD COLUMN claimed_read_ct integer,      -- read_ct of the dispatch message when the current run claimed it
    ADD COLUMN deadline_at     timestamptz;  -- past it the workflow and its children are cancelled

-- The workflow row of the run holding fencing token `fence`, share-locked until the caller's transaction ends
-- (a claim cannot slip in between this check and the caller's write); HW423 for any other run.
CREATE FUNCTION howdah._fenced(wf_id text, fence integer)
RETURNS howdah.workflows
LANGUAGE plpgsql AS $fn$
DECLARE
    wf howdah.workflows;
BEGIN
    SELECT * INTO wf FROM howdah.workflows w WHERE w.id = wf_id FOR SHARE;
    IF NOT FOUND OR wf.attempts <> fence OR wf.status <> 'running' THEN
        RAISE EXCEPTION 'workflow "%" is no longer held by this run (fencing token %; now % and %)',
            wf_id, fence, wf.attempts, coalesce(wf.status, 'deleted') USING ERRCODE = 'HW423';
    END IF;
    RETURN wf;
END;
$fn$;

-- Seconds left before the message read at `read_ct` may be read by another worker (negative: it may already;
-- NULL: it has been read again since, or is gone -- that lease is lost).
CREATE FUNCTION howdah._lease_left(queue_name text, msg_id bigint, read_ct integer)
RETURNS double precision
LANGUAGE plpgsql AS $fn$
DECLARE
    seconds double precision;
BEGIN
    EXECUTE format('SELECT extract(epoch FROM m.vt - clock_timestamp())::double precision FROM pgmq.%I m '
                   'WHERE m.msg_id = $1 AND m.read_ct = $2', pgmq.format_table_name(queue_name, 'q'))
    INTO seconds
    USING msg_id, read_ct;
    RETURN seconds;
END;
$fn$;

-- Take a workflow for a run from message `message`, read at `message_read_ct`. outcome: 'claimed' (the run's
-- fencing token is `attempts`), 'lost' (the message was read again since: the other reader owns it; leave the
-- message alone) or 'stale' (the workflow has finished, or this is not its dispatch message: drop it).
DROP FUNCTION howdah._claim(text, bigint);
CREATE FUNCTION howdah._claim(wf_id text, message bigint, message_read_ct integer,
                              OUT outcome text, OUT name text, OUT args jsonb, OUT cancel_requested boolean,
                              OUT attempts integer, OUT steps jsonb, OUT lease_left double precision,
                              OUT deadline_left double precision)
LANGUAGE plpgsql AS $fn$
DECLARE
    wf howdah.workflows;
BEGIN
    SELECT * INTO wf FROM howdah.workflows w WHERE w.id = wf_id FOR UPDATE;
    IF NOT FOUND OR wf.status IN ('succeeded', 'failed', 'cancelled') OR wf.msg_id IS DISTINCT FROM message THEN
        outcome := 'stale';
        RETURN;
    END IF;
    lease_left := howdah._lease_left(wf.queue_name, message, message_read_ct);
    IF lease_left IS NULL THEN
        outcome := 'lost';
        RETURN;
    END IF;
    UPDATE howdah.workflows w
       SET status = 'running', attempts = w.attempts + 1, claimed_read_ct = message_read_ct, wake_at = NULL,
           waiting_for = NULL, started_at = coalesce(w.started_at, clock_timestamp()),
           updated_at = clock_timestamp()
     WHERE w.id = wf_id
    RETURNING w.name, w.args, w.cancel_requested, w.attempts INTO name, args, cancel_requested, attempts;
    deadline_left := extract(epoch FROM wf.deadline_at - clock_timestamp());
    SELECT coalesce(jsonb_agg(jsonb_build_array(s.step_index, s.name, s.kind, s.result, s.error)
                              ORDER BY s.step_index), '[]')
      INTO steps FROM howdah.steps s WHERE s.workflow_id = wf_id;
    outcome := 'claimed';
END;
$fn$;

-- Confirm that the run holding `fence` still holds its lease and extend it to at least `lease` seconds from now.
-- Returns the seconds left and whether cancellation was requested; HW423 when the lease is lost.
CREATE FUNCTION howdah._hold(wf_id text, fence integer, lease integer,
                             OUT lease_left double precision, OUT cancel_requested boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
    wf howdah.workflows := howdah._fenced(wf_id, fence);
BEGIN
    EXECUTE format('UPDATE pgmq.%I m SET vt = greatest(m.vt, clock_timestamp() + make_interval(secs => $3)) '
                   'WHERE m.msg_id = $1 AND m.read_ct = $2 '
                   'RETURNING extract(epoch FROM m.vt - clock_timestamp())::double precision',
                   pgmq.format_table_name(wf.queue_name, 'q'))
    INTO lease_left
    USING wf.msg_id, wf.claimed_read_ct, lease;
    IF lease_left IS NULL THEN
        RAISE EXCEPTION 'the dispatch message of workflow "%" was read by another worker: this run lost it', wf_id
            USING ERRCODE = 'HW423';
    END IF;
    cancel_requested := wf.cancel_requested;
END;
$fn$;

-- Record one step of the run holding `fence`. Returns whether cancellation was requested and the seconds left
-- on the run's lease (NULL: lost). A checkpoint that already exists, or a later claim, aborts it with HW423.
DROP FUNCTION howdah._take_signal(text, integer, text, text, timestamptz);
DROP FUNCTION howdah._checkpoint(text, integer, text, text, jsonb, jsonb, integer, timestamptz);
CREATE FUNCTION howdah._checkpoint(wf_id text, fence integer, idx integer, step_name text, step_kind text,
                                   step_result jsonb, step_error jsonb, step_attempts integer,
                                   step_started timestamptz,
                                   OUT cancel_requested boolean, OUT lease_left double precision)
LANGUAGE plpgsql AS $fn$
DECLARE
    wf howdah.workflows := howdah._fenced(wf_id, fence);
BEGIN
    INSERT INTO howdah.steps (workflow_id, step_index, name, kind, result, error, attempts, started_at)
    VALUES (wf_id, idx, step_name, step_kind, step_result, step_error, step_attempts, step_started)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'step % of workflow "%" was already recorded by another run', idx, wf_id
            USING ERRCODE = 'HW423';
    END IF;
    cancel_requested := wf.cancel_requested;
    lease_left := howdah._lease_left(wf.queue_name, wf.msg_id, wf.claimed_read_ct);
END;
$fn$;

-- Consume the oldest pending signal `signal_name` as step `idx`; not taken (and nothing recorded) when none.
CREATE FUNCTION howdah._take_signal(wf_id text, fence integer, idx integer, step_name text, signal_name text,
                                    step_started timestamptz, OUT taken boolean, OUT payload jsonb)
LANGUAGE plpgsql AS $fn$
DECLARE
    sig_id bigint;
BEGIN
    PERFORM howdah._fenced(wf_id, fence);
    SELECT s.id, s.payload INTO sig_id, payload FROM howdah.signals s
     WHERE s.workflow_id = wf_id AND s.name = signal_name AND s.consumed_at IS NULL
     ORDER BY s.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    taken := sig_id IS NOT NULL;
    IF taken THEN
        UPDATE howdah.signals SET consumed_at = clock_timestamp() WHERE id = sig_id;
        PERFORM howdah._checkpoint(wf_id, fence, idx, step_name, 'signal', jsonb_build_object('payload', payload),
                                   NULL, 1, step_started);
    END IF;
END;
$fn$;

-- Park the running workflow of the run holding `fence` until `wake` or its deadline, whichever comes first (see
-- 0001 for why it may be woken at once instead).
DROP FUNCTION howdah._suspend(text, text, timestamptz, text, text[], text[]);
CREATE FUNCTION howdah._suspend(wf_id text, fence integer, new_status text, wake timestamptz, reason text,
                                signal_names text[] DEFAULT NULL, child_ids text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    wf    howdah.workflows := howdah._fenced(wf_id, fence);
    ready boolean;
BEGIN
    UPDATE howdah.workflows w
       SET status = new_status, wake_at = least(wake, w.deadline_at), waiting_for = reason,
           updated_at = clock_timestamp()
     WHERE w.id = wf_id
    RETURNING * INTO wf;
    ready := wf.cancel_requested
          OR (signal_names IS NOT NULL AND EXISTS (
                  SELECT 1 FROM howdah.signals s
                   WHERE s.workflow_id = wf_id AND s.name = ANY (signal_names) AND s.consumed_at IS NULL))
          OR (child_ids IS NOT NULL AND EXISTS (
                  SELECT 1 FROM howdah.workflows c
                   WHERE c.id = ANY (child_ids) AND c.status IN ('succeeded', 'failed', 'cancelled')));
    PERFORM howdah._park(wf.queue_name, wf.msg_id, CASE WHEN ready THEN clock_timestamp() ELSE wf.wake_at END);
END;
$fn$;

-- End the workflow of the run holding `fence` (see howdah._finish).
CREATE FUNCTION howdah._end_run(wf_id text, fence integer, final_status text, final_result jsonb,
                                final_error jsonb)
RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM howdah._fenced(wf_id, fence);
    PERFORM howdah._finish(wf_id, final_status, final_result, final_error);
END;
$fn$;

-- The workflow of the run holding `fence` is past its deadline: cancel its children (recursively) and end it as
-- cancelled with a DeadlineExceeded error.
CREATE FUNCTION howdah._expire(wf_id text, fence integer)
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    wf    howdah.workflows := howdah._fenced(wf_id, fence);
    child text;
BEGIN
    FOR child IN
        SELECT c.id FROM howdah.workflows c
         WHERE c.parent_id = wf_id AND c.status NOT IN ('succeeded', 'failed', 'cancelled') ORDER BY c.seq
    LOOP
        PERFORM howdah.cancel_workflow(child);
    END LOOP;
    PERFORM howdah._finish(wf_id, 'cancelled', NULL, jsonb_build_object(
        'type', 'DeadlineExceeded',
        'message', format('the workflow''s deadline (%s) has passed', wf.deadline_at)));
END;
$fn$;

-- Make a message read at `read_ct` visible again after `delay` seconds -- only while no one has read it since.
-- For a run stopped by an infrastructure error (lost connection, Postgres restarting): it is retried promptly,
-- not after a handler-failure backoff.
CREATE FUNCTION howdah._release(queue_name text, msg_id bigint, read_ct integer, delay double precision)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    released bigint;
BEGIN
    EXECUTE format('UPDATE pgmq.%I m SET vt = clock_timestamp() + make_interval(secs => $3) '
                   'WHERE m.msg_id = $1 AND m.read_ct = $2 RETURNING m.msg_id',
                   pgmq.format_table_name(queue_name, 'q'))
    INTO released
    USING msg_id, read_ct, delay;
    RETURN released IS NOT NULL;
END;
$fn$;

-- start_workflow gains `timeout`: the workflow (and its children) are cancelled once it has run that long.
DROP FUNCTION howdah.start_workflow(text, jsonb, text, text, text);
CREATE FUNCTION howdah.start_workflow(
    name        text,
    args        jsonb    DEFAULT '{}',
    workflow_id text     DEFAULT NULL,
    key         text     DEFAULT NULL,
    parent_id   text     DEFAULT NULL,
    timeout     interval DEFAULT NULL,
    OUT id      text,
    OUT status  text,
    OUT created boolean
)
LANGUAGE plpgsql AS $fn$
DECLARE
    wf_type   howdah.workflow_types;
    wf_id     text := coalesce(start_workflow.workflow_id, gen_random_uuid()::text);
    wf_key    text := start_workflow.key;
    holds     boolean := false;
    message   bigint;
BEGIN
    IF start_workflow.name IS NULL THEN
        RAISE EXCEPTION 'workflow name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO wf_type FROM howdah.workflow_types t WHERE t.name = start_workflow.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown workflow "%": no worker has registered it', start_workflow.name
            USING ERRCODE = 'HW400';
    END IF;
    IF args IS NULL OR jsonb_typeof(args) <> 'object' THEN
        RAISE EXCEPTION 'workflow args must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(wf_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'workflow_id must have 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF start_workflow.timeout IS NOT NULL AND start_workflow.timeout <= interval '0' THEN
        RAISE EXCEPTION 'a workflow timeout must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF wf_key IS NULL AND wf_type.key_field IS NOT NULL THEN
        wf_key := args ->> wf_type.key_field;
    END IF;

    IF wf_key IS NOT NULL THEN
        -- Serialise starts of one key so "is someone active?" and the insert below cannot interleave.
        PERFORM pg_advisory_xact_lock(hashtextextended('howdah.key:' || wf_key, 0));
    END IF;
    -- Same id again: idempotent, whatever its state (checked after the key lock, so a concurrent start of the
    -- same id that just committed is found here rather than refused as a key conflict).
    SELECT w.id, w.status INTO id, status FROM howdah.workflows w WHERE w.id = wf_id;
    IF FOUND THEN
        created := false;
        RETURN;
    END IF;
    IF wf_key IS NOT NULL THEN
        holds := NOT EXISTS (SELECT 1 FROM howdah.workflows w WHERE w.key = wf_key AND w.holds_key);
        IF NOT holds AND wf_type.on_conflict = 'reject' THEN
            RAISE EXCEPTION 'workflow key "%" already has an active workflow', wf_key
                USING ERRCODE = 'HW409',
                      DETAIL = (SELECT 'active workflow: ' || w.id FROM howdah.workflows w
                                 WHERE w.key = wf_key AND w.holds_key);
        END IF;
    END IF;

    INSERT INTO howdah.workflows (id, name, args, key, holds_key, parent_id, queue_name, deadline_at)
    VALUES (wf_id, start_workflow.name, args, wf_key, holds, start_workflow.parent_id, wf_type.queue_name,
            clock_timestamp() + start_workflow.timeout)
    ON CONFLICT ON CONSTRAINT workflows_pkey DO NOTHING;
    IF NOT FOUND THEN  -- a concurrent start of the same id won the race: return its workflow
        SELECT w.id, w.status INTO id, status FROM howdah.workflows w WHERE w.id = wf_id;
        created := false;
        RETURN;
    END IF;

    IF wf_key IS NULL OR holds THEN
        message := pgmq.send(wf_type.queue_name, jsonb_build_object('workflow_id', wf_id));
        UPDATE howdah.workflows w SET msg_id = message WHERE w.id = wf_id;
    END IF;
    id := wf_id;
    status := 'pending';
    created := true;
END;
$fn$;

-- retry_workflow as in 0001, and it also drops the deadline (a workflow cancelled by its deadline could not run
-- again otherwise).
CREATE OR REPLACE FUNCTION howdah.retry_workflow(workflow_id text)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    wf      howdah.workflows;
    holds   boolean := true;
    message bigint;
BEGIN
    SELECT * INTO wf FROM howdah.workflows w WHERE w.id = retry_workflow.workflow_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow "%" does not exist', retry_workflow.workflow_id USING ERRCODE = 'HW404';
    END IF;
    IF wf.status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'workflow "%" is %: only failed or cancelled workflows can be retried', wf.id, wf.status
            USING ERRCODE = 'HW409';
    END IF;
    DELETE FROM howdah.steps s WHERE s.workflow_id = wf.id AND s.error IS NOT NULL;
    IF wf.key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('howdah.key:' || wf.key, 0));
        holds := NOT EXISTS (SELECT 1 FROM howdah.workflows w WHERE w.key = wf.key AND w.holds_key);
    END IF;
    IF holds THEN
        message := pgmq.send(wf.queue_name, jsonb_build_object('workflow_id', wf.id));
    END IF;
    UPDATE howdah.workflows w
       SET status = 'pending', result = NULL, error = NULL, finished_at = NULL, cancel_requested = false,
           deadline_at = NULL, holds_key = (wf.key IS NOT NULL AND holds), updated_at = clock_timestamp(),
           msg_id = message
     WHERE w.id = wf.id;
    RETURN 'pending';
END;
$fn$;
