-- Events a projection could not apply: undecodable, or failing again after retries. The
-- projection records them (in the same transaction that moves its checkpoint past them), skips
-- the rest of that task's events until the dead letter is retried or discarded, and goes on.
CREATE TABLE dead_letters (
    projection    text        NOT NULL,
    position      bigint      NOT NULL,
    subject       text        NOT NULL,
    task_id       uuid,
    event_type    text,
    event_version integer,
    error         text        NOT NULL,
    payload       bytea       NOT NULL,
    trace_id      text,
    attempts      integer     NOT NULL DEFAULT 1,
    failed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, position)
);

CREATE INDEX dead_letters_task ON dead_letters (projection, task_id);
