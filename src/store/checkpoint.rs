//! WAL checkpoints off the writer (SQLite).
//!
//! By default SQLite copies its write-ahead log back into the database file from inside the commit
//! that takes the log past 1 000 pages: the group commit's one writer then reads the log, writes the
//! pages and syncs the database file while every queued write waits behind it. At 100 000 GPUs that
//! was a twentieth of the server's samples under booking load, all of it serialised on the writer. So
//! the writer's connections leave checkpoints out (`wal_autocheckpoint = 0`) and a connection of its
//! own checkpoints shortly after commits, concurrently with the writer's next groups.
//!
//! The checkpoints are PASSIVE: they copy what no reader still needs and never wait for a lock, so
//! neither the writer nor a reader ever waits for one. A checkpoint changes nothing a commit promised:
//! a crash between a commit and its checkpoint leaves the commit in the log (synced at commit with
//! `synchronous = FULL`, the default), and the next open replays it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::Duration;

use rusqlite::Connection;

/// At most one checkpoint this often under load: each copies a page once however often it changed
/// in between, and the log stays a few thousand pages at the write rates measured here.
const BUSY_INTERVAL: Duration = Duration::from_millis(100);

/// Commits that bypass the write queue (migrations) signal nothing: a checkpoint this often catches
/// them. One with nothing to copy reads the log's index and returns.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// The writer's side: says that a commit happened.
#[derive(Debug)]
pub(super) struct Committed(SyncSender<()>);

impl Committed {
    pub(super) fn signal(&self) {
        // Full: a signal is already waiting, which is all the checkpointer needs to know.
        let _ = self.0.try_send(());
    }
}

/// What the checkpointer has done so far.
#[derive(Debug, Default)]
pub(super) struct CheckpointCounts {
    pub(super) done: AtomicU64,
    pub(super) failed: AtomicU64,
    /// Pages in the log at the last checkpoint: a log that keeps growing means checkpoints cannot
    /// keep up (or a reader holds an old snapshot for long).
    pub(super) log_pages: AtomicU64,
}

/// Starts a checkpointer over `connection` (to the writer's database file) in a thread of its own,
/// and returns the signal that wakes it and its counters. It runs until the signal is dropped, then
/// checkpoints once more and ends.
pub(super) fn start(connection: Connection) -> std::io::Result<(Committed, Arc<CheckpointCounts>)> {
    let (sender, commits) = mpsc::sync_channel(1);
    let counters = Arc::new(CheckpointCounts::default());
    let counted = Arc::clone(&counters);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            loop {
                let woken = commits.recv_timeout(IDLE_INTERVAL);
                checkpoint(&connection, &counted);
                if woken == Err(RecvTimeoutError::Disconnected) {
                    break;
                }
                std::thread::sleep(BUSY_INTERVAL);
            }
        })?;
    Ok((Committed(sender), counters))
}

fn checkpoint(connection: &Connection, counters: &CheckpointCounts) {
    // (busy, pages in the log, pages copied to the database file)
    let outcome = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match outcome {
        Ok((logged, copied)) => {
            tracing::trace!(logged, copied, "WAL checkpoint");
            // -1 when the database is not in WAL mode.
            let logged = u64::try_from(logged).unwrap_or(0);
            counters.log_pages.store(logged, Ordering::Relaxed);
            counters.done.fetch_add(1, Ordering::Release);
        }
        // The log keeps growing until a later checkpoint succeeds; nothing written is at risk.
        Err(err) => {
            tracing::warn!(error = %err, "WAL checkpoint failed");
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
