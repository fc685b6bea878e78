//! The decision log's moving parts: the writer that batches the runtime's decisions into the
//! database off the request path, retention, and the admin reads ("why was this booking priced so").

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Market;
use crate::config::DecisionLogConfig;
use crate::domain::{DecisionEntry, DecisionRole, Timestamp};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::decisions::{self, DecisionFilter, LoggedDecision};

/// Decisions waiting for the writer; a full queue makes deciders wait (see `DecisionSink::record`).
const QUEUE: usize = 16_384;

/// The most entries one page of `GET /v1/admin/decisions` returns.
pub const MAX_PAGE: u32 = 1_000;

/// How long a batch is retried at shutdown before its entries are tried one by one.
const RETRY_AT_SHUTDOWN: Duration = Duration::from_millis(300);

/// Entries tried alone that fail in a row before the writer takes the database to be down.
const SINGLE_FAILURES_MEANING_DOWN: u32 = 3;

/// A running writer: stop it after the last decision was made, and it writes what is queued.
pub struct DecisionWriter {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What the writer has done: entries on disk, and entries it gave up on (each also logged with its id).
#[derive(Debug, Clone, Default)]
pub struct WriterCounters {
    pub written: Counter,
    pub lost: Counter,
}

/// How the writer batches and how long it insists.
#[derive(Debug, Clone, Copy)]
struct Batching {
    size: usize,
    flush: Duration,
    retry_for: Duration,
}

impl DecisionWriter {
    /// Starts the writer on `store`; the runtime sends to the returned sender.
    pub fn start(
        store: Store,
        config: &DecisionLogConfig,
        counters: WriterCounters,
    ) -> (Self, mpsc::Sender<DecisionEntry>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let stop = CancellationToken::new();
        let batching = Batching {
            size: config.batch_size.max(1),
            flush: Duration::from_millis(config.flush_ms),
            retry_for: Duration::from_millis(config.retry_ms),
        };
        let task = tokio::spawn(write_batches(
            store,
            receiver,
            batching,
            counters,
            stop.clone(),
        ));
        (Self { stop, task }, sender)
    }

    /// Writes what is queued and stops, by `deadline` at the latest.
    pub async fn finish(self, deadline: tokio::time::Instant) {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        if tokio::time::timeout_at(deadline, self.task).await.is_err() {
            tracing::warn!("the decision log's writer did not finish within the shutdown grace");
            abort.abort();
        }
    }
}

async fn write_batches(
    store: Store,
    mut queue: mpsc::Receiver<DecisionEntry>,
    batching: Batching,
    counters: WriterCounters,
    stop: CancellationToken,
) {
    let Batching {
        size: batch_size,
        flush,
        retry_for,
    } = batching;
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        let stopping = tokio::select! {
            got = queue.recv_many(&mut batch, batch_size) => got == 0,
            () = stop.cancelled() => true,
        };
        if stopping {
            while let Ok(entry) = queue.try_recv() {
                batch.push(entry);
            }
            for chunk in batch.chunks(batch_size) {
                write(&store, chunk, RETRY_AT_SHUTDOWN, &counters).await;
            }
            return;
        }
        // One entry arrived: give concurrent decisions a moment to join its transaction. The writer
        // sleeps through it rather than waking for every entry (a wake-up per decision costs the
        // request path more than the write), unless a full batch was already waiting.
        if batch.len() < batch_size {
            tokio::select! {
                () = tokio::time::sleep(flush) => {}
                () = stop.cancelled() => {}
            }
            while batch.len() < batch_size {
                match queue.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
        }
        let retry_for = if stop.is_cancelled() {
            RETRY_AT_SHUTDOWN
        } else {
            retry_for
        };
        write(&store, &batch, retry_for, &counters).await;
        batch.clear();
    }
}

/// Writes one batch, retrying with backoff while the database refuses it (a passing failure loses
/// nothing). After `retry_for` each entry gets one try of its own: an entry that can never be written
/// must not hold the log up behind it, and a database that stays down must not stall the deciders
/// (they wait once the queue is full). What still fails is counted as lost and logged with its id.
async fn write(
    store: &Store,
    batch: &[DecisionEntry],
    retry_for: Duration,
    counters: &WriterCounters,
) {
    let give_up_at = Instant::now() + retry_for;
    let mut wait = Duration::from_millis(50);
    for attempt in 1.. {
        match decisions::insert_batch(store, batch).await {
            Ok(()) => {
                counters.written.inc_by(batch.len() as u64);
                return;
            }
            Err(e) if Instant::now() + wait >= give_up_at => {
                tracing::warn!(
                    entries = batch.len(),
                    attempt,
                    "writing decision log entries keeps failing; trying them one by one: {e}"
                );
                break;
            }
            Err(e) => {
                tracing::warn!(
                    entries = batch.len(),
                    attempt,
                    "writing decision log entries failed, retrying: {e}"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    // A few failures in a row: the database is down, not an entry bad; the rest are not tried (each
    // try could take a connection timeout).
    let mut failed_in_a_row = 0;
    for (i, entry) in batch.iter().enumerate() {
        if failed_in_a_row == SINGLE_FAILURES_MEANING_DOWN {
            let rest = (batch.len() - i) as u64;
            counters.lost.inc_by(rest);
            tracing::error!(
                entries = rest,
                "decision log entries lost: the database refuses them"
            );
            return;
        }
        match decisions::insert_batch(store, std::slice::from_ref(entry)).await {
            Ok(()) => {
                counters.written.inc();
                failed_in_a_row = 0;
            }
            Err(e) => {
                counters.lost.inc();
                failed_in_a_row += 1;
                tracing::error!(decision = %entry.id, "decision log entry lost: {e}");
            }
        }
    }
}

/// Deletes entries past either retention bound, every `prune_interval_ms`, until `shutdown`.
pub async fn run_retention(market: Market, shutdown: CancellationToken) {
    let config = market.config.decision_log.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(config.prune_interval_ms));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = prune(&market, &config).await {
            tracing::warn!("decision log retention failed: {e}");
        }
    }
}

/// One retention pass; returns how many entries went.
pub async fn prune(market: &Market, config: &DecisionLogConfig) -> Result<u64> {
    let max_age = i64::try_from(config.max_age_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
    let older_than = Timestamp::now().minus_seconds(max_age);
    let pruned = decisions::prune(&market.store, older_than, config.max_rows).await?;
    if pruned > 0 {
        tracing::debug!(pruned, "decision log entries past retention deleted");
    }
    Ok(pruned)
}

/// `GET /v1/admin/decisions` after the API parsed it.
#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    pub slot: Option<String>,
    pub role: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub gpu_id: Option<String>,
    pub fallback: Option<bool>,
    pub limit: Option<u32>,
    pub cursor: Option<i64>,
}

/// One page of entries, newest first, and the cursor of the next page (None: no more).
pub async fn list(
    market: &Market,
    query: DecisionQuery,
) -> Result<(Vec<LoggedDecision>, Option<i64>)> {
    if let Some(slot) = &query.slot {
        slot_name(slot)?;
    }
    let role = match &query.role {
        None => None,
        Some(role) => Some(DecisionRole::parse(role).ok_or_else(|| {
            Error::bad_request(format!("role {role:?} must be live, canary or shadow"))
        })?),
    };
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::bad_request(format!(
            "limit must be within 1-{MAX_PAGE}"
        )));
    }
    let filter = DecisionFilter {
        slot: query.slot,
        role,
        since: query.since,
        until: query.until,
        gpu_id: query.gpu_id,
        fallback: query.fallback,
        before_seq: query.cursor,
        limit,
    };
    let page = decisions::list(&market.store, &filter).await?;
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|d| d.seq))
        .flatten();
    Ok((page, next))
}

pub async fn get(market: &Market, id: &str) -> Result<LoggedDecision> {
    decisions::get(&market.store, id).await?.ok_or_else(|| {
        Error::not_found(format!(
            "no decision {id} in the log (it may be past retention)"
        ))
    })
}

/// Checks a slot name as the API and CLI spell it.
pub fn slot_name(slot: &str) -> Result<&'static str> {
    crate::policy::wasm::Slot::ALL
        .into_iter()
        .map(|s| s.as_str())
        .find(|s| *s == slot)
        .ok_or_else(|| {
            Error::bad_request(format!(
                "unknown slot {slot:?} (expected pricing, booking-timeout or review-moderation)"
            ))
        })
}

/// An instant as the CLI takes it: RFC 3339 (`2026-11-26T06:00:00Z`) or unix seconds.
pub fn parse_instant(name: &str, text: &str) -> Result<Timestamp> {
    match text.parse::<i64>() {
        Ok(seconds) => Ok(Timestamp::from_unix_seconds(seconds)),
        Err(_) => parse_rfc3339(name, text),
    }
}

/// An instant as the API takes it (the OpenAPI `date-time` format): RFC 3339.
pub fn parse_rfc3339(name: &str, text: &str) -> Result<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Timestamp::from_micros(t.timestamp_micros()))
        .map_err(|_| {
            Error::bad_request(format!(
                "{name} must be an RFC 3339 time (2026-11-26T06:00:00Z), not {text:?}"
            ))
        })
}
