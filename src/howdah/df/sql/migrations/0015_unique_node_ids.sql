-- Node ids are the first 8 hex digits of md5(instance:counter). Within one instance of thousands of nodes two of
-- them collide now and then (about one graph in a hundred at 10,000 nodes), and df.start failed with a unique
-- violation. A colliding node now takes the next candidate (md5(instance:counter:attempt)); every other id is
-- the same as before.
CREATE OR REPLACE FUNCTION df._number(instance text, node jsonb, parent text, INOUT counter integer,
                                      OUT numbered jsonb)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    nid text;
    child jsonb;
    extras jsonb[] := '{}';
    key text;
    attempt integer := 0;
BEGIN
    counter := counter + 1;
    IF counter > 10000 THEN
        RAISE EXCEPTION 'Invalid durable function graph: it exceeds the maximum node count of 10000'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    LOOP
        nid := substr(md5(instance || ':' || counter::text || CASE WHEN attempt > 0 THEN ':' || attempt::text
                                                                  ELSE '' END), 1, 8);
        INSERT INTO df.nodes (instance_id, id, node_type, query, result_name, parent_id)
        VALUES (instance, nid, node ->> 'node_type', node ->> 'query', node ->> 'result_name', parent)
        ON CONFLICT (instance_id, id) DO NOTHING;
        EXIT WHEN FOUND;
        attempt := attempt + 1;
    END LOOP;
    numbered := node || jsonb_build_object('node_id', nid);
    FOREACH key IN ARRAY ARRAY['condition_node', 'left_node', 'right_node'] LOOP
        IF node ? key THEN
            SELECT n.counter, n.numbered INTO counter, child FROM df._number(instance, node -> key, nid, counter) AS n;
            numbered := numbered || jsonb_build_object(key, child);
        END IF;
    END LOOP;
    IF node ? 'extra_nodes' THEN
        FOR child IN SELECT value FROM jsonb_array_elements(node -> 'extra_nodes') LOOP
            SELECT n.counter, n.numbered INTO counter, child FROM df._number(instance, child, nid, counter) AS n;
            extras := array_append(extras, child);
        END LOOP;
        numbered := numbered || jsonb_build_object('extra_nodes', to_jsonb(extras));
    END IF;
END;
$fn$;
