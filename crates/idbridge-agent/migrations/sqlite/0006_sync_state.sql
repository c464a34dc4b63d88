-- Where an object stands in synchronization, in narrow tables of its own rather than in columns
-- of its connector-space row: that row holds the object's attributes (kilobytes; a large
-- group's spill over overflow pages), and writing a flag there rewrote all of it. A full sync
-- rewrote most of the connector space twice that way, once when synchronization cleared
-- `pending_sync` and again when the export's confirmations cleared `unresolved_refs`.
-- (PostgreSQL: the same tables, in postgres/0006_sync_state.sql.)

-- Objects waiting for synchronization, at the revision that made them wait.
CREATE TABLE ad_pending (
    guid TEXT PRIMARY KEY,
    revision BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO ad_pending (guid, revision)
    SELECT guid, revision FROM ad_objects WHERE pending_sync = 1;

-- Objects whose last rendering left a reference unresolved: synchronized again when new cloud
-- objects may resolve it.
CREATE TABLE ad_unresolved (
    guid TEXT PRIMARY KEY
) WITHOUT ROWID;
INSERT INTO ad_unresolved (guid) SELECT guid FROM ad_objects WHERE unresolved_refs = 1;

DROP INDEX ad_objects_pending_sync;
DROP INDEX ad_objects_unresolved;
ALTER TABLE ad_objects DROP COLUMN pending_sync;
ALTER TABLE ad_objects DROP COLUMN unresolved_refs;
