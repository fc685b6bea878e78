-- The pricing guardrails' memory of each GPU's last booked quote (issue 12): kept here, not in a
-- replica's memory, so every replica quotes alike. One row per GPU, written when a quote is booked.
CREATE TABLE gpu_price_state (
    gpu_id              TEXT PRIMARY KEY REFERENCES gpus (id),
    anchor_price        REAL NOT NULL,
    anchor_unix         INTEGER NOT NULL,
    last_price          REAL NOT NULL,
    last_multiplier     REAL NOT NULL,
    updated_at          INTEGER NOT NULL
) STRICT;

-- A client lists its own bids, newest first.
CREATE INDEX bids_client ON bids (client_id, created_at);
