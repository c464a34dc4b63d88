-- Synchronization state out of the connector-space rows: see sqlite/0006_sync_state.sql.
CREATE TABLE ad_pending (
    guid TEXT PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO ad_pending (guid, revision)
    SELECT guid, revision FROM ad_objects WHERE pending_sync = 1;

CREATE TABLE ad_unresolved (
    guid TEXT PRIMARY KEY
);
INSERT INTO ad_unresolved (guid) SELECT guid FROM ad_objects WHERE unresolved_refs = 1;

DROP INDEX ad_objects_pending_sync;
DROP INDEX ad_objects_unresolved;
ALTER TABLE ad_objects DROP COLUMN pending_sync;
ALTER TABLE ad_objects DROP COLUMN unresolved_refs;
