-- A booking's length is kept once, in whole seconds (duration_seconds); the hours shown are derived.
ALTER TABLE bookings DROP COLUMN duration_hours;
