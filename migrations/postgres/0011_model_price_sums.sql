-- The pricing endpoint's sums from the counts row instead of a pass over the model's GPUs (2 000
-- index entries per request at 100 000 GPUs over 50 models; the minimum and maximum come from the
-- ends of the asking-price index). The trigger of 0009 now also keeps the sums: of the asking prices
-- of the counted GPUs, and of the current prices of the available ones. The catalogue refresh writes
-- one model's changed prices per transaction, so it holds that model's counts row only that long.
ALTER TABLE gpu_model_counts ADD COLUMN asking_sum BIGINT NOT NULL DEFAULT 0;
ALTER TABLE gpu_model_counts ADD COLUMN available_current_sum BIGINT NOT NULL DEFAULT 0;

-- No replica may change a GPU between the sums below and the trigger taking over.
LOCK TABLE gpus IN SHARE ROW EXCLUSIVE MODE;

-- The asking-price index now serves only the extremes and the median of a model's asking prices,
-- so it holds just those: a booking (a status change) and a repricing (a current-price change) no
-- longer rewrite one of its entries.
DROP INDEX gpus_model_asking;
CREATE INDEX gpus_model_asking ON gpus (model_key, price_micro) WHERE deleted_at IS NULL;

UPDATE gpu_model_counts c SET
    asking_sum = s.asking_sum,
    available_current_sum = s.available_current_sum
FROM (SELECT model_key,
             COALESCE(SUM(price_micro) FILTER (WHERE deleted_at IS NULL), 0) AS asking_sum,
             COALESCE(SUM(current_price_micro)
                      FILTER (WHERE deleted_at IS NULL AND status = 'available'), 0)
                 AS available_current_sum
      FROM gpus GROUP BY model_key) s
WHERE c.model_key = s.model_key;

CREATE OR REPLACE FUNCTION gpus_count_models() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_counted BOOLEAN := TG_OP <> 'INSERT' AND OLD.deleted_at IS NULL;
    is_counted BOOLEAN := TG_OP <> 'DELETE' AND NEW.deleted_at IS NULL;
    was_available BOOLEAN := was_counted AND OLD.status = 'available';
    is_available BOOLEAN := is_counted AND NEW.status = 'available';
BEGIN
    -- The usual change (a status, a price, or a deletion) moves figures within one model's row.
    IF TG_OP = 'UPDATE' AND OLD.model_key = NEW.model_key THEN
        UPDATE gpu_model_counts SET
            total = total - was_counted::int + is_counted::int,
            available = available - was_available::int + is_available::int,
            booked = booked - (was_counted AND OLD.status = 'booked')::int
                            + (is_counted AND NEW.status = 'booked')::int,
            offline = offline - (was_counted AND OLD.status = 'offline')::int
                              + (is_counted AND NEW.status = 'offline')::int,
            asking_sum = asking_sum - CASE WHEN was_counted THEN OLD.price_micro ELSE 0 END
                                    + CASE WHEN is_counted THEN NEW.price_micro ELSE 0 END,
            available_current_sum = available_current_sum
                - CASE WHEN was_available THEN OLD.current_price_micro ELSE 0 END
                + CASE WHEN is_available THEN NEW.current_price_micro ELSE 0 END
        WHERE model_key = NEW.model_key;
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        UPDATE gpu_model_counts SET
            total = total - was_counted::int,
            available = available - was_available::int,
            booked = booked - (was_counted AND OLD.status = 'booked')::int,
            offline = offline - (was_counted AND OLD.status = 'offline')::int,
            asking_sum = asking_sum - CASE WHEN was_counted THEN OLD.price_micro ELSE 0 END,
            available_current_sum = available_current_sum
                - CASE WHEN was_available THEN OLD.current_price_micro ELSE 0 END
        WHERE model_key = OLD.model_key;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO gpu_model_counts AS c (model_key, total, available, booked, offline,
                                           asking_sum, available_current_sum)
        VALUES (NEW.model_key, is_counted::int, is_available::int,
                (is_counted AND NEW.status = 'booked')::int,
                (is_counted AND NEW.status = 'offline')::int,
                CASE WHEN is_counted THEN NEW.price_micro ELSE 0 END,
                CASE WHEN is_available THEN NEW.current_price_micro ELSE 0 END)
        ON CONFLICT (model_key) DO UPDATE SET total = c.total + excluded.total,
            available = c.available + excluded.available, booked = c.booked + excluded.booked,
            offline = c.offline + excluded.offline, asking_sum = c.asking_sum + excluded.asking_sum,
            available_current_sum = c.available_current_sum + excluded.available_current_sum;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER gpus_count_update ON gpus;
CREATE TRIGGER gpus_count_update
AFTER UPDATE OF status, deleted_at, model_key, price_micro, current_price_micro ON gpus
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
    OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
    OR OLD.model_key IS DISTINCT FROM NEW.model_key
    OR OLD.price_micro IS DISTINCT FROM NEW.price_micro
    OR OLD.current_price_micro IS DISTINCT FROM NEW.current_price_micro)
EXECUTE FUNCTION gpus_count_models();
