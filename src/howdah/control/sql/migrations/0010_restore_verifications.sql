-- The outcome of an instance's last restore verification (howdah instance verify-backup: its latest backup
-- restored into a scratch instance, started and queried): {at, ok, seconds, error}, shown in its status as
-- last_verified_restore. NULL until one was reported.
ALTER TABLE control.instances ADD COLUMN last_verified_restore jsonb;
