-- SCIM resources (users and groups); `doc` is the canonical SCIM JSON without secrets.
CREATE TABLE resources (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    name_key    TEXT,
    external_id TEXT,
    source      TEXT NOT NULL,
    doc         TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    modified_at BIGINT NOT NULL,
    deleted_at  BIGINT
);
-- Soft-deleted users keep their userName: uniqueness covers them too.
CREATE UNIQUE INDEX resources_name ON resources (kind, name_key);
CREATE INDEX resources_external_id ON resources (kind, external_id);
CREATE TABLE credentials (
    user_id     TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    verifier    TEXT NOT NULL,
    must_change BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE TABLE signin_state (
    user_id      TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
CREATE TABLE skus (
    sku   TEXT PRIMARY KEY,
    seats BIGINT NOT NULL
);
CREATE TABLE licenses (
    user_id     TEXT NOT NULL,
    sku         TEXT NOT NULL,
    assigned_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, sku)
);
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    scope      TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL
);
