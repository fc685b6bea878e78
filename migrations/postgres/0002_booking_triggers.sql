-- Booking and ending a booking each become one statement: the GPU's status follows its bookings in
-- triggers that run inside the statement's own transaction (see migrations/sqlite/0002 for the same
-- rules in SQLite). Concurrent bookings of one GPU: the first claims the GPU row; the others either
-- find it no longer available or collide on bookings_one_active_per_gpu.

ALTER TABLE bookings ADD COLUMN heartbeat_cutoff BIGINT;

CREATE FUNCTION bookings_claim_gpu() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE gpus SET status = 'booked', total_bookings = total_bookings + 1
    WHERE id = NEW.gpu_id AND status = 'available' AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'gpu_not_available';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER bookings_claim_gpu AFTER INSERT ON bookings
FOR EACH ROW WHEN (NEW.status = 'active') EXECUTE FUNCTION bookings_claim_gpu();

CREATE FUNCTION bookings_free_gpu() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE gpus
    SET status = CASE
        WHEN last_heartbeat IS NOT NULL AND last_heartbeat < NEW.heartbeat_cutoff THEN 'offline'
        ELSE 'available'
    END
    WHERE id = NEW.gpu_id AND status = 'booked';
    RETURN NULL;
END
$$;

CREATE TRIGGER bookings_free_gpu AFTER UPDATE OF status ON bookings
FOR EACH ROW WHEN (OLD.status = 'active' AND NEW.status <> 'active') EXECUTE FUNCTION bookings_free_gpu();
