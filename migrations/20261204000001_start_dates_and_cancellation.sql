-- TaskCreated v3 and TaskUpdated v2 carry a start date (when work may begin); TaskCancelled
-- puts a task in the new status `cancelled`, with when and why.
ALTER TABLE tasks ADD COLUMN starts_at timestamptz;
ALTER TABLE tasks ADD COLUMN cancelled_at timestamptz;
ALTER TABLE tasks ADD COLUMN cancel_reason text;
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('open', 'in_progress', 'paused', 'completed', 'archived', 'cancelled'));
-- The list's `available` filter: the owner's tasks whose start date has come.
CREATE INDEX tasks_owner_starts ON tasks (owner_id, starts_at);
