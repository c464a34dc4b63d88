-- Synchronization reads the objects pending sync in guid order, a batch at a time. With an index
-- on pending_sync alone, each batch sorted every pending object again (a full sync of 100,000
-- objects spent most of its time there); this index hands them out in order.
CREATE INDEX ad_objects_pending_guid ON ad_objects (pending_sync, guid);
DROP INDEX ad_objects_pending;
-- The export reads pending exports a page at a time in this order.
CREATE INDEX pending_exports_order ON pending_exports (kind, guid);
