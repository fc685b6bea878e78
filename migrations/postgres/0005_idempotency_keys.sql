-- Idempotency-Key: the first answer to a write, kept so that a retry with the same key gets it again
-- instead of running the write twice. One row per (caller, key); `status` and `response` are NULL
-- while the first request runs (the row is its claim). Rows older than the configured TTL are purged.
CREATE TABLE idempotency_keys (
    principal   TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    -- method and path of the first request: the same key on another endpoint is another request
    request     TEXT NOT NULL,
    -- SHA-256 (hex) of the first request's body, canonical JSON when it parses
    body_sha256 TEXT NOT NULL,
    status      BIGINT,
    response    TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (principal, idem_key)
);

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
