-- The decision log moved to a database file of its own (migrations/sqlite-decision-log); the store
-- copied this table's rows there before this migration runs (see `Store::migrate`).
DROP TABLE IF EXISTS policy_decisions;
