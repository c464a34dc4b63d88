-- Which AD objects link to which (member, manager, managedBy), by the target's normalized DN:
-- AD removes or rewrites a link when its target is deleted or renamed without reporting a
-- change of the object holding it, so the agent does the same to its copy. Filled from
-- ad_objects when the store opens (agent_state key 'ad_links').
CREATE TABLE ad_links (
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (source, target)
);
CREATE INDEX ad_links_target ON ad_links (target);
