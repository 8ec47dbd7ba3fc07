-- Insights read a user's tasks completed in the last 90 days next to their unfinished ones
-- (served by tasks_owner_status). Without this index that second half scanned every task the
-- user ever had; partial, because unfinished tasks have no completion time.
CREATE INDEX tasks_owner_completed ON tasks (owner_id, completed_at) WHERE completed_at IS NOT NULL;
