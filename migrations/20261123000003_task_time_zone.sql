-- TaskCreated v2 records the owner's time zone; tasks created before (v1) count as UTC.
ALTER TABLE tasks ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
