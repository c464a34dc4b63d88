-- The sync agent's hard and soft matches (anchor, work e-mail) answered from indexes, not scans.
ALTER TABLE resources ADD COLUMN anchor TEXT;
ALTER TABLE resources ADD COLUMN email_key TEXT;
UPDATE resources SET anchor = CASE kind
    WHEN 'User' THEN json_extract(doc, '$."urn:idbridge:params:scim:schemas:extension:sync:2.0:User".immutableId')
    ELSE json_extract(doc, '$."urn:idbridge:params:scim:schemas:extension:sync:2.0:Group".immutableId') END;
UPDATE resources SET email_key = (
    SELECT lower(json_extract(e.value, '$.value')) FROM json_each(resources.doc, '$.emails') e
    WHERE json_extract(e.value, '$.type') = 'work' LIMIT 1)
WHERE kind = 'User';
CREATE INDEX resources_anchor ON resources (kind, anchor);
CREATE INDEX resources_email ON resources (kind, email_key);
