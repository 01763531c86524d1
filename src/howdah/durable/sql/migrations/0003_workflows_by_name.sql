-- Howdah durable workflows, part 3: the workflows of one status and name, newest first, read a page at a time
-- from an index (the web console's name filter), never by scanning or counting the table.

CREATE INDEX workflows_status_name_created ON howdah.workflows (status, name, created_at, id);
