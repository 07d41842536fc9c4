//! The claimer: takes due deliveries in batches, as many as there are free
//! delivery slots, and hands each to its own task. No transaction or row
//! lock outlives the claim statement; the lease is the only hold.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::retry::reconnect_backoff;
use tracing::Instrument;

use crate::db::completion::Completion;
use crate::db::delivery::{
    ClaimLimits, ClaimedRow, FairShare, delivery_admit, delivery_claim, delivery_claim_fair, delivery_claim_pooled,
    delivery_release_many, payload_kib,
};
use crate::deliver::{self, Context};
use crate::endpoint::{EndpointCache, Target};
use crate::polling::{BusyPolling, Next};
use crate::stages::{Stamps, now_ns};

/// How many deferred rows' slots a claimer remembers to wake for (past
/// that, the poll interval wakes it).
const MAX_RATE_WAKES: usize = 100_000;

/// What the claimer needs.
pub(crate) struct Claimer {
    pub pool: PgPool,
    pub ctx: Arc<Context>,
    pub endpoints: Arc<EndpointCache>,
    pub slots: Arc<Semaphore>,
    pub batch_size: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub wake: Arc<Notify>,
    /// When the listener last received a notification (stage stamps).
    pub last_notified: Arc<AtomicU64>,
    /// Claims wait for the WAL flush (else the claimer's connection runs
    /// with `synchronous_commit = off`).
    pub durable_claims: bool,
    /// Whether the claimer may open a connection of its own (not behind a
    /// pooler in transaction mode, where it would bypass the pool's
    /// one-transaction-per-loan rule).
    pub own_connection: bool,
    /// Claimed rows per second past which the claimer polls instead of
    /// waiting for notifications, once producers queue on the NOTIFY lock
    /// (none: never).
    pub busy_polling: Option<u32>,
    /// Busy polling starts on the rate alone, without a queue on the NOTIFY lock.
    pub busy_polling_on_rate_alone: bool,
    pub results: mpsc::Sender<Completion>,
    /// Leases held by running attempts, to give back if they are cut short.
    pub held: Arc<Mutex<HashMap<i64, i64>>>,
    /// KiB of payload the claims and attempts in flight may hold: each
    /// attempt holds its payload's permits until it ends.
    pub payload_budget: Arc<Semaphore>,
    /// Leases a row may lose before a claim hands it over unloaded.
    pub max_lease_losses: i16,
    /// The delivery slots in all (the worker's concurrency).
    pub concurrency: usize,
    /// Each endpoint's attempts in flight in this worker.
    pub in_flight: Arc<Mutex<HashMap<uuid::Uuid, usize>>>,
    /// Told when an attempt ends, for a claimer whose last claim the
    /// fairness reserve cut short.
    pub freed: Arc<Notify>,
}

/// Endpoints with pending rows a fair claim looks at, at most (from a
/// random one on, so that each gets its turn across claims).
const FAIR_ENDPOINTS_PER_CLAIM: i64 = 256;

/// The slots no single endpoint may fill, kept for the others: a
/// sixteenth of them (none below 16 slots).
fn fair_reserve(concurrency: usize) -> usize {
    concurrency / 16
}

/// An endpoint's share of the worker's slots: the slots divided among the
/// endpoints with attempts in flight and one more (the next to come due),
/// but never less than the reserve, nor less than one.
fn fair_share(concurrency: usize, active: usize) -> usize {
    (concurrency / (active + 1)).max(fair_reserve(concurrency)).max(1)
}

/// What the next claim may take, fairly: the rows (at most `want`), and
/// how to treat the endpoints over their share (`None` while none is: the
/// plain, due-ordered claim).
///
/// No endpoint holds more than the slots less the reserve: a plain claim
/// takes no more rows than the busiest endpoint could still add, and a
/// fair claim gives the over-share endpoints only the room left them. An
/// endpoint over its share gets nothing before the others' due rows.
fn fairness(in_flight: &HashMap<uuid::Uuid, usize>, concurrency: usize, want: usize) -> (usize, Option<FairShare>) {
    let share = fair_share(concurrency, in_flight.len());
    let most = concurrency.saturating_sub(fair_reserve(concurrency)).max(1);
    let mut over = Vec::new();
    let mut held = 0;
    let mut busiest = 0;
    for (endpoint, n) in in_flight {
        busiest = busiest.max(*n);
        if *n >= share {
            over.push(*endpoint);
            held += n;
        }
    }
    if over.is_empty() {
        return (want.min(most.saturating_sub(busiest)).max(1), None);
    }
    let room = most.saturating_sub(held);
    let fair = FairShare {
        over,
        per_endpoint: share.min(want).max(1) as i64,
        rest: room.min(want) as i64,
        endpoints: FAIR_ENDPOINTS_PER_CLAIM,
    };
    (want, Some(fair))
}

impl Claimer {
    /// Claims and dispatches until `stop` is cancelled; returns the running
    /// attempts for the caller to wait on.
    pub async fn run(self, stop: CancellationToken) -> JoinSet<()> {
        let mut running = JoinSet::new();
        let mut delays = reconnect_backoff(Duration::from_millis(50));
        // When rows this claimer deferred to a rate slot come due: it wakes
        // then rather than at the next poll, so a limited endpoint's
        // requests keep their spacing.
        let mut rate_wakes: BTreeSet<Instant> = BTreeSet::new();
        // (notified, woke) for the claim after a notification's wake-up.
        let mut woken = (0, 0);
        let mut claim_conn: Option<PgConnection> = None;
        let mut conn_tried: Option<Instant> = None;
        let mut busy = BusyPolling::new(self.busy_polling, !self.busy_polling_on_rate_alone, &self.pool, &stop);
        while !stop.is_cancelled() {
            // Reap finished attempts so the set stays small.
            while running.try_join_next().is_some() {}
            // Wait for at least one free slot.
            let first = tokio::select! {
                permit = self.slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = stop.cancelled() => break,
            };
            // Room for the largest payload allowed and for one response,
            // so the claim can take at least one row; attempts ending and
            // results written free it.
            let Some((kib, responses)) = self.room(&stop).await else {
                break;
            };
            let want = (self.slots.available_permits() + 1).min(self.batch_size).min(responses);
            // An endpoint over its share of the slots: the others' due
            // rows first, and its own only into the room left.
            let (want, fair) = match self.in_flight.lock() {
                Ok(in_flight) => fairness(&in_flight, self.concurrency, want),
                Err(_) => (want, None),
            };
            let limits = ClaimLimits {
                rows: want as i64,
                kib,
                max_payload_bytes: i64::try_from(self.ctx.http.max_request_bytes).unwrap_or(i64::MAX),
                max_lease_losses: self.max_lease_losses,
            };
            // The reserve left the over-share endpoints less than a full
            // claim: an attempt that ends makes room.
            let capped = fair.as_ref().is_some_and(|f| (f.rest as usize) < want);
            let claim_sent = now_ns();
            let (notified, woke) = std::mem::take(&mut woken);
            if self.own_connection
                && claim_conn.is_none()
                && conn_tried.is_none_or(|t| t.elapsed() > Duration::from_secs(10))
            {
                // (Re)connect at most every few seconds: a server that
                // refuses it (PgBouncer) is not asked on every claim.
                conn_tried = Some(Instant::now());
                claim_conn = self.claim_connection().await;
            }
            let claimed = match (claim_conn.as_mut(), &fair) {
                (Some(conn), None) => delivery_claim(&mut *conn, limits, self.lease).await,
                (Some(conn), Some(fair)) => delivery_claim_fair(&mut *conn, limits, fair, self.lease).await,
                (None, fair) => delivery_claim_pooled(&self.pool, limits, fair.as_ref(), self.lease).await,
            };
            if claimed.is_err() {
                // Reconnect next time (the connection may be what failed).
                claim_conn = None;
            }
            let rows = match claimed {
                Ok(mut rows) => {
                    let claimed = now_ns();
                    for r in &mut rows {
                        r.stamps = Stamps {
                            notified,
                            woke,
                            claim_sent,
                            claimed,
                            ..Stamps::default()
                        };
                    }
                    delays = reconnect_backoff(Duration::from_millis(50));
                    if !rows.is_empty() {
                        metrics::histogram!("outhook_claim_batch_size").record(rows.len() as f64);
                    }
                    rows
                }
                Err(e) => {
                    metrics::counter!("outhook_database_errors_total", "operation" => "claim").increment(1);
                    drop(first);
                    let pause = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in = ?pause, "claim failed");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => {}
                    }
                    continue;
                }
            };
            // A claim the payload budget may have cut short (what is left
            // would not hold the largest payload) is not a drained queue:
            // the next claim waits for room first.
            let room_left = kib - rows.iter().map(loaded_kib).sum::<i64>();
            let drained = rows.len() < want && room_left >= self.largest_payload_kib();
            let claimed_rows = rows.len();
            if rows.is_empty() {
                drop(first);
            } else {
                let ids: Vec<_> = rows.iter().map(|r| r.endpoint_id).collect();
                let targets = match self.endpoints.get_many(&self.pool, &ids).await {
                    Ok(t) => t,
                    Err(e) => {
                        metrics::counter!("outhook_database_errors_total", "operation" => "endpoints").increment(1);
                        // Give the rows back rather than sit on them until the lease ends.
                        let held: Vec<(i64, i64)> = rows.iter().map(|r| (r.id, r.lease)).collect();
                        let _ = delivery_release_many(&self.pool, &held).await;
                        drop(first);
                        let pause = delays.next().unwrap_or(Duration::from_secs(5));
                        tracing::warn!(error = %e, retry_in = ?pause, "reading endpoints failed");
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = stop.cancelled() => {}
                        }
                        continue;
                    }
                };
                // Rows of limited endpoints pass the admission; the others
                // go first, so the admission's round trip never delays them.
                let (limited, free): (Vec<ClaimedRow>, Vec<ClaimedRow>) =
                    rows.into_iter().partition(|r| is_limited(&targets, r));
                let mut first = Some(first);
                self.spawn_attempts(free, &targets, &mut first, &mut running).await;
                if !limited.is_empty() {
                    let (admitted, failed) = self.admit(limited, &mut rate_wakes).await;
                    self.spawn_attempts(admitted, &targets, &mut first, &mut running).await;
                    if failed {
                        // Not straight back to claiming the same rows.
                        drop(first);
                        let pause = delays.next().unwrap_or(Duration::from_secs(5));
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = stop.cancelled() => {}
                        }
                    }
                }
            }
            match busy.after_claim(claimed_rows, want, &mut claim_conn, &self.pool).await {
                Next::ClaimNow => {}
                Next::Poll(gap) if drained => {
                    tokio::select! {
                        () = self.wake.notified() => {
                            woken = (self.last_notified.load(Ordering::Relaxed), now_ns());
                        }
                        () = crate::polling::pause(gap) => {}
                        () = stop.cancelled() => {}
                    }
                }
                Next::Poll(_) => {}
                Next::Wait if drained => {
                    self.wait(&mut rate_wakes, &mut woken, capped, &stop).await;
                }
                Next::Wait => {}
            }
        }
        busy.hand_over(&mut claim_conn, &self.pool).await;
        running
    }

    /// Waits until the payload budget has room for the largest payload
    /// allowed and the response budget for one response; returns the
    /// payload KiB free and how many responses fit (`None`: stopping).
    async fn room(&self, stop: &CancellationToken) -> Option<(i64, usize)> {
        let need = u32::try_from(self.largest_payload_kib()).unwrap_or(u32::MAX);
        let unit = self.ctx.response_kib();
        for (budget, need) in [(&self.ctx.response_budget, unit), (&self.payload_budget, need)] {
            if budget.available_permits() < need as usize {
                tokio::select! {
                    permits = budget.acquire_many(need) => drop(permits.ok()?),
                    () = stop.cancelled() => return None,
                }
            }
        }
        let responses = self
            .ctx
            .response_budget
            .available_permits()
            .checked_div(unit as usize)
            .unwrap_or(usize::MAX)
            .max(1);
        Some((
            i64::try_from(self.payload_budget.available_permits()).unwrap_or(i64::MAX),
            responses,
        ))
    }

    /// The KiB of the largest payload a claim loads.
    fn largest_payload_kib(&self) -> i64 {
        payload_kib(i64::try_from(self.ctx.http.max_request_bytes).unwrap_or(i64::MAX))
    }

    /// Nothing more is due: sleeps until a notification, a deferred row's
    /// slot or the poll interval (or, when the fairness reserve cut the
    /// last claim short, until an attempt ends).
    async fn wait(
        &self,
        rate_wakes: &mut BTreeSet<Instant>,
        woken: &mut (u64, u64),
        capped: bool,
        stop: &CancellationToken,
    ) {
        let now = Instant::now();
        while rate_wakes.first().is_some_and(|w| *w <= now) {
            rate_wakes.pop_first();
        }
        let wake_at = rate_wakes.first().copied().unwrap_or(now + self.poll_interval);
        tokio::select! {
            () = self.wake.notified() => {
                *woken = (self.last_notified.load(Ordering::Relaxed), now_ns());
            }
            () = tokio::time::sleep(self.poll_interval) => {}
            () = tokio::time::sleep_until(wake_at) => {}
            () = self.freed.notified(), if capped => {}
            () = stop.cancelled() => {}
        }
    }

    /// A connection of the claimer's own (`claim_connect_options`), or
    /// `None` (claims then use the pool) if it cannot be had, as behind
    /// PgBouncer, which refuses startup options.
    async fn claim_connection(&self) -> Option<PgConnection> {
        let options = claim_connect_options(&self.pool, self.durable_claims);
        match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => Some(conn),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "no claim connection of its own; claiming through the pool");
                None
            }
            Err(_) => {
                tracing::debug!("claim connection timed out; claiming through the pool");
                None
            }
        }
    }

    /// Starts an attempt for each row, each holding a delivery slot (the
    /// claim took no more rows than there were free slots; `first` is the
    /// one already held).
    async fn spawn_attempts(
        &self,
        rows: Vec<ClaimedRow>,
        targets: &HashMap<uuid::Uuid, Option<Arc<Target>>>,
        first: &mut Option<OwnedSemaphorePermit>,
        running: &mut JoinSet<()>,
    ) {
        for row in rows {
            let permit = match first.take() {
                Some(p) => p,
                None => match take(&self.slots, 1).await {
                    Some(p) => p,
                    None => break,
                },
            };
            // The claim kept the payloads and responses within what was
            // free, and only this task takes permits: these do not wait.
            let weight = u32::try_from(loaded_kib(&row)).unwrap_or(u32::MAX);
            let (Some(payload_permit), Some(room)) = (
                take(&self.payload_budget, weight).await,
                take(&self.ctx.response_budget, self.ctx.response_kib()).await,
            ) else {
                break;
            };
            let target = targets.get(&row.endpoint_id).cloned().flatten();
            let counted = Counted::new(&self.in_flight, row.endpoint_id, &self.freed);
            let ctx = self.ctx.clone();
            let results = self.results.clone();
            let held = self.held.clone();
            if let Ok(mut h) = held.lock() {
                h.insert(row.id, row.lease);
            }
            let span = tracing::info_span!("delivery", delivery_id = row.id, message_id = %format_args!("msg_{}", row.message_uid.simple()), endpoint_id = %row.endpoint_id, event_type = %row.event_type, attempt = row.attempts);
            if let Some(tp) = &row.traceparent {
                crate::trace_context::set_parent(&span, tp);
            }
            // The claim served many deliveries at once: each delivery's
            // trace gets a marker of it, with the statement's time.
            drop(
                tracing::debug_span!(parent: &span, "claim", claim_ms = row.stamps.claimed.saturating_sub(row.stamps.claim_sent) as f64 / 1e6),
            );
            metrics::gauge!("outhook_attempts_in_flight").increment(1.0);
            running.spawn(
                async move {
                    let id = row.id;
                    let completion = deliver::attempt(&ctx, row, target.as_ref(), room).await;
                    // The payload and the request body are gone now.
                    drop(payload_permit);
                    tracing::debug!(outcome = completion.attempt.outcome, status = ?completion.attempt.status_code, "attempt finished");
                    // Past this point the completer owns the result.
                    if results.send(completion).await.is_ok()
                        && let Ok(mut h) = held.lock()
                    {
                        h.remove(&id);
                    }
                    drop(permit);
                    drop(counted);
                    metrics::gauge!("outhook_attempts_in_flight").decrement(1.0);
                }
                .instrument(span),
            );
        }
    }

    /// Passes claimed rows of limited endpoints through the admission;
    /// returns the rows to attempt now. Deferred rows' slots go into
    /// `rate_wakes`. If the admission fails, the rows are given back to be
    /// claimed again (and the flag says so).
    async fn admit(&self, rows: Vec<ClaimedRow>, rate_wakes: &mut BTreeSet<Instant>) -> (Vec<ClaimedRow>, bool) {
        let limited: Vec<(i64, i64)> = rows.iter().map(|r| (r.id, r.lease)).collect();
        match delivery_admit(&self.pool, &limited).await {
            Ok(answer) => {
                let now = Instant::now();
                let mut admitted = HashSet::with_capacity(answer.len());
                for (id, due_in) in answer {
                    match due_in {
                        None => {
                            admitted.insert(id);
                        }
                        Some(secs) if rate_wakes.len() < MAX_RATE_WAKES => {
                            rate_wakes.insert(now + Duration::from_secs_f64(secs.clamp(0.0, 86_400.0)));
                        }
                        Some(_) => {}
                    }
                }
                let deferred = limited.len().saturating_sub(admitted.len());
                if deferred > 0 {
                    metrics::counter!("outhook_deliveries_deferred_total").increment(deferred as u64);
                }
                (rows.into_iter().filter(|r| admitted.contains(&r.id)).collect(), false)
            }
            Err(e) => {
                metrics::counter!("outhook_database_errors_total", "operation" => "admit").increment(1);
                tracing::warn!(error = %e, rows = limited.len(), "admitting rows of limited endpoints failed; giving them back");
                let _ = delivery_release_many(&self.pool, &limited).await;
                (Vec::new(), true)
            }
        }
    }
}

/// An attempt counted in its endpoint's attempts in flight (see
/// [`fairness`]) until it is dropped, however its task ends; then the
/// claimer is told a slot is free.
struct Counted {
    in_flight: Arc<Mutex<HashMap<uuid::Uuid, usize>>>,
    endpoint: uuid::Uuid,
    freed: Arc<Notify>,
}

impl Counted {
    fn new(in_flight: &Arc<Mutex<HashMap<uuid::Uuid, usize>>>, endpoint: uuid::Uuid, freed: &Arc<Notify>) -> Self {
        if let Ok(mut f) = in_flight.lock() {
            *f.entry(endpoint).or_insert(0) += 1;
        }
        Self {
            in_flight: in_flight.clone(),
            endpoint,
            freed: freed.clone(),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Ok(mut f) = self.in_flight.lock()
            && let Some(n) = f.get_mut(&self.endpoint)
        {
            *n -= 1;
            if *n == 0 {
                f.remove(&self.endpoint);
            }
        }
        self.freed.notify_one();
    }
}

/// `n` permits of `budget`, at once if they are free (`None`: closed).
async fn take(budget: &Arc<Semaphore>, n: u32) -> Option<OwnedSemaphorePermit> {
    match budget.clone().try_acquire_many_owned(n) {
        Ok(p) => Some(p),
        Err(_) => budget.clone().acquire_many_owned(n).await.ok(),
    }
}

/// The KiB a claimed row's payload weighs against the payload budget (an
/// unloaded payload weighs nothing).
fn loaded_kib(row: &ClaimedRow) -> i64 {
    if row.payload.is_some() {
        payload_kib(row.payload_bytes)
    } else {
        0
    }
}

/// Whether a row's endpoint has a limit its rows must be admitted under
/// (a disabled endpoint's rows go straight to being held).
fn is_limited(targets: &HashMap<uuid::Uuid, Option<Arc<Target>>>, row: &ClaimedRow) -> bool {
    targets
        .get(&row.endpoint_id)
        .and_then(|t| t.as_ref())
        .is_some_and(|t| t.limited && t.enabled)
}

/// The claimer's own connection. Unless `durable`, its commits do not wait
/// for the WAL flush (a claim a crash forgets only makes the row due
/// again). Its plans never use bitmap scans: with statistics from a nearly
/// empty queue (the start of a burst) the planner would otherwise read
/// every due row through a bitmap and sort them for each claim, instead of
/// walking the claim index in order up to the limit (30 ms a claim with
/// 100,000 due, seen in the `burst` bench). The connection runs nothing but
/// claims and the busy-polling statements. A server that refuses startup
/// options (PgBouncer) leaves the claimer on the pool, where each claim
/// runs in a transaction that turns bitmap scans off
/// (`delivery_claim_pooled`).
pub(crate) fn claim_connect_options(pool: &PgPool, durable: bool) -> sqlx::postgres::PgConnectOptions {
    let options = (*pool.connect_options())
        .clone()
        .options([("enable_bitmapscan", "off")])
        .application_name("outhook claimer");
    if durable {
        options
    } else {
        options.options([("synchronous_commit", "off")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn flights(counts: &[usize]) -> (HashMap<Uuid, usize>, Vec<Uuid>) {
        let ids: Vec<Uuid> = counts.iter().map(|_| Uuid::new_v4()).collect();
        (ids.iter().copied().zip(counts.iter().copied()).collect(), ids)
    }

    #[test]
    fn no_endpoint_over_its_share_means_the_plain_claim_within_what_the_busiest_may_add() {
        // 256 slots, a reserve of 16: one endpoint holds 100, under its
        // share of 128; a claim may add at most 140 more.
        let (f, _) = flights(&[100]);
        let (rows, fair) = fairness(&f, 256, 256);
        assert!(fair.is_none());
        assert_eq!(rows, 140);
        assert_eq!(fairness(&f, 256, 20).0, 20);
        // Nobody in flight: up to all but the reserve.
        assert_eq!(fairness(&HashMap::new(), 256, 256), (240, None));
        // Many endpoints with a few each: their share never falls below
        // the reserve, so none is over it.
        let (f, _) = flights(&[3; 200]);
        assert!(fairness(&f, 256, 50).1.is_none());
    }

    #[test]
    fn an_endpoint_over_its_share_gets_only_the_room_left_after_the_reserve() {
        let (f, ids) = flights(&[200, 2]);
        let (rows, fair) = fairness(&f, 256, 57);
        let fair = fair.unwrap();
        assert_eq!(rows, 57);
        assert_eq!(fair.over, vec![ids[0]]);
        // 256 - 16 reserved - 200 held.
        assert_eq!(fair.rest, 40);
        // Share: 256 / (2 + 1).
        assert_eq!(fair.per_endpoint, 57);
        let (f, _) = flights(&[240]);
        assert_eq!(fairness(&f, 256, 17).1.unwrap().rest, 0, "no room past the reserve");
    }

    #[test]
    fn small_workers_keep_no_reserve_but_still_serve_others_first() {
        // 8 slots: no reserve; one endpoint may fill them all, and once
        // over its share its rows come after the others'.
        assert_eq!(fairness(&HashMap::new(), 8, 8), (8, None));
        let (f, _) = flights(&[5]);
        let (_, fair) = fairness(&f, 8, 4);
        assert_eq!(fair.unwrap().rest, 3);
        // One slot: one endpoint at a time, and it is over its share.
        let (f, _) = flights(&[1]);
        assert!(fairness(&f, 1, 1).1.is_some());
        assert_eq!(fairness(&HashMap::new(), 1, 1), (1, None));
    }
}
