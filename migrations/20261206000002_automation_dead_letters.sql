-- Events an automation gave up on (a refusal no retry can change, or too many failed
-- attempts). Not derived from the log, so replay and verify leave it alone; erase-user removes
-- a user's rows.
CREATE TABLE automation_dead_letters (
    automation  text        NOT NULL,
    position    bigint      NOT NULL,
    owner_id    text        NOT NULL,
    task_id     uuid        NOT NULL,
    event_type  text        NOT NULL,
    error       text        NOT NULL,
    attempts    integer     NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (automation, position)
);
