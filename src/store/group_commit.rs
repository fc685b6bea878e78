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
//! PostgreSQL groups concurrent commits itself and has many writers, so there a write runs on a pool
//! connection in its own transaction, or alone in autocommit when it is one statement.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use sqlx::any::{AnyArguments, AnyQueryResult};
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, Any, AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreError, StoreResult, checkpoint};

/// What a write does with its connection, which is inside a transaction (a savepoint on SQLite).
pub type WriteFuture<'c, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'c>>;

/// One statement with owned arguments, for [`Store::execute`].
pub type Statement = sqlx::query::Query<'static, Any, AnyArguments<'static>>;

/// The most writes one commit holds, so that a flood of writes still commits (and answers) in steps.
const MAX_GROUP: usize = 256;

/// Answers a write's caller once its group's commit is known: `None` when it is on disk.
type Reply = Box<dyn FnOnce(Option<&Arc<sqlx::Error>>) + Send>;
type RanFuture<'c> = Pin<Box<dyn Future<Output = (bool, Reply)> + Send + 'c>>;
type Job = Box<dyn QueuedWrite>;

/// A write erased to what the coordinator needs.
trait QueuedWrite: Send {
    /// Leaves nothing behind when it fails (see [`Store::write_statement`]): it needs no savepoint.
    fn undoes_itself(&self) -> bool;
    /// Runs the write; says whether to keep its changes, and how to answer its caller.
    fn run(self: Box<Self>, conn: &mut AnyConnection) -> RanFuture<'_>;
    /// Answers without running (its group failed before its turn).
    fn fail(self: Box<Self>, failure: &Arc<sqlx::Error>);
}

struct Queued<T, F> {
    work: F,
    answer: oneshot::Sender<StoreResult<T>>,
    undoes_itself: bool,
}

impl<T, F> QueuedWrite for Queued<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut AnyConnection) -> WriteFuture<'c, T> + Send + 'static,
{
    fn undoes_itself(&self) -> bool {
        self.undoes_itself
    }

    fn run(self: Box<Self>, conn: &mut AnyConnection) -> RanFuture<'_> {
        let Queued { work, answer, .. } = *self;
        Box::pin(async move {
            let outcome = work(conn).await;
            let keep = outcome.is_ok();
            let reply: Reply = Box::new(move |commit_failure| {
                let result = match (outcome, commit_failure) {
                    (Ok(value), None) => Ok(value),
                    (Ok(_), Some(failure)) => Err(shared_failure(failure)),
                    (Err(err), _) => Err(err),
                };
                // The caller may be gone (its request was cancelled): the write stands all the same.
                let _ = answer.send(result);
            });
            (keep, reply)
        })
    }

    fn fail(self: Box<Self>, failure: &Arc<sqlx::Error>) {
        let _ = self.answer.send(Err(shared_failure(failure)));
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
    /// Checkpoints of the write-ahead log done off the writer, and those that failed (0 for a
    /// database in memory, which has no log).
    pub checkpoints: u64,
    pub checkpoint_failures: u64,
    /// Pages in the write-ahead log at the last checkpoint.
    pub log_pages: u64,
}

impl WriteQueue {
    /// Starts the coordinator, which commits on connections of `writer` (a one-connection pool, so
    /// other users of the writer wait between groups) and stops when every `Store` is gone. With
    /// `checkpoints` (a connection to the same file, whose writer does not checkpoint), the log is
    /// checkpointed there after commits (see [`super::checkpoint`]).
    pub(super) fn start(writer: AnyPool, checkpoints: Option<AnyPool>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let (committed, checkpoints, checkpointer) = match checkpoints.map(checkpoint::checkpointer)
        {
            Some((committed, counters, run)) => (Some(committed), Some(counters), Some(run)),
            None => (None, None, None),
        };
        let coordinator = coordinate(writer, queue, Arc::clone(&counters), committed);
        // The coordinator gets a thread and a runtime of its own. A group takes a round trip to
        // SQLite's worker thread per statement, and on the shared runtime each of them waited behind
        // the request tasks in the run queue: under load a group took milliseconds, nearly all of it
        // queueing, while the disk idled. The thread ends with the coordinator.
        // Timers only (the pool's acquire timeout): without an I/O driver, waking the thread is a
        // futex rather than a write to an eventfd that an epoll then reads.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        std::thread::Builder::new()
            .name("sqlite-group-commit".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // On this thread too: its work is a round trip to the checkpoint connection's own
                    // SQLite thread now and then.
                    let checkpoints = checkpointer.map(tokio::spawn);
                    coordinator.await;
                    // The coordinator dropped the signal: the checkpointer runs a last time and ends.
                    if let Some(checkpoints) = checkpoints {
                        let _ = checkpoints.await;
                    }
                });
            })?;
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
        }
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
    /// Runs `work` in a transaction and returns its outcome once the transaction is committed. An
    /// error from `work` rolls its changes back, and only its own. On SQLite concurrent writes share
    /// one commit.
    pub async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        match &self.writes {
            Some(queue) => enqueue(queue, work, false).await,
            None => {
                let mut tx = super::begin(&self.writer).await?;
                // An error drops `tx`, which rolls it back.
                let value = work(&mut tx).await?;
                tx.commit().await?;
                Ok(value)
            }
        }
    }

    /// Like [`Store::write`], for `work` that leaves nothing behind when it fails: one statement
    /// (SQLite undoes a failed one by itself), or statements in a savepoint of their own that `work`
    /// rolls back. It needs no savepoint from the group; on PostgreSQL it runs in autocommit, without
    /// the round trips of BEGIN and COMMIT.
    pub async fn write_statement<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        match &self.writes {
            Some(queue) => enqueue(queue, work, true).await,
            None => work(&mut *self.writer.acquire().await?).await,
        }
    }

    /// The SQLite write queue's counters; `None` on PostgreSQL, which has no queue.
    pub fn write_stats(&self) -> Option<WriteStats> {
        self.writes.as_ref().map(WriteQueue::stats)
    }

    /// Runs statements built with [`super::sql::Sql`] as one write, in order.
    pub async fn write_all(
        &self,
        statements: Vec<(String, AnyArguments<'static>)>,
    ) -> StoreResult<()> {
        // PostgreSQL: unnamed statements. A named one keeps the parameter types of its first
        // execution; through the Any driver those differed between runs of the same decision-log
        // insert, which then failed on that connection with "incorrect binary data format in bind
        // parameter N" at every retry. The Parse travels in the same round trip.
        let persistent = self.backend == super::Backend::Sqlite;
        self.write(move |conn| {
            Box::pin(async move {
                for (text, args) in statements {
                    sqlx::query_with(&text, args)
                        .persistent(persistent)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Runs one write statement (see [`Store::write_statement`]).
    pub async fn execute(&self, statement: Statement) -> StoreResult<AnyQueryResult> {
        self.write_statement(move |conn| {
            Box::pin(async move { Ok(statement.execute(conn).await?) })
        })
        .await
    }
}

async fn enqueue<T, F>(queue: &WriteQueue, work: F, undoes_itself: bool) -> StoreResult<T>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut AnyConnection) -> WriteFuture<'c, T> + Send + 'static,
{
    let (answer, answered) = oneshot::channel();
    queue
        .jobs
        .send(Box::new(Queued {
            work,
            answer,
            undoes_itself,
        }))
        .map_err(|_| StoreError::WriteAbandoned)?;
    // Counted once queued, so that a count that includes this write means it can be taken.
    let _waiting = Waiting::new(&queue.counters);
    // A dropped answer: the coordinator stopped, or the write panicked.
    answered.await.map_err(|_| StoreError::WriteAbandoned)?
}

/// One failure (of a commit, say) told to every write it concerns.
fn shared_failure(failure: &Arc<sqlx::Error>) -> StoreError {
    match failure.as_ref() {
        // Keeps "overloaded" recognisable (503, not 500).
        sqlx::Error::PoolTimedOut => StoreError::Query(sqlx::Error::PoolTimedOut),
        _ => StoreError::Commit(Arc::clone(failure)),
    }
}

async fn coordinate(
    writer: AnyPool,
    mut queue: mpsc::UnboundedReceiver<Job>,
    counters: Arc<Counters>,
    committed: Option<checkpoint::Committed>,
) {
    let mut group = VecDeque::new();
    while let Some(first) = queue.recv().await {
        group.push_back(first);
        let conn = writer.acquire().await;
        // Whatever queued while the previous group was committing (or while the connection was
        // busy) joins this one: the group grows with the load, and a lone write waits for nobody.
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push_back(job),
                Err(_) => break,
            }
        }
        match conn {
            Ok(conn) => commit_group(conn, &mut group, &counters).await,
            Err(err) => fail_group(Vec::new(), &mut group, err),
        }
        if let Some(committed) = &committed {
            committed.signal();
        }
    }
}

/// Runs every write of `pending` in one transaction on `conn`, commits it and counts it. When the
/// transaction fails before its commit, every write of the group is told so (none of them is on disk),
/// so that a database that keeps failing still answers everyone.
async fn commit_group(
    mut conn: PoolConnection<Any>,
    pending: &mut VecDeque<Job>,
    counters: &Counters,
) {
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(err) => {
            fail_group(Vec::new(), pending, err);
            return;
        }
    };
    let mut kept = 0;
    let mut replies: Vec<Reply> = Vec::with_capacity(pending.len());
    while let Some(job) = pending.pop_front() {
        if job.undoes_itself() {
            // A write that undoes itself (one statement, which SQLite undoes alone, or statements in
            // their own savepoint) runs without one from the group: two statements fewer per write. A
            // panicking one may have run its statements; like a write whose caller went away, it stands.
            let ran = AssertUnwindSafe(job.run(&mut tx)).catch_unwind().await;
            let reply = match ran {
                Ok((keep, reply)) => {
                    kept += u64::from(keep);
                    if !keep && let Err(err) = still_in_transaction(&mut tx).await {
                        let mut ran = replies;
                        ran.push(reply);
                        fail_group(ran, pending, err);
                        return;
                    }
                    Some(reply)
                }
                Err(_) => None,
            };
            replies.extend(reply);
            continue;
        }
        let mut savepoint = match (&mut tx).begin().await {
            Ok(savepoint) => savepoint,
            Err(err) => {
                pending.push_front(job);
                fail_group(replies, pending, err);
                return;
            }
        };
        let ran = AssertUnwindSafe(job.run(&mut savepoint))
            .catch_unwind()
            .await;
        let (closed, reply) = match ran {
            Ok((true, reply)) => {
                kept += 1;
                (savepoint.commit().await, Some(reply))
            }
            Ok((false, reply)) => (savepoint.rollback().await, Some(reply)),
            // A bug in a write: its caller learns it from the dropped answer; the others go on.
            Err(_) => (savepoint.rollback().await, None),
        };
        replies.extend(reply);
        if let Err(err) = closed {
            // The transaction is unusable (SQLite ends it on some I/O errors).
            fail_group(replies, pending, err);
            return;
        }
    }
    let committed = tx.commit().await.map_err(Arc::new);
    // Counted before anyone is answered, so that a caller reading the counters sees its own write.
    if committed.is_ok() && kept > 0 {
        counters.groups.fetch_add(1, Ordering::Relaxed);
        counters.committed.fetch_add(kept, Ordering::Relaxed);
    }
    for reply in replies {
        reply(committed.as_ref().err());
    }
}

/// After a failed statement: whether SQLite kept the transaction. It ends it on some errors (I/O,
/// a full disk, no memory), and the writes after it would then each commit alone. `BEGIN` fails inside
/// a transaction; when it succeeds, the group's transaction is gone (and the new one is rolled back
/// when the caller drops `conn`'s transaction).
async fn still_in_transaction(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    match sqlx::query("BEGIN").execute(&mut *conn).await {
        Err(_) => Ok(()),
        Ok(_) => Err(sqlx::Error::Protocol(
            "SQLite ended the group's transaction after a failed statement".into(),
        )),
    }
}

/// Tells every write of a group that failed before its commit: those that ran and those still waiting.
fn fail_group(ran: Vec<Reply>, waiting: &mut VecDeque<Job>, err: sqlx::Error) {
    let failure = Arc::new(err);
    for reply in ran {
        reply(Some(&failure));
    }
    for job in waiting.drain(..) {
        job.fail(&failure);
    }
}
