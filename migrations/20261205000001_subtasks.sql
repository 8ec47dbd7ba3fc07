-- TaskCreated v4 and TaskMoved place a task under another one. The partial index serves the
-- child counts of GET /v1/tasks/{id}, the `parent` list filter and the subtree walk; top-level
-- tasks (most of them) stay out of it.
ALTER TABLE tasks ADD COLUMN parent_id uuid;
CREATE INDEX tasks_parent ON tasks (parent_id, status) WHERE parent_id IS NOT NULL;
