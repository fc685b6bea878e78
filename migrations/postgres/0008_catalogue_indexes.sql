-- A catalogue of 100 000 GPUs (issue 10): every list filter and the price sort served by an index.
-- Same schema as migrations/sqlite.

-- Capabilities as rows, lower-cased, so the capability filter is an index lookup instead of LIKE over
-- JSON text. `gpus.capabilities` stays what the API shows; these rows are written with it.
CREATE TABLE gpu_capabilities (
    gpu_id      TEXT NOT NULL REFERENCES gpus (id),
    capability  TEXT NOT NULL,
    -- the GPU's, so a capability's GPUs are read in the catalogue's default order from the index alone
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (gpu_id, capability)
);

CREATE INDEX gpu_capabilities_listing ON gpu_capabilities (capability, created_at, gpu_id);

-- The distinct model keys and capabilities: substring and wildcard filters are resolved against these
-- few rows first, then the GPUs are found by exact, indexed values. Rows are never removed (a name
-- whose GPUs are all deleted just matches nothing).
CREATE TABLE gpu_models (
    model_key   TEXT PRIMARY KEY
);

CREATE TABLE capability_names (
    capability  TEXT PRIMARY KEY
);

INSERT INTO gpu_capabilities (gpu_id, capability, created_at)
    SELECT g.id, LOWER(c.value), g.created_at FROM gpus g, jsonb_array_elements_text(g.capabilities::jsonb) c(value)
    ON CONFLICT DO NOTHING;
INSERT INTO gpu_models (model_key) SELECT DISTINCT model_key FROM gpus;
INSERT INTO capability_names (capability) SELECT DISTINCT capability FROM gpu_capabilities;

-- Filters in the default order (created, then id), so a page reads only the rows it shows.
DROP INDEX gpus_model;
CREATE INDEX gpus_model_listing ON gpus (model_key, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX gpus_region_listing ON gpus (LOWER(region), created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX gpus_status_listing ON gpus (status, created_at, id) WHERE deleted_at IS NULL;
-- price_max and the price sort; memory_min and the memory sort.
CREATE INDEX gpus_current_price ON gpus (current_price_micro, id) WHERE deleted_at IS NULL;
CREATE INDEX gpus_memory ON gpus (memory_gb, id) WHERE deleted_at IS NULL;
-- A model's status counts (booking and pricing facts) without reading the rows.
CREATE INDEX gpus_model_status ON gpus (model_key, status) WHERE deleted_at IS NULL;
