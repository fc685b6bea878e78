-- The pricing endpoint's sums from the counts row instead of a pass over the model's GPUs (2 000
-- index entries, about 0.9 ms, per request at 100 000 GPUs over 50 models; the minimum and maximum
-- come from the ends of the asking-price index). The triggers of 0009 are replaced by ones that also
-- keep the sums: of the asking prices of the counted GPUs, and of the current prices of the
-- available ones.
ALTER TABLE gpu_model_counts ADD COLUMN asking_sum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE gpu_model_counts ADD COLUMN available_current_sum INTEGER NOT NULL DEFAULT 0;

-- The asking-price index now serves only the extremes and the median of a model's asking prices,
-- so it holds just those: a booking (a status change) and a repricing (a current-price change) no
-- longer rewrite one of its entries.
DROP INDEX gpus_model_asking;
CREATE INDEX gpus_model_asking ON gpus (model_key, price_micro) WHERE deleted_at IS NULL;

UPDATE gpu_model_counts SET
    asking_sum = (SELECT COALESCE(SUM(price_micro), 0) FROM gpus
                  WHERE gpus.model_key = gpu_model_counts.model_key AND deleted_at IS NULL),
    available_current_sum = (SELECT COALESCE(SUM(current_price_micro), 0) FROM gpus
                             WHERE gpus.model_key = gpu_model_counts.model_key
                               AND deleted_at IS NULL AND status = 'available');

DROP TRIGGER gpus_count_insert;
DROP TRIGGER gpus_count_update;
DROP TRIGGER gpus_count_move;
DROP TRIGGER gpus_count_delete;

CREATE TRIGGER gpus_count_insert AFTER INSERT ON gpus
BEGIN
    INSERT INTO gpu_model_counts (model_key, total, available, booked, offline, asking_sum,
                                  available_current_sum)
    VALUES (NEW.model_key, NEW.deleted_at IS NULL,
            NEW.deleted_at IS NULL AND NEW.status = 'available',
            NEW.deleted_at IS NULL AND NEW.status = 'booked',
            NEW.deleted_at IS NULL AND NEW.status = 'offline',
            IIF(NEW.deleted_at IS NULL, NEW.price_micro, 0),
            IIF(NEW.deleted_at IS NULL AND NEW.status = 'available', NEW.current_price_micro, 0))
    ON CONFLICT (model_key) DO UPDATE SET total = total + excluded.total,
        available = available + excluded.available, booked = booked + excluded.booked,
        offline = offline + excluded.offline, asking_sum = asking_sum + excluded.asking_sum,
        available_current_sum = available_current_sum + excluded.available_current_sum;
END;

-- The usual change (a status, a price, or a deletion) moves figures within one model's row: one
-- update. The catalogue refresh writes only the prices that changed, so this fires once per
-- repriced GPU.
CREATE TRIGGER gpus_count_update
AFTER UPDATE OF status, deleted_at, price_micro, current_price_micro ON gpus
WHEN OLD.model_key = NEW.model_key AND (OLD.status <> NEW.status
    OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
    OR OLD.price_micro <> NEW.price_micro OR OLD.current_price_micro <> NEW.current_price_micro)
BEGIN
    UPDATE gpu_model_counts SET
        total = total - (OLD.deleted_at IS NULL) + (NEW.deleted_at IS NULL),
        available = available - (OLD.deleted_at IS NULL AND OLD.status = 'available')
                              + (NEW.deleted_at IS NULL AND NEW.status = 'available'),
        booked = booked - (OLD.deleted_at IS NULL AND OLD.status = 'booked')
                        + (NEW.deleted_at IS NULL AND NEW.status = 'booked'),
        offline = offline - (OLD.deleted_at IS NULL AND OLD.status = 'offline')
                          + (NEW.deleted_at IS NULL AND NEW.status = 'offline'),
        asking_sum = asking_sum - IIF(OLD.deleted_at IS NULL, OLD.price_micro, 0)
                                + IIF(NEW.deleted_at IS NULL, NEW.price_micro, 0),
        available_current_sum = available_current_sum
            - IIF(OLD.deleted_at IS NULL AND OLD.status = 'available', OLD.current_price_micro, 0)
            + IIF(NEW.deleted_at IS NULL AND NEW.status = 'available', NEW.current_price_micro, 0)
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
        offline = offline - (OLD.deleted_at IS NULL AND OLD.status = 'offline'),
        asking_sum = asking_sum - IIF(OLD.deleted_at IS NULL, OLD.price_micro, 0),
        available_current_sum = available_current_sum
            - IIF(OLD.deleted_at IS NULL AND OLD.status = 'available', OLD.current_price_micro, 0)
    WHERE model_key = OLD.model_key;
    INSERT INTO gpu_model_counts (model_key, total, available, booked, offline, asking_sum,
                                  available_current_sum)
    VALUES (NEW.model_key, NEW.deleted_at IS NULL,
            NEW.deleted_at IS NULL AND NEW.status = 'available',
            NEW.deleted_at IS NULL AND NEW.status = 'booked',
            NEW.deleted_at IS NULL AND NEW.status = 'offline',
            IIF(NEW.deleted_at IS NULL, NEW.price_micro, 0),
            IIF(NEW.deleted_at IS NULL AND NEW.status = 'available', NEW.current_price_micro, 0))
    ON CONFLICT (model_key) DO UPDATE SET total = total + excluded.total,
        available = available + excluded.available, booked = booked + excluded.booked,
        offline = offline + excluded.offline, asking_sum = asking_sum + excluded.asking_sum,
        available_current_sum = available_current_sum + excluded.available_current_sum;
END;

CREATE TRIGGER gpus_count_delete AFTER DELETE ON gpus
BEGIN
    UPDATE gpu_model_counts SET
        total = total - (OLD.deleted_at IS NULL),
        available = available - (OLD.deleted_at IS NULL AND OLD.status = 'available'),
        booked = booked - (OLD.deleted_at IS NULL AND OLD.status = 'booked'),
        offline = offline - (OLD.deleted_at IS NULL AND OLD.status = 'offline'),
        asking_sum = asking_sum - IIF(OLD.deleted_at IS NULL, OLD.price_micro, 0),
        available_current_sum = available_current_sum
            - IIF(OLD.deleted_at IS NULL AND OLD.status = 'available', OLD.current_price_micro, 0)
    WHERE model_key = OLD.model_key;
END;
