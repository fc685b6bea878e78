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
//!
//! SQLite starts writing its log from the beginning again only when a write transaction begins with
//! every frame of it copied. Under a steady load the writer commits while the checkpointer copies, so
//! that never happened: the log grew by a gigabyte in ten seconds of book+release, and every commit
//! appended to fresh blocks, which the file system zeroes and allocates, and whose new size the sync
//! must write too (a sixth of the server's CPU samples went to the zeroing alone). So after each pass
//! of the checkpointer the writer itself copies the few frames committed meanwhile, between two of
//! its groups ([`Checkpointer::catch_up`]): then nothing is left to copy, and its next group
//! restarts the log, which overwrites the blocks it already has.

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

/// The writer's side of the checkpointer.
#[derive(Debug)]
pub(super) struct Checkpointer {
    committed: SyncSender<()>,
    counts: Arc<CheckpointCounts>,
    /// The checkpointer's passes the writer has caught up with.
    caught_up: u64,
}

impl Checkpointer {
    /// Says that a commit happened.
    pub(super) fn signal(&self) {
        // Full: a signal is already waiting, which is all the checkpointer needs to know.
        let _ = self.committed.try_send(());
    }

    /// Once after each pass of the checkpointer, copies on the writer's connection what was committed
    /// during the pass, so that the next write transaction can start the log over. Between groups:
    /// nothing else writes meanwhile, and the copy is a few milliseconds' worth of commits. Passive
    /// too: frames a reader's snapshot still needs stay, and the next pass tries again.
    pub(super) fn catch_up(&mut self, writer: &Connection) {
        let passes = self.counts.done.load(Ordering::Acquire);
        if passes == self.caught_up {
            return;
        }
        self.caught_up = passes;
        match writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        }) {
            Ok((logged, copied)) => {
                if logged == copied {
                    self.counts.caught_up.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "WAL checkpoint on the writer failed");
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
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
    /// The writer's catch-ups that left nothing to copy: each lets the log start over.
    pub(super) caught_up: AtomicU64,
}

/// Starts a checkpointer over `connection` (to the writer's database file) in a thread of its own,
/// and returns the writer's side of it and its counters. It runs until the writer's side is dropped,
/// then checkpoints once more and ends.
pub(super) fn start(
    connection: Connection,
) -> std::io::Result<(Checkpointer, Arc<CheckpointCounts>)> {
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
    let writer_side = Checkpointer {
        committed: sender,
        counts: Arc::clone(&counters),
        caught_up: 0,
    };
    Ok((writer_side, counters))
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
