-- Booking and ending a booking each become one statement: the GPU's status follows its bookings in
-- triggers that run inside the statement's own transaction, so the claim and the booking row, or the
-- end and the freed GPU, commit together or not at all. The partial unique index
-- bookings_one_active_per_gpu still forbids two active bookings outright.

-- GPU heartbeats older than this (unix µs) when the booking ends mean the GPU is gone: it is freed
-- as offline instead of available.
ALTER TABLE bookings ADD COLUMN heartbeat_cutoff INTEGER;

CREATE TRIGGER bookings_claim_gpu AFTER INSERT ON bookings WHEN NEW.status = 'active'
BEGIN
    SELECT RAISE(ABORT, 'gpu_not_available')
    WHERE NOT EXISTS (
        SELECT 1 FROM gpus WHERE id = NEW.gpu_id AND status = 'available' AND deleted_at IS NULL
    );
    UPDATE gpus SET status = 'booked', total_bookings = total_bookings + 1 WHERE id = NEW.gpu_id;
END;

CREATE TRIGGER bookings_free_gpu AFTER UPDATE OF status ON bookings
WHEN OLD.status = 'active' AND NEW.status <> 'active'
BEGIN
    UPDATE gpus
    SET status = CASE
        WHEN last_heartbeat IS NOT NULL AND last_heartbeat < NEW.heartbeat_cutoff THEN 'offline'
        ELSE 'available'
    END
    WHERE id = NEW.gpu_id AND status = 'booked';
END;
