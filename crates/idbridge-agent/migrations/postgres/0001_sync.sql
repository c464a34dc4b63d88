-- The AD connector space: every imported object, keyed by objectGUID.
CREATE TABLE ad_objects (
    guid TEXT PRIMARY KEY,
    dn TEXT NOT NULL,
    dn_key TEXT NOT NULL,
    class TEXT NOT NULL,
    attrs TEXT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    pending_sync BIGINT NOT NULL DEFAULT 1,
    unresolved_refs BIGINT NOT NULL DEFAULT 0,
    import_generation BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX ad_objects_dn_key ON ad_objects (dn_key);
CREATE INDEX ad_objects_pending ON ad_objects (pending_sync);

-- The metaverse: one object per projected AD object.
CREATE TABLE metaverse (
    guid TEXT PRIMARY KEY,
    mv_type TEXT NOT NULL,
    anchor TEXT NOT NULL,
    attrs TEXT NOT NULL
);

-- The cloud connector space: cloud objects joined to AD objects, as last confirmed.
CREATE TABLE cloud_objects (
    guid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    cloud_id TEXT NOT NULL,
    anchor TEXT NOT NULL,
    doc TEXT NOT NULL
);

CREATE TABLE pending_exports (
    guid TEXT PRIMARY KEY,
    dn TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    anchor TEXT NOT NULL,
    doc TEXT NOT NULL,
    join_keys TEXT NOT NULL,
    unresolved BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE object_errors (
    guid TEXT PRIMARY KEY,
    dn TEXT NOT NULL,
    stage TEXT NOT NULL,
    message TEXT NOT NULL,
    at BIGINT NOT NULL
);

CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY,
    profile TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    status TEXT NOT NULL,
    adds BIGINT NOT NULL DEFAULT 0,
    updates BIGINT NOT NULL DEFAULT 0,
    renames BIGINT NOT NULL DEFAULT 0,
    deletes BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT ''
);

CREATE TABLE agent_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
