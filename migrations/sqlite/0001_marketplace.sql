-- Times are unix microseconds (UTC); money is integer micro-AITBC so sums never drift.
-- STRICT tables: SQLite rejects a value of the wrong type instead of storing it silently.

CREATE TABLE gpus (
    id                  TEXT PRIMARY KEY,
    miner_id            TEXT NOT NULL,
    model               TEXT NOT NULL,
    -- lower-cased model without spaces, dashes and underscores: what the model filter matches against
    model_key           TEXT NOT NULL,
    memory_gb           REAL NOT NULL,
    cuda_version        TEXT,
    cuda_cores          INTEGER,
    compute_capability  TEXT,
    region              TEXT,
    description         TEXT,
    capabilities        TEXT NOT NULL DEFAULT '[]',
    price_micro         INTEGER NOT NULL CHECK (price_micro > 0),
    current_price_micro INTEGER NOT NULL CHECK (current_price_micro > 0),
    status              TEXT NOT NULL CHECK (status IN ('available', 'booked', 'offline')),
    total_bookings      INTEGER NOT NULL DEFAULT 0,
    rating_sum          INTEGER NOT NULL DEFAULT 0,
    rating_count        INTEGER NOT NULL DEFAULT 0,
    last_heartbeat      INTEGER,
    created_at          INTEGER NOT NULL,
    deleted_at          INTEGER
) STRICT;

CREATE INDEX gpus_listing ON gpus (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX gpus_model ON gpus (model_key) WHERE deleted_at IS NULL;
CREATE INDEX gpus_miner ON gpus (miner_id);

-- A booking is also its order (the bill): one row, one lifecycle, so they can never disagree.
CREATE TABLE bookings (
    id                  TEXT PRIMARY KEY,
    order_id            TEXT NOT NULL UNIQUE,
    gpu_id              TEXT NOT NULL REFERENCES gpus (id),
    gpu_model           TEXT NOT NULL,
    miner_id            TEXT NOT NULL,
    client_id           TEXT NOT NULL,
    job_id              TEXT,
    duration_hours      REAL NOT NULL,
    duration_seconds    INTEGER NOT NULL CHECK (duration_seconds > 0),
    price_micro         INTEGER NOT NULL,
    total_micro         INTEGER NOT NULL,
    refund_micro        INTEGER,
    charged_micro       INTEGER,
    status              TEXT NOT NULL CHECK (status IN ('active', 'completed', 'cancelled', 'expired')),
    multiplier          REAL NOT NULL,
    policy              TEXT NOT NULL,
    pricing_fallback    INTEGER NOT NULL CHECK (pricing_fallback IN (0, 1)),
    extensions          INTEGER NOT NULL DEFAULT 0,
    grace_until         INTEGER,
    start_at            INTEGER NOT NULL,
    end_at              INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    ended_at            INTEGER,
    end_reason          TEXT
) STRICT;

-- The rule that makes double booking impossible whatever the concurrency or number of replicas.
CREATE UNIQUE INDEX bookings_one_active_per_gpu ON bookings (gpu_id) WHERE status = 'active';
CREATE INDEX bookings_active_end ON bookings (end_at) WHERE status = 'active';
CREATE INDEX bookings_client ON bookings (client_id, created_at);
CREATE INDEX bookings_miner ON bookings (miner_id, created_at);
CREATE INDEX bookings_created ON bookings (created_at);
CREATE INDEX bookings_gpu_start ON bookings (gpu_id, start_at);

CREATE TABLE reviews (
    id                  TEXT PRIMARY KEY,
    gpu_id              TEXT NOT NULL REFERENCES gpus (id),
    reviewer_id         TEXT NOT NULL,
    rating              INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment             TEXT,
    status              TEXT NOT NULL CHECK (status IN ('accepted', 'flagged', 'rejected')),
    moderation_reason   TEXT NOT NULL DEFAULT '',
    policy              TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    decided_at          INTEGER
) STRICT;

CREATE INDEX reviews_gpu ON reviews (gpu_id, status, created_at);
CREATE INDEX reviews_reviewer ON reviews (reviewer_id, created_at);
CREATE INDEX reviews_status ON reviews (status, created_at);

-- One row per model and time bucket; replicas racing to record the same bucket collapse to one row.
CREATE TABLE price_samples (
    model_key           TEXT NOT NULL,
    bucket              INTEGER NOT NULL,
    model               TEXT NOT NULL,
    average_price_micro INTEGER NOT NULL,
    gpu_count           INTEGER NOT NULL,
    recorded_at         INTEGER NOT NULL,
    PRIMARY KEY (model_key, bucket)
) STRICT;

CREATE TABLE bids (
    id                  TEXT PRIMARY KEY,
    client_id           TEXT NOT NULL,
    provider            TEXT,
    gpu_model           TEXT,
    capacity            INTEGER NOT NULL CHECK (capacity > 0),
    price_micro         INTEGER NOT NULL CHECK (price_micro > 0),
    notes               TEXT,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'cancelled')),
    created_at          INTEGER NOT NULL
) STRICT;

CREATE INDEX bids_status ON bids (status, created_at);
