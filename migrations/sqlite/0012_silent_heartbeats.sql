-- The heartbeat monitor looks for available GPUs silent since a cutoff every few seconds. Through the
-- status index it read every available GPU's row to compare its heartbeat (65 ms on a synthetic file
-- of 100 000 GPUs), on the writer, which held every booking back meanwhile. This index serves the
-- range of silent GPUs alone. It leaves status out, so that booking and releasing never rewrite it;
-- GPUs already offline stay in the range (a sweep reads them and skips them), bounded by the silent
-- part of the catalogue rather than its size.
CREATE INDEX gpus_silent_heartbeats ON gpus (last_heartbeat)
    WHERE deleted_at IS NULL AND last_heartbeat IS NOT NULL;
