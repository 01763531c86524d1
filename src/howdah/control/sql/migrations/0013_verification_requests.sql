-- When a restore verification of the instance was last asked for and has not been reported yet (NULL: none in
-- flight). Set with the VerifyBackup event, cleared by its RestoreVerified: the reconciler asks for a scheduled
-- verification (the spec's backup.verify_schedule) only when none is in flight.
ALTER TABLE control.instances ADD COLUMN verify_requested_at timestamptz;
