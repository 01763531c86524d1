-- Liveness of the control plane's loops and of the data planes' conductors, for /readyz.

-- name: component_heartbeat
-- A loop of the control plane (the reconciler) ticked now and will again within %(interval)s seconds.
INSERT INTO control.heartbeats (component, last_seen_at, interval_seconds)
VALUES (%(component)s, clock_timestamp(), %(interval)s)
ON CONFLICT (component) DO UPDATE
   SET last_seen_at = EXCLUDED.last_seen_at, interval_seconds = EXCLUDED.interval_seconds;

-- name: data_plane_heartbeat
-- A registered plane's conductor is alive now and will say so again within %(interval)s seconds; no row: the plane
-- is unknown (removed meanwhile).
UPDATE control.data_planes
   SET last_seen_at = clock_timestamp(), heartbeat_seconds = %(interval)s
 WHERE name = %(name)s
RETURNING name;

-- name: readiness_components
-- Each control-plane loop's heartbeat: seconds since it ticked, and its promised interval.
SELECT component, extract(epoch FROM clock_timestamp() - last_seen_at)::float8, interval_seconds::float8
  FROM control.heartbeats
 ORDER BY component;

-- name: readiness_data_planes
-- Each plane: draining, whether a conductor registered what a create is checked against (it reports its capacity,
-- features and extension catalog in one statement; a plane a platform admin made has no catalog), seconds since
-- its conductor was last seen (NULL: never) and the interval it promised.
SELECT name, draining, extension_catalog IS NOT NULL,
       extract(epoch FROM clock_timestamp() - last_seen_at)::float8, heartbeat_seconds::float8
  FROM control.data_planes
 ORDER BY name;
