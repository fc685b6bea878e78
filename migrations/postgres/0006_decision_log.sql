-- The decision log: every live policy decision (and every shadow decision beside it), written in
-- batches off the request path and pruned by age and row count. `seq` orders entries and is the
-- paging cursor; `id` is what bookings, reviews and responses name.
CREATE TABLE policy_decisions (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    slot          TEXT NOT NULL,
    -- live | canary | shadow
    role          TEXT NOT NULL,
    -- a shadow decision: the served decision it shadows
    live_id       TEXT,
    policy        TEXT NOT NULL,
    module_sha256 TEXT,
    input         TEXT NOT NULL,
    output        TEXT NOT NULL,
    -- what the decision comes down to: a price (pricing) or a verdict word (the other slots)
    price         DOUBLE PRECISION,
    verdict       TEXT,
    fallback      BIGINT NOT NULL CHECK (fallback IN (0, 1)),
    failure_kind  TEXT,
    failure       TEXT,
    fuel          BIGINT NOT NULL,
    duration_us   BIGINT NOT NULL,
    request_id    TEXT,
    gpu_id        TEXT,
    decided_at    BIGINT NOT NULL
);

CREATE INDEX policy_decisions_slot_time ON policy_decisions (slot, decided_at);
CREATE INDEX policy_decisions_time ON policy_decisions (decided_at);
CREATE INDEX policy_decisions_gpu ON policy_decisions (gpu_id, decided_at);
CREATE INDEX policy_decisions_live ON policy_decisions (live_id) WHERE live_id IS NOT NULL;

-- Which decision priced a booking, which sweeper decision last acted on it, which moderated a review.
ALTER TABLE bookings ADD COLUMN pricing_decision TEXT;
ALTER TABLE bookings ADD COLUMN timeout_decision TEXT;
ALTER TABLE reviews ADD COLUMN decision_id TEXT;
CREATE INDEX bookings_pricing_decision ON bookings (pricing_decision) WHERE pricing_decision IS NOT NULL;
