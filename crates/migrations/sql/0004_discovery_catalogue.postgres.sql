-- Version 4: the Bazaar discovery catalogue (`GET /discovery/resources`, `/discovery/search`).
-- One row per discoverable resource: its catalogue URL (origin and path, or route template)
-- and, for an MCP tool, the tool's name (MCP multiplexes tools over one URL; '' for HTTP).
-- Only resources that settled a payment are written, and each settlement updates its row.
-- `search` is the full-text document (description, service name, tags, tool name, URL),
-- generated from the row and indexed with GIN.
CREATE TABLE discovery_resources (
    id BIGSERIAL PRIMARY KEY,
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
    settle_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    search TSVECTOR GENERATED ALWAYS AS (
        to_tsvector('english'::regconfig,
            coalesce(description, '') || ' ' || coalesce(service_name, '') || ' ' || tags
            || ' ' || tool_name || ' ' || resource)
    ) STORED,
    UNIQUE (resource, tool_name)
);
CREATE INDEX discovery_resources_updated ON discovery_resources (last_updated DESC, id DESC);
CREATE INDEX discovery_resources_kind ON discovery_resources (kind, last_updated DESC);
CREATE INDEX discovery_resources_search ON discovery_resources USING GIN (search);

-- Each way to pay a resource (its `accepts`), for the `payTo`, `scheme` and `network` filters.
CREATE TABLE discovery_accepts (
    resource_id BIGINT NOT NULL REFERENCES discovery_resources (id) ON DELETE CASCADE,
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
    resource_id BIGINT NOT NULL REFERENCES discovery_resources (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    PRIMARY KEY (resource_id, key)
);
CREATE INDEX discovery_extension_keys_key ON discovery_extension_keys (key);
