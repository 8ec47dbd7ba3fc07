-- Webhook endpoints and their deliveries. Not derived from the log: replay and verify leave
-- them alone; erase-user deletes a user's endpoints and, with them, their deliveries.
CREATE TABLE webhook_endpoints (
    id          uuid        PRIMARY KEY,
    owner_id    text        NOT NULL,
    url         text        NOT NULL,
    event_types text[]      NOT NULL DEFAULT '{}',
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_owner ON webhook_endpoints (owner_id);

-- One row per endpoint and event: pending until sent (2xx) or given up on (failed).
CREATE TABLE webhook_deliveries (
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    position        bigint      NOT NULL,
    webhook_id      text        NOT NULL,
    event_type      text        NOT NULL,
    body            bytea       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    PRIMARY KEY (endpoint_id, position)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, position)
    WHERE status = 'pending';
