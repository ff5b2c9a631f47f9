-- Version 4: the Bazaar discovery catalogue (`GET /discovery/resources`, `/discovery/search`).
-- One row per discoverable resource: its catalogue URL (origin and path, or route template)
-- and, for an MCP tool, the tool's name (MCP multiplexes tools over one URL; '' for HTTP).
-- Only resources that settled a payment are written, and each settlement updates its row.
CREATE TABLE discovery_resources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resource TEXT NOT NULL,
    tool_name TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    x402_version INTEGER NOT NULL,
    accepts_json TEXT NOT NULL,
    extensions_json TEXT NOT NULL,
    description TEXT,
    mime_type TEXT,
    service_name TEXT,
    tags TEXT NOT NULL DEFAULT '',
    icon_url TEXT,
    last_tx TEXT,
    settle_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    UNIQUE (resource, tool_name)
);
CREATE INDEX discovery_resources_updated ON discovery_resources (last_updated DESC, id DESC);
CREATE INDEX discovery_resources_kind ON discovery_resources (kind, last_updated DESC);

-- Each way to pay a resource (its `accepts`), for the `payTo`, `scheme` and `network` filters.
CREATE TABLE discovery_accepts (
    resource_id INTEGER NOT NULL REFERENCES discovery_resources (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    scheme TEXT NOT NULL,
    network TEXT NOT NULL,
    pay_to TEXT NOT NULL,
    PRIMARY KEY (resource_id, position)
);
CREATE INDEX discovery_accepts_pay_to ON discovery_accepts (pay_to);
CREATE INDEX discovery_accepts_network ON discovery_accepts (network, scheme);

-- The extension keys each resource carries, for the `extensions` filter.
CREATE TABLE discovery_extension_keys (
    resource_id INTEGER NOT NULL REFERENCES discovery_resources (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    PRIMARY KEY (resource_id, key)
);
CREATE INDEX discovery_extension_keys_key ON discovery_extension_keys (key);

-- Full-text search over description, service name, tags, tool name and URL: an FTS5 index
-- of the catalogue's own rows (external content), kept in step by triggers.
CREATE VIRTUAL TABLE discovery_fts USING fts5(
    resource, tool_name, description, service_name, tags,
    content = 'discovery_resources', content_rowid = 'id',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER discovery_resources_fts_insert AFTER INSERT ON discovery_resources BEGIN
    INSERT INTO discovery_fts (rowid, resource, tool_name, description, service_name, tags)
    VALUES (new.id, new.resource, new.tool_name, new.description, new.service_name, new.tags);
END;
CREATE TRIGGER discovery_resources_fts_delete AFTER DELETE ON discovery_resources BEGIN
    INSERT INTO discovery_fts (discovery_fts, rowid, resource, tool_name, description, service_name, tags)
    VALUES ('delete', old.id, old.resource, old.tool_name, old.description, old.service_name, old.tags);
END;
CREATE TRIGGER discovery_resources_fts_update AFTER UPDATE ON discovery_resources BEGIN
    INSERT INTO discovery_fts (discovery_fts, rowid, resource, tool_name, description, service_name, tags)
    VALUES ('delete', old.id, old.resource, old.tool_name, old.description, old.service_name, old.tags);
    INSERT INTO discovery_fts (rowid, resource, tool_name, description, service_name, tags)
    VALUES (new.id, new.resource, new.tool_name, new.description, new.service_name, new.tags);
END;
