-- Read models of taskmaster. Every projection stores its checkpoint (the stream sequence of
-- the last event it applied) in the same transaction as its rows.

CREATE TABLE projection_checkpoints (
    projection  text        PRIMARY KEY,
    position    bigint      NOT NULL CHECK (position >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per task: the domain's folded state plus the stream position it reflects.
CREATE TABLE tasks (
    id               uuid        PRIMARY KEY,
    owner_id         text        NOT NULL,
    title            text        NOT NULL,
    description      text,
    priority         text        CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    due_at           timestamptz,
    estimate_minutes integer,
    tags             text[]      NOT NULL DEFAULT '{}',
    status           text        NOT NULL
                     CHECK (status IN ('open', 'in_progress', 'paused', 'completed', 'archived')),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    tracked_seconds  bigint      NOT NULL DEFAULT 0,
    completed_at     timestamptz,
    actual_minutes   integer,
    archived_at      timestamptz,
    version          bigint      NOT NULL,
    position         bigint      NOT NULL,
    -- Sort key for priority: unknown sorts below low.
    priority_rank    smallint    GENERATED ALWAYS AS (
                         CASE priority WHEN 'low' THEN 1 WHEN 'medium' THEN 2
                                       WHEN 'high' THEN 3 WHEN 'urgent' THEN 4 ELSE 0 END
                     ) STORED,
    -- Full-text search over title (weighted higher) and description.
    search           tsvector    GENERATED ALWAYS AS (
                         setweight(to_tsvector('english', title), 'A') ||
                         setweight(to_tsvector('english', coalesce(description, '')), 'B')
                     ) STORED
);

-- Listing is always per owner; these cover the sorts and filters of GET /v1/tasks.
CREATE INDEX tasks_owner_created  ON tasks (owner_id, created_at DESC, id DESC);
CREATE INDEX tasks_owner_updated  ON tasks (owner_id, updated_at DESC, id DESC);
CREATE INDEX tasks_owner_due      ON tasks (owner_id, due_at, id);
CREATE INDEX tasks_owner_priority ON tasks (owner_id, priority_rank DESC, id DESC);
CREATE INDEX tasks_owner_status   ON tasks (owner_id, status);
CREATE INDEX tasks_tags           ON tasks USING gin (tags);
CREATE INDEX tasks_search         ON tasks USING gin (search);
