-- A market of 100 000 GPUs (issue 10): the booking path's market facts and the pricing endpoint read
-- index ranges of one model instead of the whole catalogue.

-- The model of a booking's GPU, written with the booking, so "bookings of these models since" is one
-- index range instead of a join that probes every GPU of the catalogue.
ALTER TABLE bookings ADD COLUMN model_key TEXT;
UPDATE bookings SET model_key = (SELECT model_key FROM gpus WHERE gpus.id = bookings.gpu_id);
CREATE INDEX bookings_model_start ON bookings (model_key, start_at);

-- The pricing endpoint's aggregate (counts, asking-price minimum, maximum and sum, available GPUs'
-- current prices) from the index alone, and its median as a walk to the middle of the model's range.
CREATE INDEX gpus_model_asking ON gpus (model_key, price_micro, status, current_price_micro)
    WHERE deleted_at IS NULL;
-- A model's GPUs in price order: the pricing endpoint's cheapest (available) GPU, and `model=` sorted
-- by price.
CREATE INDEX gpus_model_price ON gpus (model_key, current_price_micro, id, status)
    WHERE deleted_at IS NULL;

-- Each model's GPUs per status (deleted GPUs not counted), kept by triggers in the transaction of the
-- change, so a quote reads one row instead of counting the model's GPUs (2 000 index entries per
-- booking at 100 000 GPUs over 50 models). Every model that has a GPU row has a counts row.
CREATE TABLE gpu_model_counts (
    model_key   TEXT PRIMARY KEY,
    total       INTEGER NOT NULL DEFAULT 0,
    available   INTEGER NOT NULL DEFAULT 0,
    booked      INTEGER NOT NULL DEFAULT 0,
    offline     INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

INSERT INTO gpu_model_counts (model_key, total, available, booked, offline)
SELECT model_key,
       SUM(deleted_at IS NULL),
       SUM(deleted_at IS NULL AND status = 'available'),
       SUM(deleted_at IS NULL AND status = 'booked'),
       SUM(deleted_at IS NULL AND status = 'offline')
FROM gpus GROUP BY model_key;

CREATE TRIGGER gpus_count_insert AFTER INSERT ON gpus
BEGIN
    INSERT INTO gpu_model_counts (model_key, total, available, booked, offline)
    VALUES (NEW.model_key, NEW.deleted_at IS NULL,
            NEW.deleted_at IS NULL AND NEW.status = 'available',
            NEW.deleted_at IS NULL AND NEW.status = 'booked',
            NEW.deleted_at IS NULL AND NEW.status = 'offline')
    ON CONFLICT (model_key) DO UPDATE SET total = total + excluded.total,
        available = available + excluded.available, booked = booked + excluded.booked,
        offline = offline + excluded.offline;
END;

-- The usual change (a status, or a deletion) moves counts within one model's row: one update.
CREATE TRIGGER gpus_count_update AFTER UPDATE OF status, deleted_at ON gpus
WHEN OLD.model_key = NEW.model_key AND (OLD.status <> NEW.status
    OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL))
BEGIN
    UPDATE gpu_model_counts SET
        total = total - (OLD.deleted_at IS NULL) + (NEW.deleted_at IS NULL),
        available = available - (OLD.deleted_at IS NULL AND OLD.status = 'available')
                              + (NEW.deleted_at IS NULL AND NEW.status = 'available'),
        booked = booked - (OLD.deleted_at IS NULL AND OLD.status = 'booked')
                        + (NEW.deleted_at IS NULL AND NEW.status = 'booked'),
        offline = offline - (OLD.deleted_at IS NULL AND OLD.status = 'offline')
                          + (NEW.deleted_at IS NULL AND NEW.status = 'offline')
    WHERE model_key = NEW.model_key;
END;

-- A GPU moved to another model (no API does this; a hand-made change stays counted right).
CREATE TRIGGER gpus_count_move AFTER UPDATE OF model_key ON gpus
WHEN OLD.model_key <> NEW.model_key
BEGIN
    UPDATE gpu_model_counts SET
        total = total - (OLD.deleted_at IS NULL),
        available = available - (OLD.deleted_at IS NULL AND OLD.status = 'available'),
        booked = booked - (OLD.deleted_at IS NULL AND OLD.status = 'booked'),
        offline = offline - (OLD.deleted_at IS NULL AND OLD.status = 'offline')
    WHERE model_key = OLD.model_key;
    INSERT INTO gpu_model_counts (model_key, total, available, booked, offline)
    VALUES (NEW.model_key, NEW.deleted_at IS NULL,
            NEW.deleted_at IS NULL AND NEW.status = 'available',
            NEW.deleted_at IS NULL AND NEW.status = 'booked',
            NEW.deleted_at IS NULL AND NEW.status = 'offline')
    ON CONFLICT (model_key) DO UPDATE SET total = total + excluded.total,
        available = available + excluded.available, booked = booked + excluded.booked,
        offline = offline + excluded.offline;
END;

CREATE TRIGGER gpus_count_delete AFTER DELETE ON gpus
BEGIN
    UPDATE gpu_model_counts SET
        total = total - (OLD.deleted_at IS NULL),
        available = available - (OLD.deleted_at IS NULL AND OLD.status = 'available'),
        booked = booked - (OLD.deleted_at IS NULL AND OLD.status = 'booked'),
        offline = offline - (OLD.deleted_at IS NULL AND OLD.status = 'offline')
    WHERE model_key = OLD.model_key;
END;
