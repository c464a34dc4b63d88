-- On-premises agents: the public key the cloud seals passwords to, and the hash of the
-- credential the agent authenticates its channel with.
CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    credential_hash TEXT NOT NULL UNIQUE,
    registered_at   BIGINT NOT NULL,
    key_rotated_at  BIGINT NOT NULL,
    revoked_at      BIGINT
);
-- One-time registration tokens (hash only).
CREATE TABLE agent_registrations (
    hash       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
-- Writeback requests by id: a retry with the same id gets the first outcome, never a second write.
CREATE TABLE writeback_requests (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    operation   TEXT NOT NULL,
    state       TEXT NOT NULL,
    outcome     TEXT,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT
);
-- Self-service password reset: how a user proves who they are.
CREATE TABLE sspr_methods (
    user_id         TEXT PRIMARY KEY,
    alternate_email TEXT,
    totp_secret     TEXT
);
-- The one pending emailed code per user (hash only).
CREATE TABLE sspr_codes (
    user_id    TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL
);
