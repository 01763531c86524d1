-- Howdah's df schema, part 7: an instance follows its durable workflow (`df:<id>` in howdah.workflows), so the
-- workflow commands work on df instances too. When the workflow fails, the instance fails with its message and
-- the node whose step failed (its id is the last part of the step's name, `…/<node id>[:what]`); when it is
-- cancelled (`howdah workflow cancel df:<id>`), the instance is cancelled; when a failed or cancelled workflow is
-- retried (`howdah workflow retry df:<id>`), the instance runs again from its failed node (completed nodes are
-- not run again).

CREATE FUNCTION df._follow_workflow() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    instance text := substr(NEW.id, 4);
    message text;
    step text;
BEGIN
    IF NEW.status = 'failed' THEN
        message := coalesce(NEW.error ->> 'message', NEW.error ->> 'type', 'failed');
        UPDATE df.instances i SET status = 'failed', error = message, updated_at = clock_timestamp(),
                                  completed_at = clock_timestamp()
         WHERE i.id = instance AND i.status IN ('pending', 'running');
        IF FOUND THEN
            SELECT s.name INTO step FROM howdah.steps s
             WHERE s.workflow_id = NEW.id AND s.error IS NOT NULL ORDER BY s.step_index DESC LIMIT 1;
            IF step IS NOT NULL THEN
                UPDATE df.nodes n SET status = 'failed', error = message, updated_at = clock_timestamp()
                 WHERE n.instance_id = instance
                   AND n.id = split_part(regexp_replace(step, '^.*/', ''), ':', 1);
            END IF;
        END IF;
    ELSIF NEW.status = 'cancelled' THEN
        UPDATE df.instances i SET status = 'cancelled', error = coalesce(i.error, 'Cancelled'),
                                  updated_at = clock_timestamp(), completed_at = clock_timestamp()
         WHERE i.id = instance AND i.status IN ('pending', 'running');
    ELSIF NEW.status = 'pending' AND OLD.status IN ('failed', 'cancelled') THEN
        UPDATE df.instances i SET status = 'running', error = NULL, updated_at = clock_timestamp(),
                                  completed_at = NULL
         WHERE i.id = instance AND i.status IN ('failed', 'cancelled');
        UPDATE df.nodes n SET status = 'pending', error = NULL, updated_at = clock_timestamp()
         WHERE n.instance_id = instance AND n.status = 'failed';
    END IF;
    RETURN NULL;
END;
$fn$;
REVOKE ALL ON FUNCTION df._follow_workflow() FROM PUBLIC;

CREATE TRIGGER df_follow_workflow AFTER UPDATE OF status ON howdah.workflows
    FOR EACH ROW WHEN (NEW.name = 'df' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION df._follow_workflow();
