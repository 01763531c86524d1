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

-- name: scheduled_backup_candidates
-- Instances whose base backups are scheduled (archiving not turned off), Up with no work in flight, with when
-- their last backup was asked for (failed ones too: one attempt per tick). Not on a data plane that schedules
-- them itself (its provider's capability 'scheduled_backups').
SELECT i.id, i.org_id, i.created_at,
       coalesce(i.desired_spec->'backup'->>'schedule', '0 3 * * *') AS schedule,
       (SELECT max(b.created_at) FROM control.backups b
         WHERE b.org_id = i.org_id AND b.instance_id = i.id) AS last_backup_at
  FROM control.instances i
 WHERE i.state = 'Up' AND NOT i.has_active_work
   AND coalesce(i.desired_spec->'backup'->>'enabled', 'true') <> 'false'
   AND NOT EXISTS (SELECT 1 FROM control.data_planes d
                    WHERE d.name = i.data_plane AND 'scheduled_backups' = ANY (coalesce(d.features, '{}')));

-- name: backup_of_org_for_update
SELECT * FROM control.backups WHERE org_id = %(org_id)s AND id::text = %(id)s FOR UPDATE;

-- name: completed_backups_of_instance
-- The base backups of an instance that can be restored from, with their end as the control plane heard of it
-- (when it was asked for, for a record that has no completion time).
SELECT id, coalesce(completed_at, created_at) AS ended_at FROM control.backups
 WHERE org_id = %(org_id)s AND instance_id = %(instance_id)s AND status = 'completed'
 ORDER BY ended_at, id;

-- name: delete_backup
DELETE FROM control.backups WHERE id = %(id)s;

-- name: record_verified_restore
-- A restore verification's outcome, as reported by the data plane that runs the instance (no row otherwise).
-- The verification asked for is no longer in flight.
UPDATE control.instances SET last_verified_restore = %(outcome)s, verify_requested_at = NULL
 WHERE id::text = %(instance_id)s AND data_plane = %(data_plane)s;

-- name: record_verification_request
-- A restore verification was asked of the instance's data plane (in flight until its outcome is recorded).
UPDATE control.instances SET verify_requested_at = clock_timestamp() WHERE id = %(id)s;

-- name: scheduled_verification_candidates
-- Up instances whose spec schedules restore verifications and whose data plane reported a recoverable window
-- (a completed base backup to verify), with their last verification's outcome and the one in flight, if any.
SELECT i.id, i.org_id, i.created_at, i.desired_spec->'backup'->>'verify_schedule' AS schedule,
       i.last_verified_restore->>'at' AS last_verified_at, i.verify_requested_at
  FROM control.instances i
 WHERE i.state = 'Up'
   AND jsonb_typeof(i.desired_spec->'backup'->'verify_schedule') = 'string'
   AND jsonb_typeof(i.status->'recovery_window') = 'object';
