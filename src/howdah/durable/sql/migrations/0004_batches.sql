-- A worker's calls that wait at the same moment go together: checkpoints of steps, and ends of runs.

-- Record the steps of several runs in one statement and one transaction: a worker's checkpoints that wait at
-- the same moment go together (one round trip and one commit for all of them). Each item is recorded as
-- howdah._checkpoint records it alone, in a subtransaction of its own: an item refused (HW423, a run that lost its
-- workflow) or failing rolls back alone, and its SQLSTATE and message come back in its row instead of the result;
-- the others commit. Rows come back in the order of the items.
CREATE FUNCTION howdah._checkpoints(wf_ids text[], fences integer[], idxs integer[], step_names text[],
                                    step_kinds text[], step_results jsonb[], step_errors jsonb[],
                                    step_attempts integer[], steps_started timestamptz[])
RETURNS TABLE (cancel_requested boolean, lease_left double precision, error_state text, error_message text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    FOR i IN 1 .. coalesce(array_length(wf_ids, 1), 0) LOOP
        error_state := NULL;
        error_message := NULL;
        BEGIN
            SELECT c.cancel_requested, c.lease_left INTO cancel_requested, lease_left
              FROM howdah._checkpoint(wf_ids[i], fences[i], idxs[i], step_names[i], step_kinds[i], step_results[i],
                                      step_errors[i], step_attempts[i], steps_started[i]) c;
        EXCEPTION WHEN OTHERS THEN
            cancel_requested := NULL;
            lease_left := NULL;
            GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT;
        END;
        RETURN NEXT;
    END LOOP;
END;
$fn$;

-- End the workflows of several runs in one statement and one transaction, each as howdah._end_run ends it alone
-- and in a subtransaction of its own (an item refused or failing rolls back alone; its SQLSTATE and message come
-- back in its row). Rows come back in the order of the items.
CREATE FUNCTION howdah._end_runs(wf_ids text[], fences integer[], final_statuses text[], final_results jsonb[],
                                 final_errors jsonb[])
RETURNS TABLE (error_state text, error_message text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    FOR i IN 1 .. coalesce(array_length(wf_ids, 1), 0) LOOP
        error_state := NULL;
        error_message := NULL;
        BEGIN
            PERFORM howdah._end_run(wf_ids[i], fences[i], final_statuses[i], final_results[i], final_errors[i]);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT;
        END;
        RETURN NEXT;
    END LOOP;
END;
$fn$;

-- Claim the workflows of several dispatch messages read at once, each as howdah._claim claims it alone and in a
-- subtransaction of its own (its SQLSTATE and message come back in its row if it fails). Rows come back in the
-- order of the items.
CREATE FUNCTION howdah._claims(wf_ids text[], messages bigint[], message_read_cts integer[])
RETURNS TABLE (outcome text, name text, args jsonb, cancel_requested boolean, attempts integer, steps jsonb,
               lease_left double precision, deadline_left double precision, error_state text, error_message text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    FOR i IN 1 .. coalesce(array_length(wf_ids, 1), 0) LOOP
        error_state := NULL;
        error_message := NULL;
        BEGIN
            SELECT c.outcome, c.name, c.args, c.cancel_requested, c.attempts, c.steps, c.lease_left, c.deadline_left
              INTO outcome, name, args, cancel_requested, attempts, steps, lease_left, deadline_left
              FROM howdah._claim(wf_ids[i], messages[i], message_read_cts[i]) c;
        EXCEPTION WHEN OTHERS THEN
            outcome := NULL;
            name := NULL;
            args := NULL;
            cancel_requested := NULL;
            attempts := NULL;
            steps := NULL;
            lease_left := NULL;
            deadline_left := NULL;
            GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT;
        END;
        RETURN NEXT;
    END LOOP;
END;
$fn$;

-- Every function of the schema resolves names with a path nobody else can add to. The worker calls them in
-- databases other roles may own (a df database): with the session's path, a better-matching overload created in
-- `public` (say `array_length(text[], integer)` against the catalog's `anyarray`) would run as the worker.
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
               WHERE p.pronamespace = 'howdah'::regnamespace AND p.prokind = 'f'
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', fn);
    END LOOP;
END;
$$;
