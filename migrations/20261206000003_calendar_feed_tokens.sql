-- Feed tokens of GET /v1/calendar.ics: the secret a calendar client keeps in its subscription
-- URL, which reads that one feed and nothing else. Only a SHA-256 hash of each token is kept,
-- so a copy of this table cannot be used to read anyone's feed.
--
-- This table is not a read model: nothing in the event log implies it, so replay (which
-- rebuilds `tasks` alone) and verify leave it alone, and erase-user deletes a user's rows.
CREATE TABLE calendar_feed_tokens (
    id            uuid        PRIMARY KEY,
    owner_id      text        NOT NULL,
    token_hash    bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    -- What the user called it ("phone"), to tell subscriptions apart when revoking one.
    label         text,
    created_at    timestamptz NOT NULL,
    -- Updated at most once a minute per token, so a polling client costs no write per fetch.
    last_used_at  timestamptz,
    -- Set by DELETE /v1/calendar/tokens/{id}; a revoked token reads nothing.
    revoked_at    timestamptz
);

-- A user's tokens: the list, the cap on minting, erasure.
CREATE INDEX calendar_feed_tokens_owner ON calendar_feed_tokens (owner_id, created_at);
