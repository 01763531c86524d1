-- How many times the instance's pending work has been sent without an answer from its data plane: the
-- reconciler re-sends unacknowledged work, and gives up (Error) after a cap instead of waiting forever.
ALTER TABLE control.instances ADD COLUMN unanswered_sends integer NOT NULL DEFAULT 0;
