//! Writes, and group commit on SQLite.
//!
//! A SQLite commit in `synchronous = FULL` costs one sync of the write-ahead log, and SQLite has one
//! writer: committing each request alone caps writes at the disk's serial sync rate. So every write
//! goes to one coordinator, on a thread of its own, which takes all the writes that queued while the
//! previous commit was syncing, runs each inside one transaction, a write of several statements in a
//! SAVEPOINT of its own (a write that fails is rolled back to its savepoint alone, its neighbours keep
//! theirs; a failed single statement is undone by SQLite itself), commits once, and only then answers
//! each caller with its own outcome. Nothing is acknowledged before the commit that holds it is on
//! disk.
//!
//! The coordinator runs the statements itself, on its own connection (rusqlite). Through sqlx each
//! statement was a round trip to the connection's worker thread: two context switches, and with the
//! cores busy serving requests each switch waited for a core. A group of ten writes took 2.8 ms while
//! the disk syncs in 0.15 ms (bench/load.sh, 100 GPUs, 32 connections).
//!
//! PostgreSQL groups concurrent commits itself and has many writers, so there a write runs on a pool
//! connection in its own transaction, or alone in autocommit when it is one statement.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::statement::Statement;
use super::{Store, StoreError, StoreResult, checkpoint, log_writes};

/// The most writes one commit holds, so that a flood of writes still commits (and answers) in steps.
const MAX_GROUP: usize = 256;

/// Distinct write statements the coordinator keeps prepared (rusqlite's default is 16; the market
/// has about 30, and the catalogue refresh's batches add a few shapes).
const PREPARED_STATEMENTS: usize = 64;

/// Answers a write's caller once its group's commit is known: `None` when it is on disk.
type Reply = Box<dyn FnOnce(Option<&Arc<rusqlite::Error>>) + Send>;
type Job = Box<dyn QueuedWrite>;

/// A write erased to what the coordinator needs.
trait QueuedWrite: Send {
    /// Leaves nothing behind when it fails (one statement, which SQLite undoes alone): it needs no
    /// savepoint.
    fn undoes_itself(&self) -> bool;
    /// Runs the write; says whether to keep its changes, and how to answer its caller.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Reply);
    /// Answers without running (its group failed before its turn).
    fn fail(self: Box<Self>, failure: &Arc<rusqlite::Error>);
}

struct Queued<T, F> {
    work: F,
    answer: oneshot::Sender<StoreResult<T>>,
    undoes_itself: bool,
}

impl<T, F> QueuedWrite for Queued<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    fn undoes_itself(&self) -> bool {
        self.undoes_itself
    }

    fn run(self: Box<Self>, conn: &Connection) -> (bool, Reply) {
        let Queued { work, answer, .. } = *self;
        let outcome = work(conn);
        let keep = outcome.is_ok();
        let reply: Reply = Box::new(move |commit_failure| {
            let result = match (outcome, commit_failure) {
                (Ok(value), None) => Ok(value),
                (Ok(_), Some(failure)) => Err(StoreError::Commit(Arc::clone(failure))),
                (Err(err), _) => Err(err),
            };
            // The caller may be gone (its request was cancelled): the write stands all the same.
            let _ = answer.send(result);
        });
        (keep, reply)
    }

    fn fail(self: Box<Self>, failure: &Arc<rusqlite::Error>) {
        let _ = self
            .answer
            .send(Err(StoreError::Commit(Arc::clone(failure))));
    }
}

/// The sending side of the SQLite write queue.
#[derive(Debug, Clone)]
pub(super) struct WriteQueue {
    jobs: mpsc::UnboundedSender<Job>,
    counters: Arc<Counters>,
    checkpoints: Option<Arc<checkpoint::CheckpointCounts>>,
}

#[derive(Debug, Default)]
struct Counters {
    waiting: AtomicU64,
    groups: AtomicU64,
    committed: AtomicU64,
    log_writes: AtomicU64,
    log_write_calls: AtomicU64,
}

/// What the SQLite write queue has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Writes sent and not answered yet.
    pub waiting: u64,
    /// Transactions committed, each holding one group of writes.
    pub groups: u64,
    /// Writes committed.
    pub committed: u64,
    /// Checkpoints of the write-ahead log done off the writer, and those that failed.
    pub checkpoints: u64,
    pub checkpoint_failures: u64,
    /// Pages in the write-ahead log at the last checkpoint.
    pub log_pages: u64,
    /// The writer's catch-ups after a checkpoint that left nothing to copy, so that the log could
    /// start over (see [`super::checkpoint`]).
    pub log_caught_up: u64,
    /// SQLite's writes to the write-ahead log, and the system calls that carried them (fewer when
    /// the writer's connection gathers them, see [`super::log_writes`]).
    pub log_writes: u64,
    pub log_write_calls: u64,
}

impl WriteQueue {
    /// Starts the coordinator on `writer` (the one connection that writes the database) in a thread
    /// of its own; it stops when every `Store` is gone. With `checkpoints` (a connection to the same
    /// file, whose writer does not checkpoint), the log is checkpointed there after commits (see
    /// [`super::checkpoint`]).
    pub(super) fn start(
        writer: Connection,
        checkpoints: Option<Connection>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let (checkpointer, checkpoints) = match checkpoints.map(checkpoint::start).transpose()? {
            Some((checkpointer, counts)) => (Some(checkpointer), Some(counts)),
            None => (None, None),
        };
        let counted = Arc::clone(&counters);
        writer.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
        std::thread::Builder::new()
            .name("sqlite-group-commit".into())
            .spawn(move || coordinate(&writer, queue, &counted, checkpointer))?;
        Ok(Self {
            jobs,
            counters,
            checkpoints,
        })
    }

    pub(super) fn stats(&self) -> WriteStats {
        let checkpoints = |count: fn(&checkpoint::CheckpointCounts) -> &AtomicU64| {
            self.checkpoints
                .as_ref()
                .map_or(0, |done| count(done).load(Ordering::Acquire))
        };
        WriteStats {
            waiting: self.counters.waiting.load(Ordering::Acquire),
            groups: self.counters.groups.load(Ordering::Relaxed),
            committed: self.counters.committed.load(Ordering::Relaxed),
            checkpoints: checkpoints(|c| &c.done),
            checkpoint_failures: checkpoints(|c| &c.failed),
            log_pages: checkpoints(|c| &c.log_pages),
            log_caught_up: checkpoints(|c| &c.caught_up),
            log_writes: self.counters.log_writes.load(Ordering::Relaxed),
            log_write_calls: self.counters.log_write_calls.load(Ordering::Relaxed),
        }
    }

    /// Runs `work` in the next group's transaction, in a savepoint of its own unless it
    /// `undoes_itself`, and returns its outcome once the group is committed.
    pub(super) async fn write<T, F>(&self, undoes_itself: bool, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Box::new(Queued {
                work,
                answer,
                undoes_itself,
            }))
            .map_err(|_| StoreError::WriteAbandoned)?;
        // Counted once queued, so that a count that includes this write means it can be taken.
        let _waiting = Waiting::new(&self.counters);
        // A dropped answer: the coordinator stopped, or the write panicked.
        answered.await.map_err(|_| StoreError::WriteAbandoned)?
    }
}

/// Counts a write as waiting until its caller has its answer or gives up.
struct Waiting<'a>(&'a Counters);

impl<'a> Waiting<'a> {
    fn new(counters: &'a Counters) -> Self {
        counters.waiting.fetch_add(1, Ordering::Release);
        Self(counters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Store {
    /// The SQLite write queue; `None` on PostgreSQL.
    pub(super) fn sqlite_writes(&self) -> Option<&WriteQueue> {
        self.writes.as_ref()
    }

    /// Runs one statement as a write; returns the rows it changed. On SQLite it shares a commit with
    /// concurrent writes; on PostgreSQL it runs alone in autocommit.
    pub async fn execute(&self, statement: Statement) -> StoreResult<u64> {
        match &self.writes {
            Some(queue) => {
                queue
                    .write(true, move |conn| Ok(statement.run(conn)?))
                    .await
            }
            None => {
                let mut conn = self.writer.acquire().await?;
                Ok(statement.run_sqlx(&mut conn, true).await?)
            }
        }
    }

    /// Runs `statements` in order as one write: all of them or, when one fails, none. Returns the rows
    /// they changed.
    pub async fn execute_all(&self, statements: Vec<Statement>) -> StoreResult<u64> {
        self.execute_guarded(statements, false)
            .await
            .map(|(changed, _)| changed)
    }

    /// Runs `guard` and, when it changed a row, `then` in order, as one write. Returns whether
    /// `guard` changed a row.
    pub async fn execute_if_changed(
        &self,
        guard: Statement,
        then: Vec<Statement>,
    ) -> StoreResult<bool> {
        let mut statements = Vec::with_capacity(then.len() + 1);
        statements.push(guard);
        statements.extend(then);
        self.execute_guarded(statements, true)
            .await
            .map(|(_, guard_changed)| guard_changed)
    }

    /// The rows the statements changed, and false when `stop_unless_first` stopped the write after
    /// a first statement that changed nothing (nothing after it runs).
    async fn execute_guarded(
        &self,
        statements: Vec<Statement>,
        stop_unless_first: bool,
    ) -> StoreResult<(u64, bool)> {
        match &self.writes {
            Some(queue) => {
                let single = statements.len() == 1;
                queue
                    .write(single, move |conn| {
                        let mut changed = 0;
                        for (n, statement) in statements.iter().enumerate() {
                            let rows = statement.run(conn)?;
                            if n == 0 && rows == 0 && stop_unless_first {
                                return Ok((0, false));
                            }
                            changed += rows;
                        }
                        Ok((changed, true))
                    })
                    .await
            }
            None => {
                // Unnamed statements: a named one keeps the parameter types of its first execution,
                // and through the Any driver those differed between runs of the same decision-log
                // insert, which then failed on that connection with "incorrect binary data format in
                // bind parameter N" at every retry. The Parse travels in the same round trip.
                let mut tx = super::begin(&self.writer).await?;
                let mut changed = 0;
                for (n, statement) in statements.iter().enumerate() {
                    let rows = statement.run_sqlx(&mut tx, false).await?;
                    if n == 0 && rows == 0 && stop_unless_first {
                        return Ok((0, false));
                    }
                    changed += rows;
                }
                tx.commit().await?;
                Ok((changed, true))
            }
        }
    }

    /// Runs one statement whose `RETURNING` yields one text column, as a write; `None` when it
    /// returned no row.
    pub async fn execute_returning_text(
        &self,
        statement: Statement,
    ) -> StoreResult<Option<String>> {
        match &self.writes {
            Some(queue) => {
                queue
                    .write(true, move |conn| {
                        let mut prepared = statement.prepare(conn)?;
                        let mut rows = prepared.raw_query();
                        Ok(match rows.next()? {
                            Some(row) => Some(row.get(0)?),
                            None => None,
                        })
                    })
                    .await
            }
            None => Ok(
                sqlx::query_scalar_with(statement.text(), statement.any_arguments())
                    .fetch_optional(&self.writer)
                    .await?,
            ),
        }
    }

    /// The SQLite write queue's counters; `None` on PostgreSQL, which has no queue.
    pub fn write_stats(&self) -> Option<WriteStats> {
        self.writes.as_ref().map(WriteQueue::stats)
    }
}

/// Why a group failed after a statement: SQLite ended its transaction (it does on some I/O errors, a
/// full disk, no memory), and the writes after it would each commit alone.
fn transaction_ended() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some("SQLite ended the group's transaction after a failed statement".into()),
    )
}

fn coordinate(
    conn: &Connection,
    mut queue: mpsc::UnboundedReceiver<Job>,
    counters: &Counters,
    mut checkpointer: Option<checkpoint::Checkpointer>,
) {
    let mut group = VecDeque::new();
    while let Some(first) = queue.blocking_recv() {
        if let Some(checkpointer) = &mut checkpointer {
            checkpointer.catch_up(conn);
        }
        group.push_back(first);
        // IMMEDIATE: the write lock now, waiting (up to the busy timeout) while another connection
        // holds it, rather than at the group's first statement.
        let begun = conn.execute_batch("BEGIN IMMEDIATE");
        // Whatever queued while the previous group was committing (or while the lock was taken)
        // joins this one: the group grows with the load, and a lone write waits for nobody.
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push_back(job),
                Err(_) => break,
            }
        }
        match begun {
            Ok(()) => commit_group(conn, &mut group, counters),
            Err(err) => fail_group(conn, Vec::new(), &mut group, err),
        }
        if let Some(checkpointer) = &checkpointer {
            checkpointer.signal();
        }
    }
}

/// Runs every write of `pending` in the transaction begun on `conn`, commits it and counts it. When
/// the transaction fails before its commit, every write of the group is told so (none of them is on
/// disk), so that a database that keeps failing still answers everyone.
fn commit_group(conn: &Connection, pending: &mut VecDeque<Job>, counters: &Counters) {
    let mut kept = 0;
    let mut replies: Vec<Reply> = Vec::with_capacity(pending.len());
    while let Some(job) = pending.pop_front() {
        if job.undoes_itself() {
            // One statement, which SQLite undoes alone when it fails: no savepoint, two statements
            // fewer per write. A panicking one may have run; like a write whose caller went away, it
            // stands.
            let Ok((keep, reply)) = catch_unwind(AssertUnwindSafe(|| job.run(conn))) else {
                continue;
            };
            kept += u64::from(keep);
            replies.push(reply);
            if !keep && conn.is_autocommit() {
                fail_group(conn, replies, pending, transaction_ended());
                return;
            }
            continue;
        }
        if let Err(err) = conn.execute_batch("SAVEPOINT write") {
            pending.push_front(job);
            fail_group(conn, replies, pending, err);
            return;
        }
        let (keep, reply) = match catch_unwind(AssertUnwindSafe(|| job.run(conn))) {
            Ok((keep, reply)) => (keep, Some(reply)),
            // A bug in a write: its caller learns it from the dropped answer; the others go on.
            Err(_) => (false, None),
        };
        let closed = if keep {
            kept += 1;
            conn.execute_batch("RELEASE write")
        } else {
            conn.execute_batch("ROLLBACK TO write; RELEASE write")
        };
        replies.extend(reply);
        if let Err(err) = closed {
            // The transaction is unusable (SQLite ends it on some I/O errors).
            fail_group(conn, replies, pending, err);
            return;
        }
    }
    let committed = conn.execute_batch("COMMIT").map_err(Arc::new);
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    // Counted before anyone is answered, so that a caller reading the counters sees its own write.
    if committed.is_ok() && kept > 0 {
        counters.groups.fetch_add(1, Ordering::Relaxed);
        counters.committed.fetch_add(kept, Ordering::Relaxed);
    }
    let log = log_writes::take_counts();
    counters.log_writes.fetch_add(log.writes, Ordering::Relaxed);
    counters
        .log_write_calls
        .fetch_add(log.calls, Ordering::Relaxed);
    for reply in replies {
        reply(committed.as_ref().err());
    }
}

/// Rolls back what is left of a group that failed before its commit and tells every write of it:
/// those that ran and those still waiting.
fn fail_group(
    conn: &Connection,
    ran: Vec<Reply>,
    waiting: &mut VecDeque<Job>,
    err: rusqlite::Error,
) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let failure = Arc::new(err);
    for reply in ran {
        reply(Some(&failure));
    }
    for job in waiting.drain(..) {
        job.fail(&failure);
    }
}
