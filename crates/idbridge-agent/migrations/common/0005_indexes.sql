-- Only the objects waiting for synchronization, or for a reference target to be exported, are
-- indexed as such. The index on (pending_sync, guid) held every object: synchronizing one moved
-- its entry, a random page of a large index, and a batch's commit wrote out nearly every page
-- of it. Objects waiting for a reference were found by reading the whole table.
DROP INDEX ad_objects_pending_guid;
CREATE INDEX ad_objects_pending_sync ON ad_objects (guid) WHERE pending_sync = 1;
CREATE INDEX ad_objects_unresolved ON ad_objects (guid) WHERE unresolved_refs = 1;
-- A reference (a DN) finds its object's guid in the index alone; through the row, each one
-- read a random page of the connector space (a group's members are scattered over it).
DROP INDEX ad_objects_dn_key;
CREATE INDEX ad_objects_dn_key_guid ON ad_objects (dn_key, guid);
