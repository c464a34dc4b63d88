-- In a full cycle, synchronization and export run beside the import: an object can be imported
-- again while its earlier version is being synchronized, and synchronized again while its
-- earlier export is on the wire. Every write of an object or of its pending export makes a new
-- revision, and synchronization (export) marks done only the revision it read (sent).
ALTER TABLE ad_objects ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pending_exports ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
-- Every export call counts the pending exports and deletions (deletion threshold): from this
-- index, not by reading every pending document.
CREATE INDEX pending_exports_action ON pending_exports (action);
