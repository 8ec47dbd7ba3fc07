-- TaskCreated v5 carries how a task repeats and its place in a series. The series columns are
-- separate (not one jsonb) so the `series` list filter and the history of a series use an
-- index; only occurrences of repeating tasks enter it.
ALTER TABLE tasks
    ADD COLUMN recurrence_rule text,
    ADD COLUMN recurrence_mode text,
    ADD COLUMN series_id uuid,
    ADD COLUMN series_occurrence int4,
    ADD COLUMN series_anchor timestamptz;
CREATE INDEX tasks_series ON tasks (series_id, series_occurrence) WHERE series_id IS NOT NULL;
