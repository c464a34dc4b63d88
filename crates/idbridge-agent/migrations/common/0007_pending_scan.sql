-- The export's scan of every pending export goes in guid order, through the primary key. The
-- (kind, guid) index that ordered it users first was a second random-keyed index on a table
-- every synchronized object enters and every confirmed export leaves: each commit rewrote
-- another page of it per object (a full sync at 100k wrote ~0.5 GB more for it). References
-- across kinds do not need the order: the export holds an object until its references are
-- exported.
DROP INDEX pending_exports_order;
