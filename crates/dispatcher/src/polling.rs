//! Busy polling. A transaction that has called `pg_notify` holds a
//! database-wide lock through its commit's WAL flush, so producers that
//! each notify commit one at a time. When producers queue for that lock
//! (once the claimer claims past a rate, a watcher task samples `pg_locks`
//! every 25 ms), the claimer stops relying on notifications and polls, and
//! says so in the sequence
//! `outhook.claimer_polling_until` (epoch milliseconds); producers skip the
//! notification while that lies ahead (`outhook.wake_workers()`).
//!
//! Leaving is what keeps every wake-up: the claimer stops renewing the
//! value and polls until it has run out, then takes a snapshot and polls on
//! until every transaction running in it has ended, and claims once more.
//! A producer that saw the value ahead of the clock had its transaction id
//! before it looked (its rows were inserted), so it is in that snapshot or
//! committed before it. If another claimer renewed the value meanwhile,
//! leaving is that claimer's to do. A claimer that dies while polling
//! leaves the few rows committed in its last 200 ms to the others' poll
//! interval. One that stops while polling hands over: it waits the same way
//! and then wakes the other workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How far ahead of the clock a polling claimer keeps the value.
const AHEAD_MS: i64 = 200;
/// How often a polling claimer renews it.
const RENEW: Duration = Duration::from_millis(50);
/// Over how long the claim rate is measured.
const WINDOW: Duration = Duration::from_millis(250);
/// The pause between polls that found nothing: under tokio's millisecond
/// timer, slept on a blocking thread (see `pause`).
const POLL_GAP: Duration = Duration::from_micros(300);
/// How long leaving waits for the snapshot's transactions at most (an
/// unrelated session idle in a transaction would otherwise keep it polling);
/// past that the poll interval covers what is left.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// How long a claimer that stops while polling waits, at most, for the
/// transactions that may have skipped their notification (see
/// `BusyPolling::hand_over`); past it the poll interval covers.
const HAND_OVER_LIMIT: Duration = Duration::from_secs(1);
/// The mean number of producers waiting for the NOTIFY commit lock over a
/// window that makes polling worth it: they are held back, not merely
/// overlapping now and then (a queue that long means the lock is busy most
/// of the time). Below it, a notification wakes the claimer sooner than a
/// millisecond's poll would.
const QUEUED: f64 = 4.0;
/// How often the watcher samples the queue.
const SAMPLE_EVERY: Duration = Duration::from_millis(25);
/// How often a polling claimer that keeps finding full batches wakes the
/// other workers (producers no longer do).
const SHARE_EVERY: Duration = Duration::from_millis(20);

/// Runs `$query.$method(executor)` on the claimer's own connection, or on
/// the pool when it has none.
macro_rules! on_claim_conn {
    ($conn:expr, $pool:expr, $query:expr, $method:ident) => {
        match $conn.as_mut() {
            Some(c) => $query.$method(c).await,
            None => $query.$method($pool).await,
        }
    };
}

/// What the claimer does after a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Claim again at once.
    ClaimNow,
    /// Claim again after this pause (or a notification).
    Poll(Duration),
    /// Wait for a notification, as without busy polling.
    Wait,
}

#[derive(Debug)]
enum State {
    /// Waiting for notifications.
    Idle,
    /// Polling, and keeping the value `until_ms` ahead.
    Polling { until_ms: i64, renewed: Instant },
    /// Polling without renewing, until the value has run out.
    Leaving { until_ms: i64, check_at: Instant },
    /// Polling until the transactions of the snapshot taken after the value
    /// ran out have ended.
    Draining {
        xids: Vec<i64>,
        since: Instant,
        check_at: Instant,
        gap: Duration,
    },
}

/// The claimer's busy-polling state.
#[derive(Debug)]
pub(crate) struct BusyPolling {
    /// Claims per second past which polling starts (none: never).
    enter: Option<f64>,
    /// Whether polling also waits for producers queued on the NOTIFY lock
    /// (as the watcher sees them).
    queue: Option<QueueWatch>,
    window_start: Instant,
    window_rows: u64,
    /// Claims in the window, and those that came back full.
    window_claims: u32,
    window_full: u32,
    state: State,
    shared_at: Option<Instant>,
}

impl BusyPolling {
    /// Polls past `enter` claimed rows per second (if `needs_queue`, only
    /// once producers queue on the NOTIFY lock too, which a watcher task
    /// on `pool` looks for until `stop`), until the rate falls under half
    /// of it.
    pub fn new(enter: Option<u32>, needs_queue: bool, pool: &PgPool, stop: &CancellationToken) -> Self {
        let enter = enter.filter(|r| *r > 0).map(f64::from);
        let queue = (enter.is_some() && needs_queue).then(|| QueueWatch::start(pool.clone(), stop.clone()));
        Self {
            enter,
            queue,
            window_start: Instant::now(),
            window_rows: 0,
            window_claims: 0,
            window_full: 0,
            state: State::Idle,
            shared_at: None,
        }
    }

    /// Whether the claimer polls now.
    pub fn polling(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Takes the result of one claim (`rows` of `wanted`) and says what to
    /// do next. Database errors leave the state where it is safe: a claimer
    /// that cannot renew the value leaves, one that cannot check it polls on.
    pub async fn after_claim(
        &mut self,
        rows: usize,
        wanted: usize,
        conn: &mut Option<PgConnection>,
        pool: &PgPool,
    ) -> Next {
        let Some(enter) = self.enter else {
            return Next::Wait;
        };
        let now = Instant::now();
        self.window_rows += rows as u64;
        self.window_claims += 1;
        if rows > 0 && rows >= wanted {
            self.window_full += 1;
        }
        let elapsed = now.duration_since(self.window_start);
        if elapsed >= WINDOW {
            let rate = self.window_rows as f64 / elapsed.as_secs_f64();
            // Mostly full claims: a backlog, which the claimer works off
            // without waiting for anyone, so there is nothing to watch for.
            let backlog = self.window_full * 2 > self.window_claims;
            self.window_start = now;
            self.window_rows = 0;
            self.window_claims = 0;
            self.window_full = 0;
            if let Some(q) = &self.queue {
                q.watch(matches!(self.state, State::Idle) && rate >= enter && !backlog);
            }
            match self.state {
                State::Polling { until_ms, renewed } if rate < enter / 2.0 => {
                    self.state = State::Leaving {
                        until_ms,
                        check_at: renewed + Duration::from_millis(AHEAD_MS as u64 + 10),
                    };
                }
                State::Idle | State::Leaving { .. } | State::Draining { .. } if rate >= enter => {
                    // From idle, only when producers queue for the lock (a
                    // claimer that polled just now has silenced them).
                    let worth = match (&self.queue, &self.state) {
                        (Some(q), State::Idle) => q.queued() >= QUEUED,
                        _ => true,
                    };
                    if worth {
                        match renew(conn, pool).await {
                            Ok(until_ms) => {
                                if matches!(self.state, State::Idle) {
                                    tracing::debug!(rate, "producers queue on the NOTIFY lock: polling");
                                    metrics::gauge!("outhook_claimer_polling").set(1.0);
                                }
                                self.state = State::Polling { until_ms, renewed: now };
                            }
                            Err(e) => tracing::debug!(error = %e, "could not start busy polling"),
                        }
                    }
                }
                _ => {}
            }
        }
        let next = self.step(now, conn, pool).await;
        if rows > 0 && rows >= wanted && self.polling() {
            self.share(now, conn, pool).await;
        }
        match next {
            Next::Poll(_) if rows > 0 => Next::ClaimNow,
            other => other,
        }
    }

    async fn step(&mut self, now: Instant, conn: &mut Option<PgConnection>, pool: &PgPool) -> Next {
        match &mut self.state {
            State::Idle => Next::Wait,
            State::Polling { until_ms, renewed } => {
                if now.duration_since(*renewed) >= RENEW {
                    match renew(conn, pool).await {
                        Ok(v) => {
                            *until_ms = v;
                            *renewed = now;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "could not renew busy polling; leaving it");
                            self.state = State::Leaving {
                                until_ms: *until_ms,
                                check_at: *renewed + Duration::from_millis(AHEAD_MS as u64 + 10),
                            };
                        }
                    }
                }
                Next::Poll(POLL_GAP)
            }
            State::Leaving { until_ms, check_at } => {
                if now < *check_at {
                    return Next::Poll(POLL_GAP);
                }
                match run_out(conn, pool, *until_ms).await {
                    Ok(RunOut::Renewed) => {
                        // Another claimer polls: leaving is its to do.
                        self.idle();
                        Next::Wait
                    }
                    Ok(RunOut::NotYet) => {
                        *check_at = now + Duration::from_millis(10);
                        Next::Poll(POLL_GAP)
                    }
                    Ok(RunOut::Done) => match running_xids(conn, pool).await {
                        Ok(xids) if xids.is_empty() => {
                            self.idle();
                            Next::ClaimNow
                        }
                        Ok(xids) => {
                            self.state = State::Draining {
                                xids,
                                since: now,
                                check_at: now + POLL_GAP,
                                gap: POLL_GAP,
                            };
                            Next::Poll(POLL_GAP)
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "could not take the leaving snapshot");
                            Next::Poll(POLL_GAP)
                        }
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "could not read the busy-polling value");
                        *check_at = now + Duration::from_millis(10);
                        Next::Poll(POLL_GAP)
                    }
                }
            }
            State::Draining {
                xids,
                since,
                check_at,
                gap,
            } => {
                if now < *check_at {
                    return Next::Poll(*gap);
                }
                if now.duration_since(*since) >= DRAIN_LIMIT {
                    tracing::debug!(
                        transactions = xids.len(),
                        "transactions still running after busy polling; leaving them to the poll interval"
                    );
                    self.idle();
                    return Next::ClaimNow;
                }
                match any_running(conn, pool, xids).await {
                    Ok(false) => {
                        // Their rows are visible to the next claim.
                        self.idle();
                        Next::ClaimNow
                    }
                    Ok(true) | Err(_) => {
                        *gap = (*gap * 2).min(Duration::from_millis(50));
                        *check_at = now + *gap;
                        Next::Poll(*gap)
                    }
                }
            }
        }
    }

    /// A claimer that stops while polling hands its watch to the other
    /// workers: it leaves as it would when the rate falls (the value runs
    /// out, then the transactions of a snapshot taken after that end, or
    /// another claimer renewed the value), at most for `HAND_OVER_LIMIT`,
    /// and then wakes them. Their next claim sees every row a producer
    /// committed without notifying; without this, the rows of the last
    /// 200 ms would wait for their poll interval.
    pub async fn hand_over(&mut self, conn: &mut Option<PgConnection>, pool: &PgPool) {
        if let State::Polling { until_ms, renewed } = self.state {
            self.state = State::Leaving {
                until_ms,
                check_at: renewed + Duration::from_millis(AHEAD_MS as u64 + 10),
            };
        }
        if !self.polling() {
            return;
        }
        let deadline = Instant::now() + HAND_OVER_LIMIT;
        while self.polling() && Instant::now() < deadline {
            if let Next::Poll(gap) = self.step(Instant::now(), conn, pool).await {
                pause(gap).await;
            }
        }
        let sql = sqlx::query("SELECT pg_notify($1, '')").bind(crate::wakeup::CHANNEL);
        if let Err(e) = on_claim_conn!(conn, pool, sql, execute) {
            tracing::debug!(error = %e, "could not hand busy polling over");
        }
        self.idle();
    }

    fn idle(&mut self) {
        if self.polling() {
            tracing::debug!("busy polling ended");
            metrics::gauge!("outhook_claimer_polling").set(0.0);
        }
        self.state = State::Idle;
    }

    /// Full batches while polling: more may be due than this worker has
    /// room for, and producers no longer wake the other workers.
    async fn share(&mut self, now: Instant, conn: &mut Option<PgConnection>, pool: &PgPool) {
        if self.shared_at.is_some_and(|t| now.duration_since(t) < SHARE_EVERY) {
            return;
        }
        self.shared_at = Some(now);
        let sql = sqlx::query("SELECT pg_notify($1, '')").bind(crate::wakeup::CHANNEL);
        let sent = on_claim_conn!(conn, pool, sql, execute);
        if let Err(e) = sent {
            tracing::debug!(error = %e, "could not wake the other workers");
        }
    }
}

enum RunOut {
    /// Someone renewed the value after this claimer's last renewal.
    Renewed,
    /// The value still lies ahead (this claimer's clock ran fast).
    NotYet,
    Done,
}

/// Samples how many transactions wait for the lock a notifying commit
/// takes (an object lock on database 0 of `pg_database`) while asked to,
/// off the claimer's path; publishes each window's mean.
#[derive(Debug)]
struct QueueWatch {
    watching: Arc<AtomicBool>,
    /// Wakes the parked watcher when watching starts.
    asked: Arc<Notify>,
    /// The last window's mean queue, in hundredths.
    mean: Arc<AtomicU32>,
}

impl QueueWatch {
    fn start(pool: PgPool, stop: CancellationToken) -> Self {
        let watching = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(Notify::new());
        let mean = Arc::new(AtomicU32::new(0));
        tokio::spawn(watch_queue(pool, watching.clone(), asked.clone(), mean.clone(), stop));
        Self { watching, asked, mean }
    }

    fn watch(&self, on: bool) {
        if !on {
            self.mean.store(0, Ordering::Relaxed);
        }
        if !self.watching.swap(on, Ordering::Relaxed) && on {
            self.asked.notify_one();
        }
    }

    fn queued(&self) -> f64 {
        f64::from(self.mean.load(Ordering::Relaxed)) / 100.0
    }
}

async fn watch_queue(
    pool: PgPool,
    watching: Arc<AtomicBool>,
    asked: Arc<Notify>,
    mean: Arc<AtomicU32>,
    stop: CancellationToken,
) {
    let (mut sum, mut samples) = (0_i64, 0_u32);
    loop {
        if !watching.load(Ordering::Relaxed) {
            // Parked until the claimer asks (an idle worker costs nothing).
            (sum, samples) = (0, 0);
            tokio::select! {
                () = asked.notified() => {}
                () = stop.cancelled() => return,
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
            () = stop.cancelled() => return,
        }
        let waiting: sqlx::Result<i64> = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
             WHERE locktype = 'object' AND database = 0 AND classid = 'pg_database'::regclass
               AND objid = 0 AND NOT granted",
        )
        .fetch_one(&pool)
        .await;
        match waiting {
            Ok(n) => {
                sum += n;
                samples += 1;
            }
            Err(e) => tracing::debug!(error = %e, "could not read pg_locks"),
        }
        if samples >= 10 {
            let m = (sum as f64 * 100.0 / f64::from(samples)).clamp(0.0, f64::from(u32::MAX)) as u32;
            mean.store(m, Ordering::Relaxed);
            (sum, samples) = (0, 0);
        }
    }
}

async fn renew(conn: &mut Option<PgConnection>, pool: &PgPool) -> sqlx::Result<i64> {
    let sql = sqlx::query_scalar(
        "SELECT setval('outhook.claimer_polling_until',
                       (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $1)",
    )
    .bind(AHEAD_MS);
    on_claim_conn!(conn, pool, sql, fetch_one)
}

async fn run_out(conn: &mut Option<PgConnection>, pool: &PgPool, mine: i64) -> sqlx::Result<RunOut> {
    let sql = sqlx::query_as::<_, (i64, i64)>(
        "SELECT coalesce(pg_sequence_last_value('outhook.claimer_polling_until'), 0),
                (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
    );
    let (value, now) = on_claim_conn!(conn, pool, sql, fetch_one)?;
    Ok(if value <= now {
        RunOut::Done
    } else if value != mine {
        RunOut::Renewed
    } else {
        RunOut::NotYet
    })
}

/// The transactions running now: a statement of its own, so its snapshot
/// is taken after the value was seen to have run out.
async fn running_xids(conn: &mut Option<PgConnection>, pool: &PgPool) -> sqlx::Result<Vec<i64>> {
    let sql = sqlx::query_scalar(
        "SELECT coalesce(array_agg(x::text::bigint), '{}') FROM pg_snapshot_xip(pg_current_snapshot()) x",
    );
    on_claim_conn!(conn, pool, sql, fetch_one)
}

/// Sleeps `gap`. Under a millisecond, on a blocking-pool thread: tokio's
/// timer rounds up to whole milliseconds, which would add a millisecond
/// to every delivery while polling.
pub(crate) async fn pause(gap: Duration) {
    if gap < Duration::from_millis(1) {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(gap)).await;
    } else {
        tokio::time::sleep(gap).await;
    }
}

/// Whether any of `xids` is still running: their commits are visible to any
/// statement that starts after this one says no.
async fn any_running(conn: &mut Option<PgConnection>, pool: &PgPool, xids: &[i64]) -> sqlx::Result<bool> {
    let sql = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_snapshot_xip(pg_current_snapshot()) x WHERE x::text::bigint = ANY ($1))",
    )
    .bind(xids);
    on_claim_conn!(conn, pool, sql, fetch_one)
}
