-- Howdah's df schema, part 13: signals reach join and race branches, and the helpers behind df.cancel and
-- df.signal steer only the caller's own instances.
--
-- A join or race branch of more than one node runs as a child workflow, so a df.wait_for_signal inside it waited
-- in vain: df.signal told the instance's own workflow only. pg_durable raises the event for the instance and every
-- running descendant (its documented way out of a loop is `(@> body) | df.wait_for_signal('shutdown')`); so does
-- Howdah now.
--
-- df._cancel_workflow and df._signal_workflow run with the installer's rights (SECURITY DEFINER), and
-- df.grant_usage gives every df user EXECUTE on them, so that df.cancel and df.signal can call them: a role could
-- call them itself with another role's instance id. They now refuse an instance unless the session's role is a
-- member of the role that started it (as pg_durable's own wrappers check), with SQLSTATE 42501.
-- (df._may_steer is called from them only, with their rights: it reads every instance.)

CREATE FUNCTION df._may_steer(instance text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    owner oid;
BEGIN
    SELECT i.submitted_by::oid INTO owner FROM df.instances i WHERE i.id = instance;
    IF owner IS NULL OR NOT pg_has_role(session_user, owner, 'MEMBER') THEN
        RAISE EXCEPTION 'Instance not found or access denied: %', instance USING ERRCODE = 'insufficient_privilege';
    END IF;
END;
$fn$;
REVOKE ALL ON FUNCTION df._may_steer(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION df._cancel_workflow(instance text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM df._may_steer(instance);
    IF EXISTS (SELECT 1 FROM howdah.workflows w WHERE w.id = 'df:' || instance) THEN
        PERFORM howdah.cancel_workflow('df:' || instance);
    END IF;
END;
$fn$;

-- The instance's workflow takes the signal (refused when it has finished, as before), and so does every child
-- workflow under it that has not finished: whichever is waiting for it wakes.
CREATE OR REPLACE FUNCTION df._signal_workflow(instance text, signal_name text, payload jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    branch text;
BEGIN
    PERFORM df._may_steer(instance);
    PERFORM howdah.send_signal('df:' || instance, signal_name, payload);
    FOR branch IN
        WITH RECURSIVE below AS (
            SELECT w.id, w.status FROM howdah.workflows w WHERE w.parent_id = 'df:' || instance
            UNION ALL
            SELECT w.id, w.status FROM howdah.workflows w JOIN below b ON w.parent_id = b.id
        )
        SELECT b.id FROM below b WHERE b.status NOT IN ('succeeded', 'failed', 'cancelled') ORDER BY b.id
    LOOP
        PERFORM howdah.send_signal(branch, signal_name, payload);
    END LOOP;
END;
$fn$;
