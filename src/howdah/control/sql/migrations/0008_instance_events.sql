-- Howdah control 0008: each instance's history of states, with the change that led to each.
--
-- One row per transaction that leaves an instance in a new state, or with a new change in flight or a new error:
-- the state, the generation, the CRUD event in flight (its kind, and its event_id: the conductor carries it out
-- as workflow "event-<event_id>") and the last error. A deferred trigger writes it when the transaction commits,
-- reading the row as it is then, so the several writes of one change (the state, then the event sent) make one
-- record, and a write that changes none of these (a status refresh) makes none.
CREATE TABLE control.instance_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id uuid        NOT NULL REFERENCES control.instances (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    state       text        NOT NULL,
    generation  bigint      NOT NULL,
    change      text,                    -- the kind of the CRUD event in flight (Create, Update, Restart, …)
    event_id    text,                    -- its event_id
    error       text
);
CREATE INDEX instance_events_of_instance ON control.instance_events (instance_id, id);

CREATE FUNCTION control.record_instance_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    now_row  control.instances;
    previous control.instance_events;
BEGIN
    SELECT * INTO now_row FROM control.instances WHERE id = NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO previous FROM control.instance_events WHERE instance_id = NEW.id ORDER BY id DESC LIMIT 1;
    IF FOUND AND previous.state = now_row.state AND previous.generation = now_row.generation
       AND previous.event_id IS NOT DISTINCT FROM now_row.pending_event ->> 'event_id'
       AND previous.error IS NOT DISTINCT FROM now_row.last_error THEN
        RETURN NULL;  -- already recorded (another write of the same transaction, or nothing that matters)
    END IF;
    INSERT INTO control.instance_events (instance_id, state, generation, change, event_id, error)
    VALUES (now_row.id, now_row.state, now_row.generation, now_row.pending_event ->> 'kind',
            now_row.pending_event ->> 'event_id', now_row.last_error);
    RETURN NULL;
END;
$fn$;

CREATE CONSTRAINT TRIGGER instance_created_recorded
    AFTER INSERT ON control.instances DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION control.record_instance_event();

CREATE CONSTRAINT TRIGGER instance_change_recorded
    AFTER UPDATE ON control.instances DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.generation IS DISTINCT FROM NEW.generation
          OR OLD.pending_event IS DISTINCT FROM NEW.pending_event OR OLD.last_error IS DISTINCT FROM NEW.last_error)
    EXECUTE FUNCTION control.record_instance_event();
