-- The decision log on SQLite, in a database file of its own (`<database>.decisions.db`) so that its
-- inserts never queue behind, or hold up, the market's single writer. `{schema}` is the schema the
-- log's writer sees it as: `main` in its own file, `decision_log` when attached to an in-memory market.
-- The columns are those of migrations/postgres/0006_decision_log.sql; `PRAGMA user_version` counts the
-- versions of this file.
CREATE TABLE IF NOT EXISTS {schema}.policy_decisions (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
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
    price         REAL,
    verdict       TEXT,
    fallback      INTEGER NOT NULL CHECK (fallback IN (0, 1)),
    failure_kind  TEXT,
    failure       TEXT,
    fuel          INTEGER NOT NULL,
    duration_us   INTEGER NOT NULL,
    request_id    TEXT,
    gpu_id        TEXT,
    decided_at    INTEGER NOT NULL
) STRICT;

-- No index on the time alone: `seq` follows it (entries are appended as they are decided), which is
-- how retention finds the oldest; one index fewer to update per entry.
CREATE INDEX IF NOT EXISTS {schema}.policy_decisions_slot_time ON policy_decisions (slot, decided_at);
CREATE INDEX IF NOT EXISTS {schema}.policy_decisions_gpu ON policy_decisions (gpu_id, decided_at);
CREATE INDEX IF NOT EXISTS {schema}.policy_decisions_live ON policy_decisions (live_id)
    WHERE live_id IS NOT NULL;

PRAGMA {schema}.user_version = 1;
