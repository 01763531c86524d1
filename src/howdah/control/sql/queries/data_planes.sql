-- Data planes: shared by every org, changed by the platform admin or by a conductor registering itself.

-- name: insert_data_plane
-- A new data plane; nothing when one of that name exists.
INSERT INTO control.data_planes (name, queue_name, description, cpu, memory_bytes, storage_bytes, extension_catalog)
VALUES (%(name)s, %(queue_name)s, %(description)s, %(cpu)s, %(memory_bytes)s, %(storage_bytes)s,
        %(extension_catalog)s)
ON CONFLICT (name) DO NOTHING
RETURNING name, queue_name, description, draining, created_at, last_seen_at;

-- name: upsert_data_plane
-- A conductor registering at start: created, or its description, capacity, extension catalog and features refreshed
-- (idempotent); it is seen now, and promises a heartbeat every %(heartbeat_seconds)s (NULL: none).
INSERT INTO control.data_planes (name, queue_name, description, cpu, memory_bytes, storage_bytes, extension_catalog,
                                 features, last_seen_at, heartbeat_seconds)
VALUES (%(name)s, %(queue_name)s, %(description)s, %(cpu)s, %(memory_bytes)s, %(storage_bytes)s,
        %(extension_catalog)s, %(features)s, clock_timestamp(), %(heartbeat_seconds)s)
ON CONFLICT (name) DO UPDATE
   SET description = EXCLUDED.description, cpu = EXCLUDED.cpu, memory_bytes = EXCLUDED.memory_bytes,
       storage_bytes = EXCLUDED.storage_bytes, extension_catalog = EXCLUDED.extension_catalog,
       features = EXCLUDED.features, last_seen_at = EXCLUDED.last_seen_at,
       heartbeat_seconds = EXCLUDED.heartbeat_seconds
RETURNING name, queue_name, description, draining, created_at, last_seen_at;

-- name: update_data_plane
-- A NULL argument keeps the column as it is.
UPDATE control.data_planes
   SET description = coalesce(%(description)s, description), draining = coalesce(%(draining)s, draining)
 WHERE name = %(name)s
RETURNING name, queue_name, description, draining, created_at, last_seen_at;

-- name: data_plane_references_for_update
-- The plane's queue and what still refers to it (instances, those not deleted, backups), locked.
SELECT queue_name,
       (SELECT count(*) FROM control.instances i WHERE i.data_plane = d.name),
       (SELECT count(*) FROM control.instances i WHERE i.data_plane = d.name AND i.state <> 'Deleted'),
       (SELECT count(*) FROM control.backups b WHERE b.data_plane = d.name)
  FROM control.data_planes d
 WHERE name = %(name)s
   FOR UPDATE;

-- name: delete_data_plane
DELETE FROM control.data_planes WHERE name = %(name)s;

-- name: list_data_planes
SELECT name, queue_name, description, draining, created_at, last_seen_at
  FROM control.data_planes
 ORDER BY name;

-- name: data_plane_extension_catalog
-- The extension catalog a plane's conductor reported (NULL: none yet); no row: no such plane.
SELECT extension_catalog FROM control.data_planes WHERE name = %(name)s;

-- name: usable_data_plane_names
-- The planes new instances may be placed on.
SELECT name FROM control.data_planes WHERE NOT draining ORDER BY name;

-- name: data_planes_for_placement
SELECT name, queue_name, draining, extension_catalog, features, cpu, memory_bytes, storage_bytes
  FROM control.data_planes
 ORDER BY name;
