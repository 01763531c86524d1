-- Howdah durable workflows: workflow runs, step checkpoints, signals and schedules (schema `howdah`).
-- Work is dispatched through the Howdah queue: each active workflow has exactly one message on its
-- dispatch queue (workflows.msg_id). The message's visibility timeout is the worker's lease, a sleeping or
-- waiting workflow parks its message until it should wake, and waking it is `pgmq.set_vt(…, 0)`.

CREATE SCHEMA howdah;

-- Workflow types known to the workers (registered by each app on start), so SQL can start them by name.
CREATE TABLE howdah.workflow_types (
    name          text        PRIMARY KEY,
    queue_name    text        NOT NULL,
    key_field     text,                       -- args field that is the exclusivity key (NULL: none/Python)
    on_conflict   text        NOT NULL DEFAULT 'reject' CHECK (on_conflict IN ('reject', 'queue')),
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE howdah.workflows (
    id               text        PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    name             text        NOT NULL,
    args             jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'sleeping', 'waiting', 'succeeded', 'failed',
                                       'cancelled')),
    result           jsonb,
    error            jsonb,
    attempts         integer     NOT NULL DEFAULT 0,    -- how many times a worker has (re)started the run
    key              text,
    holds_key        boolean     NOT NULL DEFAULT false, -- the one active workflow of its key
    parent_id        text        REFERENCES howdah.workflows (id) ON DELETE CASCADE,
    queue_name       text        NOT NULL,
    msg_id           bigint,                             -- its dispatch message (NULL while queued by key)
    wake_at          timestamptz,
    waiting_for      text,                               -- signal name while status = 'waiting'
    cancel_requested boolean     NOT NULL DEFAULT false,
    seq              bigint      GENERATED ALWAYS AS IDENTITY,  -- start order (key queues run in it)
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz
);
CREATE UNIQUE INDEX workflows_one_active_per_key ON howdah.workflows (key) WHERE holds_key;
CREATE INDEX workflows_key_queue ON howdah.workflows (key, seq) WHERE key IS NOT NULL AND NOT holds_key
    AND status = 'pending';
CREATE INDEX workflows_parent ON howdah.workflows (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX workflows_finished ON howdah.workflows (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX workflows_status_created ON howdah.workflows (status, created_at);

-- One row per completed step (or recorded value: time, randomness, sleep deadline, child id, signal…).
CREATE TABLE howdah.steps (
    workflow_id text        NOT NULL REFERENCES howdah.workflows (id) ON DELETE CASCADE,
    step_index  integer     NOT NULL,
    name        text        NOT NULL,
    kind        text        NOT NULL,
    result      jsonb,
    error       jsonb,
    attempts    integer     NOT NULL DEFAULT 1,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, step_index)
);

CREATE TABLE howdah.signals (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id text        NOT NULL REFERENCES howdah.workflows (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    payload     jsonb,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    consumed_at timestamptz
);
CREATE INDEX signals_pending ON howdah.signals (workflow_id, name, id) WHERE consumed_at IS NULL;

CREATE TABLE howdah.schedules (
    name          text        PRIMARY KEY,
    cron          text        NOT NULL,
    workflow_name text        NOT NULL,
    args          jsonb       NOT NULL DEFAULT '{}',
    missed        text        NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'catch_up')),
    next_run_at   timestamptz NOT NULL,
    last_run_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Start a workflow, inside the caller's transaction (rolled back with it): the outbox pattern.
-- The workflow id is the idempotency key: starting an existing id returns it unchanged (created = false).
-- key / on_conflict: at most one active workflow per key; 'reject' raises SQLSTATE HW409, 'queue' parks the
-- new run until the active one ends. Unknown names raise HW400 (a worker must have registered the type).
CREATE FUNCTION howdah.start_workflow(
    name        text,
    args        jsonb   DEFAULT '{}',
    workflow_id text    DEFAULT NULL,
    key         text    DEFAULT NULL,
    parent_id   text    DEFAULT NULL,
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

    INSERT INTO howdah.workflows (id, name, args, key, holds_key, parent_id, queue_name)
    VALUES (wf_id, start_workflow.name, args, wf_key, holds, start_workflow.parent_id, wf_type.queue_name)
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

-- Park a workflow's dispatch message until `until` (NULL: until woken).
CREATE FUNCTION howdah._park(queue_name text, msg_id bigint, until timestamptz)
RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('UPDATE pgmq.%I SET vt = $2 WHERE msg_id = $1', pgmq.format_table_name(queue_name, 'q'))
    USING msg_id, coalesce(until, 'infinity'::timestamptz);
END;
$fn$;

-- Make a parked workflow's message visible now -- only while it is still parked (vt exactly as _park set it).
-- A message a worker has already read (vt = its lease) is left alone: waking it would hand one workflow to
-- two workers at once. That worker's run sees whatever caused the wake-up (signal, child, cancel) itself.
CREATE FUNCTION howdah._wake(wf howdah.workflows)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    woke bigint;
BEGIN
    IF wf.msg_id IS NULL OR wf.status NOT IN ('sleeping', 'waiting') THEN
        RETURN false;
    END IF;
    EXECUTE format('UPDATE pgmq.%I SET vt = clock_timestamp() WHERE msg_id = $1 AND vt = $2 RETURNING msg_id',
                   pgmq.format_table_name(wf.queue_name, 'q'))
    INTO woke
    USING wf.msg_id, coalesce(wf.wake_at, 'infinity'::timestamptz);
    RETURN woke IS NOT NULL;
END;
$fn$;

-- Hand the key of a finished workflow to the next queued one (in start order) and dispatch it.
CREATE FUNCTION howdah._release_key(wf_id text)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    wf_key  text;
    next_id text;
    next_q  text;
    message bigint;
BEGIN
    UPDATE howdah.workflows SET holds_key = false WHERE id = wf_id AND holds_key RETURNING key INTO wf_key;
    IF wf_key IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('howdah.key:' || wf_key, 0));
    SELECT id, queue_name INTO next_id, next_q FROM howdah.workflows
     WHERE key = wf_key AND status = 'pending' AND NOT holds_key
     ORDER BY seq LIMIT 1 FOR UPDATE;
    IF next_id IS NOT NULL THEN
        message := pgmq.send(next_q, jsonb_build_object('workflow_id', next_id));
        UPDATE howdah.workflows SET holds_key = true, msg_id = message, updated_at = clock_timestamp()
         WHERE id = next_id;
    END IF;
    RETURN next_id;
END;
$fn$;

-- Deliver a signal; wakes the workflow at once when it waits for that name. Raises HW404 for an unknown
-- workflow and HW410 for one that has finished.
CREATE FUNCTION howdah.send_signal(workflow_id text, name text, payload jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    wf        howdah.workflows;
    signal_id bigint;
BEGIN
    IF send_signal.name IS NULL OR send_signal.name = '' THEN
        RAISE EXCEPTION 'signal name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO wf FROM howdah.workflows w WHERE w.id = send_signal.workflow_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow "%" does not exist', send_signal.workflow_id USING ERRCODE = 'HW404';
    END IF;
    IF wf.status IN ('succeeded', 'failed', 'cancelled') THEN
        RAISE EXCEPTION 'workflow "%" has finished (%); it takes no more signals', wf.id, wf.status
            USING ERRCODE = 'HW410';
    END IF;
    INSERT INTO howdah.signals (workflow_id, name, payload) VALUES (wf.id, send_signal.name, payload)
    RETURNING id INTO signal_id;
    -- Any waiting workflow is woken: a replay that does not need this signal simply waits again.
    IF wf.status = 'waiting' THEN
        PERFORM howdah._wake(wf);
    END IF;
    RETURN signal_id;
END;
$fn$;

-- Cancel a workflow and, recursively, its children. Runs that are not executing right now stop at once
-- (their dispatch message is deleted); executing ones are flagged and stop at their next step boundary.
-- Returns how many workflows were cancelled or flagged. Unknown ids raise HW404.
CREATE FUNCTION howdah.cancel_workflow(workflow_id text)
RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    wf      howdah.workflows;
    touched integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM howdah.workflows w WHERE w.id = cancel_workflow.workflow_id) THEN
        RAISE EXCEPTION 'workflow "%" does not exist', cancel_workflow.workflow_id USING ERRCODE = 'HW404';
    END IF;
    FOR wf IN
        WITH RECURSIVE tree AS (
            SELECT w.id FROM howdah.workflows w WHERE w.id = cancel_workflow.workflow_id
            UNION
            SELECT c.id FROM howdah.workflows c JOIN tree ON c.parent_id = tree.id
        )
        SELECT w.* FROM howdah.workflows w JOIN tree USING (id)
         WHERE w.status NOT IN ('succeeded', 'failed', 'cancelled')
         ORDER BY w.seq
           FOR UPDATE OF w
    LOOP
        touched := touched + 1;
        IF wf.status = 'running' THEN
            UPDATE howdah.workflows SET cancel_requested = true, updated_at = clock_timestamp()
             WHERE id = wf.id;
        ELSE
            PERFORM howdah._finish(wf.id, 'cancelled', NULL,
                                   jsonb_build_object('type', 'Cancelled', 'message', 'cancelled'));
        END IF;
    END LOOP;
    RETURN touched;
END;
$fn$;

------------------------------------------------------------------------------------------------------------
-- Worker-side operations (called by howdah.durable's worker; one round trip each)
------------------------------------------------------------------------------------------------------------

-- Take a workflow for a run: mark it running and return what the run needs (NULL row when it has finished
-- meanwhile, e.g. cancelled: the caller then drops the message).
CREATE FUNCTION howdah._claim(wf_id text, message bigint,
                              OUT name text, OUT args jsonb, OUT cancel_requested boolean, OUT attempts integer,
                              OUT steps jsonb)
LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE howdah.workflows w
       SET status = 'running', attempts = w.attempts + 1, msg_id = message, wake_at = NULL,
           waiting_for = NULL, started_at = coalesce(w.started_at, clock_timestamp()),
           updated_at = clock_timestamp()
     WHERE w.id = wf_id AND w.status NOT IN ('succeeded', 'failed', 'cancelled')
    RETURNING w.name, w.args, w.cancel_requested, w.attempts INTO name, args, cancel_requested, attempts;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_array(s.step_index, s.name, s.kind, s.result, s.error)
                              ORDER BY s.step_index), '[]')
      INTO steps FROM howdah.steps s WHERE s.workflow_id = wf_id;
END;
$fn$;

-- Record one step. Returns whether cancellation was requested (checked at every step boundary for free).
-- A checkpoint that already exists means another worker took over this run: HW423 aborts this one.
CREATE FUNCTION howdah._checkpoint(wf_id text, idx integer, step_name text, step_kind text, step_result jsonb,
                                   step_error jsonb, step_attempts integer, step_started timestamptz)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    flagged boolean;
BEGIN
    INSERT INTO howdah.steps (workflow_id, step_index, name, kind, result, error, attempts, started_at)
    VALUES (wf_id, idx, step_name, step_kind, step_result, step_error, step_attempts, step_started)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'step % of workflow "%" was already recorded by another run', idx, wf_id
            USING ERRCODE = 'HW423';
    END IF;
    SELECT w.cancel_requested INTO flagged FROM howdah.workflows w WHERE w.id = wf_id;
    RETURN coalesce(flagged, true);
END;
$fn$;

-- Consume the oldest pending signal `signal_name` as step `idx`; NULL (and nothing recorded) when none.
CREATE FUNCTION howdah._take_signal(wf_id text, idx integer, step_name text, signal_name text,
                                    step_started timestamptz, OUT taken boolean, OUT payload jsonb)
LANGUAGE plpgsql AS $fn$
DECLARE
    sig_id bigint;
BEGIN
    SELECT s.id, s.payload INTO sig_id, payload FROM howdah.signals s
     WHERE s.workflow_id = wf_id AND s.name = signal_name AND s.consumed_at IS NULL
     ORDER BY s.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    taken := sig_id IS NOT NULL;
    IF taken THEN
        UPDATE howdah.signals SET consumed_at = clock_timestamp() WHERE id = sig_id;
        PERFORM howdah._checkpoint(wf_id, idx, step_name, 'signal', jsonb_build_object('payload', payload),
                                   NULL, 1, step_started);
    END IF;
END;
$fn$;

-- Park a running workflow until `wake` (sleep, signal timeout, children): its dispatch message becomes
-- visible again then. If what it waits for has already happened (a signal arrived, a child finished), the
-- message is made visible at once instead, so no wake-up is ever lost to a race; so is a run whose
-- cancellation was requested meanwhile.
CREATE FUNCTION howdah._suspend(wf_id text, new_status text, wake timestamptz, reason text,
                                signal_names text[] DEFAULT NULL, child_ids text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    wf    howdah.workflows;
    ready boolean;
BEGIN
    UPDATE howdah.workflows w
       SET status = new_status, wake_at = wake, waiting_for = reason, updated_at = clock_timestamp()
     WHERE w.id = wf_id AND w.status = 'running'
    RETURNING * INTO wf;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    ready := wf.cancel_requested
          OR (signal_names IS NOT NULL AND EXISTS (
                  SELECT 1 FROM howdah.signals s
                   WHERE s.workflow_id = wf_id AND s.name = ANY (signal_names) AND s.consumed_at IS NULL))
          OR (child_ids IS NOT NULL AND EXISTS (
                  SELECT 1 FROM howdah.workflows c
                   WHERE c.id = ANY (child_ids) AND c.status IN ('succeeded', 'failed', 'cancelled')));
    PERFORM howdah._park(wf.queue_name, wf.msg_id, CASE WHEN ready THEN clock_timestamp() ELSE wake END);
END;
$fn$;

-- End a workflow: store the outcome, hand its key on, wake a waiting parent, drop its dispatch message.
CREATE FUNCTION howdah._finish(wf_id text, final_status text, final_result jsonb, final_error jsonb)
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    wf     howdah.workflows;
    parent howdah.workflows;
BEGIN
    UPDATE howdah.workflows w
       SET status = final_status, result = final_result, error = final_error, wake_at = NULL,
           waiting_for = NULL, finished_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE w.id = wf_id AND w.status NOT IN ('succeeded', 'failed', 'cancelled')
    RETURNING * INTO wf;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF wf.msg_id IS NOT NULL THEN
        PERFORM pgmq.delete(wf.queue_name, wf.msg_id);
    END IF;
    IF wf.holds_key THEN
        PERFORM howdah._release_key(wf.id);
    END IF;
    IF wf.parent_id IS NOT NULL THEN
        SELECT * INTO parent FROM howdah.workflows p WHERE p.id = wf.parent_id FOR UPDATE;
        IF parent.status = 'waiting' THEN
            PERFORM howdah._wake(parent);
        END IF;
    END IF;
END;
$fn$;

-- Delete finished workflows older than `older_than`, at most `batch` of them; returns how many.
CREATE FUNCTION howdah.purge_finished(older_than interval, batch integer DEFAULT 1000)
RETURNS integer
LANGUAGE sql AS $fn$
    WITH doomed AS (
        SELECT id FROM howdah.workflows
         WHERE finished_at < clock_timestamp() - older_than AND parent_id IS NULL
         ORDER BY finished_at LIMIT batch FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM howdah.workflows w USING doomed WHERE w.id = doomed.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone;
$fn$;

-- Run a failed or cancelled workflow again: its failed steps are forgotten, its successful ones are kept, so
-- it resumes from the last successful checkpoint. Returns the new status (pending; queued behind its key's
-- active workflow when there is one). HW404: unknown id; HW409: not failed or cancelled.
CREATE FUNCTION howdah.retry_workflow(workflow_id text)
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
           holds_key = (wf.key IS NOT NULL AND holds), updated_at = clock_timestamp(), msg_id = message
     WHERE w.id = wf.id;
    RETURN 'pending';
END;
$fn$;
