-- Reminders (TaskCreated v5, TaskUpdated v3, ReminderDue). `next_reminder_at` is the earliest
-- reminder instant still to fire of an unfinished task: the scheduler's queue is this index,
-- read a short window ahead at a time, so pending reminders cost no memory until they are due.
ALTER TABLE tasks
    ADD COLUMN reminders jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN reminders_fired timestamptz[] NOT NULL DEFAULT '{}',
    ADD COLUMN next_reminder_at timestamptz;
CREATE INDEX tasks_next_reminder ON tasks (next_reminder_at) WHERE next_reminder_at IS NOT NULL;
