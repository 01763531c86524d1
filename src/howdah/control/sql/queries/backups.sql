-- Backups: requested through the API, settled by the data plane's BackupCompleted / BackupFailed events.

-- name: insert_backup
INSERT INTO control.backups (org_id, instance_id, data_plane, spec)
VALUES (%(org_id)s, %(instance_id)s, %(data_plane)s, %(spec)s)
RETURNING *;

-- name: backups_of_org
-- An org's backups, of one instance when one is named (its row may be gone: backups outlive instances).
SELECT * FROM control.backups
 WHERE org_id = %(org_id)s AND (%(instance_id)s::text IS NULL OR instance_id::text = %(instance_id)s)
 ORDER BY created_at, id;

-- name: backup_of_org
SELECT * FROM control.backups WHERE org_id = %(org_id)s AND id::text = %(id)s;

-- name: settle_backup
-- A pending backup completed or failed, as reported by the data plane that holds it; no row for a backup that
-- is unknown, settled already, or on another plane.
UPDATE control.backups
   SET status = %(status)s, location = %(location)s, size_bytes = %(size_bytes)s, error = %(error)s,
       completed_at = clock_timestamp()
 WHERE id::text = %(backup_id)s AND status = 'pending' AND data_plane = %(data_plane)s;
