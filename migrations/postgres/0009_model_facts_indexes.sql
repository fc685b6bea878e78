-- A market of 100 000 GPUs (issue 10): the booking path's market facts and the pricing endpoint read
-- index ranges of one model instead of the whole catalogue.
-- Same schema as migrations/sqlite.

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

-- Each model's GPUs per status (deleted GPUs not counted), kept by a trigger in the transaction of the
-- change, so a quote reads one row instead of counting the model's GPUs (2 000 index entries and
-- their heap visibility checks per booking at 100 000 GPUs over 50 models). Every model that has a
-- GPU row has a counts row. A booking locks its model's row until it commits: bookings of one model
-- commit one after the other, those of different models in parallel.
CREATE TABLE gpu_model_counts (
    model_key   TEXT PRIMARY KEY,
    total       BIGINT NOT NULL DEFAULT 0,
    available   BIGINT NOT NULL DEFAULT 0,
    booked      BIGINT NOT NULL DEFAULT 0,
    offline     BIGINT NOT NULL DEFAULT 0
);

-- No replica may change a GPU between the count below and the trigger taking over.
LOCK TABLE gpus IN SHARE ROW EXCLUSIVE MODE;

INSERT INTO gpu_model_counts (model_key, total, available, booked, offline)
SELECT model_key,
       COUNT(*) FILTER (WHERE deleted_at IS NULL),
       COUNT(*) FILTER (WHERE deleted_at IS NULL AND status = 'available'),
       COUNT(*) FILTER (WHERE deleted_at IS NULL AND status = 'booked'),
       COUNT(*) FILTER (WHERE deleted_at IS NULL AND status = 'offline')
FROM gpus GROUP BY model_key;

CREATE FUNCTION gpus_count_models() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_counted BOOLEAN := TG_OP <> 'INSERT' AND OLD.deleted_at IS NULL;
    is_counted BOOLEAN := TG_OP <> 'DELETE' AND NEW.deleted_at IS NULL;
BEGIN
    -- The usual change (a status, or a deletion) moves counts within one model's row: one update.
    IF TG_OP = 'UPDATE' AND OLD.model_key = NEW.model_key THEN
        UPDATE gpu_model_counts SET
            total = total - was_counted::int + is_counted::int,
            available = available - (was_counted AND OLD.status = 'available')::int
                                  + (is_counted AND NEW.status = 'available')::int,
            booked = booked - (was_counted AND OLD.status = 'booked')::int
                            + (is_counted AND NEW.status = 'booked')::int,
            offline = offline - (was_counted AND OLD.status = 'offline')::int
                              + (is_counted AND NEW.status = 'offline')::int
        WHERE model_key = NEW.model_key;
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        UPDATE gpu_model_counts SET
            total = total - was_counted::int,
            available = available - (was_counted AND OLD.status = 'available')::int,
            booked = booked - (was_counted AND OLD.status = 'booked')::int,
            offline = offline - (was_counted AND OLD.status = 'offline')::int
        WHERE model_key = OLD.model_key;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO gpu_model_counts AS c (model_key, total, available, booked, offline)
        VALUES (NEW.model_key, is_counted::int,
                (is_counted AND NEW.status = 'available')::int,
                (is_counted AND NEW.status = 'booked')::int,
                (is_counted AND NEW.status = 'offline')::int)
        ON CONFLICT (model_key) DO UPDATE SET total = c.total + excluded.total,
            available = c.available + excluded.available, booked = c.booked + excluded.booked,
            offline = c.offline + excluded.offline;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER gpus_count_insert AFTER INSERT ON gpus
FOR EACH ROW EXECUTE FUNCTION gpus_count_models();
CREATE TRIGGER gpus_count_update AFTER UPDATE OF status, deleted_at, model_key ON gpus
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
    OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
    OR OLD.model_key IS DISTINCT FROM NEW.model_key)
EXECUTE FUNCTION gpus_count_models();
CREATE TRIGGER gpus_count_delete AFTER DELETE ON gpus
FOR EACH ROW EXECUTE FUNCTION gpus_count_models();
