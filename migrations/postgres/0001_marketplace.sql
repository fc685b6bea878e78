-- Times are unix microseconds (UTC); money is integer micro-AITBC so sums never drift.
-- Same schema as migrations/sqlite, in PostgreSQL types.

CREATE TABLE gpus (
    id                  TEXT PRIMARY KEY,
    miner_id            TEXT NOT NULL,
    model               TEXT NOT NULL,
    -- lower-cased model without spaces, dashes and underscores: what the model filter matches against
    model_key           TEXT NOT NULL,
    memory_gb           DOUBLE PRECISION NOT NULL,
    cuda_version        TEXT,
    cuda_cores          BIGINT,
    compute_capability  TEXT,
    region              TEXT,
    description         TEXT,
    capabilities        TEXT NOT NULL DEFAULT '[]',
    price_micro         BIGINT NOT NULL CHECK (price_micro > 0),
    current_price_micro BIGINT NOT NULL CHECK (current_price_micro > 0),
    status              TEXT NOT NULL CHECK (status IN ('available', 'booked', 'offline')),
    total_bookings      BIGINT NOT NULL DEFAULT 0,
    rating_sum          BIGINT NOT NULL DEFAULT 0,
    rating_count        BIGINT NOT NULL DEFAULT 0,
    last_heartbeat      BIGINT,
    created_at          BIGINT NOT NULL,
    deleted_at          BIGINT
);

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
    duration_hours      DOUBLE PRECISION NOT NULL,
    duration_seconds    BIGINT NOT NULL CHECK (duration_seconds > 0),
    price_micro         BIGINT NOT NULL,
    total_micro         BIGINT NOT NULL,
    refund_micro        BIGINT,
    charged_micro       BIGINT,
    status              TEXT NOT NULL CHECK (status IN ('active', 'completed', 'cancelled', 'expired')),
    multiplier          DOUBLE PRECISION NOT NULL,
    policy              TEXT NOT NULL,
    pricing_fallback    BIGINT NOT NULL CHECK (pricing_fallback IN (0, 1)),
    extensions          BIGINT NOT NULL DEFAULT 0,
    grace_until         BIGINT,
    start_at            BIGINT NOT NULL,
    end_at              BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    ended_at            BIGINT,
    end_reason          TEXT
);

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
    rating              BIGINT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment             TEXT,
    status              TEXT NOT NULL CHECK (status IN ('accepted', 'flagged', 'rejected')),
    moderation_reason   TEXT NOT NULL DEFAULT '',
    policy              TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    decided_at          BIGINT
);

CREATE INDEX reviews_gpu ON reviews (gpu_id, status, created_at);
CREATE INDEX reviews_reviewer ON reviews (reviewer_id, created_at);
CREATE INDEX reviews_status ON reviews (status, created_at);

-- One row per model and time bucket; replicas racing to record the same bucket collapse to one row.
CREATE TABLE price_samples (
    model_key           TEXT NOT NULL,
    bucket              BIGINT NOT NULL,
    model               TEXT NOT NULL,
    average_price_micro BIGINT NOT NULL,
    gpu_count           BIGINT NOT NULL,
    recorded_at         BIGINT NOT NULL,
    PRIMARY KEY (model_key, bucket)
);

CREATE TABLE bids (
    id                  TEXT PRIMARY KEY,
    client_id           TEXT NOT NULL,
    provider            TEXT,
    gpu_model           TEXT,
    capacity            BIGINT NOT NULL CHECK (capacity > 0),
    price_micro         BIGINT NOT NULL CHECK (price_micro > 0),
    notes               TEXT,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'cancelled')),
    created_at          BIGINT NOT NULL
);

CREATE INDEX bids_status ON bids (status, created_at);
