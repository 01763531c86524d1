ALTER TABLE migtest.things ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX things_name ON migtest.things (name);
