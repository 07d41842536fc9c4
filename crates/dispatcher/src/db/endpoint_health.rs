//! `outhook.endpoint_health`: each endpoint's last success, last failure
//! and failure streak, as the workers saw them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// An endpoint's health.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct EndpointHealth {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// When it was last attempted.
    pub last_attempt_at: DateTime<Utc>,
    /// When it last answered 2xx, if ever.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When an attempt last failed, if ever.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Failed attempts since the last success.
    pub failure_streak: i32,
    /// The first failure after the last success: when the failing began.
    pub failing_since: Option<DateTime<Utc>>,
}

/// What some attempts to one endpoint add to its health. Merged in the
/// order the attempts were made: a success resets the streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HealthDelta {
    pub last_attempt_at: DateTime<Utc>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Failures after the last success in this delta (or all of them).
    pub streak: i32,
    /// The first of those failures.
    pub failing_since: Option<DateTime<Utc>>,
}

impl HealthDelta {
    /// One attempt.
    pub fn attempt(at: DateTime<Utc>, success: bool) -> Self {
        Self {
            last_attempt_at: at,
            last_success_at: success.then_some(at),
            last_failure_at: (!success).then_some(at),
            streak: i32::from(!success),
            failing_since: (!success).then_some(at),
        }
    }

    /// `self`, then `later`.
    pub fn then(self, later: Self) -> Self {
        Self {
            last_attempt_at: self.last_attempt_at.max(later.last_attempt_at),
            last_success_at: self.last_success_at.max(later.last_success_at),
            last_failure_at: self.last_failure_at.max(later.last_failure_at),
            streak: if later.last_success_at.is_some() {
                later.streak
            } else {
                self.streak.saturating_add(later.streak)
            },
            failing_since: if later.last_success_at.is_some() {
                later.failing_since
            } else {
                self.failing_since.or(later.failing_since)
            },
        }
    }
}

/// Adds `later` to what `deltas` holds for `endpoint`.
pub(crate) fn merge(deltas: &mut HashMap<Uuid, HealthDelta>, endpoint: Uuid, later: HealthDelta) {
    deltas
        .entry(endpoint)
        .and_modify(|d| *d = d.then(later))
        .or_insert(later);
}

/// Attempt counts keyed by endpoint, hour (Unix seconds of its start) and
/// outcome.
pub(crate) type HourlyCounts = HashMap<(Uuid, i64, &'static str), i64>;

/// The start of the hour of `at`, in Unix seconds.
pub(crate) fn hour_of(at: DateTime<Utc>) -> i64 {
    let t = at.timestamp();
    t - t.rem_euclid(3600)
}

/// Adds deltas to the stored health and hourly counts in one transaction:
/// a delta with a success replaces the streak, one without adds to it.
/// Written without waiting for the WAL flush, so the rows' locks are held
/// only briefly.
pub(crate) async fn endpoint_health_add(
    pool: &PgPool,
    deltas: &HashMap<Uuid, HealthDelta>,
    hourly: &HourlyCounts,
) -> Result<()> {
    let mut rows: Vec<(&Uuid, &HealthDelta)> = deltas.iter().collect();
    // One lock order for every worker, so two flushes cannot deadlock.
    rows.sort_by_key(|(id, _)| **id);
    let ids: Vec<Uuid> = rows.iter().map(|(id, _)| **id).collect();
    let attempted: Vec<DateTime<Utc>> = rows.iter().map(|(_, d)| d.last_attempt_at).collect();
    let succeeded: Vec<Option<DateTime<Utc>>> = rows.iter().map(|(_, d)| d.last_success_at).collect();
    let failed: Vec<Option<DateTime<Utc>>> = rows.iter().map(|(_, d)| d.last_failure_at).collect();
    let streaks: Vec<i32> = rows.iter().map(|(_, d)| d.streak).collect();
    let since: Vec<Option<DateTime<Utc>>> = rows.iter().map(|(_, d)| d.failing_since).collect();
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO outhook.endpoint_health AS h
             (endpoint_id, last_attempt_at, last_success_at, last_failure_at, failure_streak, failing_since)
         SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::int[],
                              $6::timestamptz[])
         ON CONFLICT (endpoint_id) DO UPDATE SET
             last_attempt_at = greatest(h.last_attempt_at, excluded.last_attempt_at),
             last_success_at = greatest(h.last_success_at, excluded.last_success_at),
             last_failure_at = greatest(h.last_failure_at, excluded.last_failure_at),
             failure_streak = CASE WHEN excluded.last_success_at IS NOT NULL THEN excluded.failure_streak
                                   ELSE h.failure_streak + excluded.failure_streak END,
             failing_since = CASE WHEN excluded.last_success_at IS NOT NULL THEN excluded.failing_since
                                  ELSE coalesce(h.failing_since, excluded.failing_since) END",
    )
    .bind(ids)
    .bind(attempted)
    .bind(succeeded)
    .bind(failed)
    .bind(streaks)
    .bind(since)
    .execute(&mut *tx)
    .await?;
    let mut counts: Vec<(&(Uuid, i64, &str), &i64)> = hourly.iter().collect();
    counts.sort();
    let ids: Vec<Uuid> = counts.iter().map(|((id, _, _), _)| *id).collect();
    let hours: Vec<DateTime<Utc>> = counts
        .iter()
        .map(|((_, h, _), _)| DateTime::from_timestamp(*h, 0).unwrap_or_default())
        .collect();
    let outcomes: Vec<&str> = counts.iter().map(|((_, _, o), _)| *o).collect();
    let n: Vec<i64> = counts.iter().map(|(_, n)| **n).collect();
    sqlx::query(
        "INSERT INTO outhook.endpoint_hourly AS c (endpoint_id, hour, outcome, count)
         SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::bigint[])
         ON CONFLICT (endpoint_id, hour, outcome) DO UPDATE SET count = c.count + excluded.count",
    )
    .bind(ids)
    .bind(hours)
    .bind(outcomes)
    .bind(n)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The health of these endpoints (those never attempted are absent).
pub async fn endpoint_health_list(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<EndpointHealth>> {
    Ok(sqlx::query_as(
        "SELECT endpoint_id, last_attempt_at, last_success_at, last_failure_at, failure_streak, failing_since
         FROM outhook.endpoint_health WHERE endpoint_id = ANY ($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// Disables every enabled endpoint that has failed without a success for
/// longer than its window (its own `auto_disable_after_secs`, else
/// `default_window`; 0 or a zero default: never), records why and when,
/// and holds its deliveries. Returns the endpoints disabled.
pub(crate) async fn endpoint_health_disable_failing(
    pool: &PgPool,
    default_window: std::time::Duration,
) -> Result<Vec<Uuid>> {
    let mut tx = pool.begin().await?;
    let failing: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT e.id, format('no successful delivery for %s: %s failed attempts in a row since %s',
                             justify_interval(make_interval(secs => coalesce(e.auto_disable_after_secs, $1))),
                             h.failure_streak, to_char(h.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS UTC'))
         FROM outhook.endpoint e JOIN outhook.endpoint_health h ON h.endpoint_id = e.id
         WHERE e.enabled AND h.failure_streak > 0 AND h.failing_since IS NOT NULL
           AND coalesce(e.auto_disable_after_secs, $1) > 0
           AND greatest(h.failing_since, e.enabled_at) < now() - make_interval(secs => coalesce(e.auto_disable_after_secs, $1))
         FOR UPDATE OF e SKIP LOCKED",
    )
    .bind(i32::try_from(default_window.as_secs()).unwrap_or(i32::MAX))
    .fetch_all(&mut *tx)
    .await?;
    let mut disabled = Vec::new();
    for (id, reason) in failing {
        disabled.extend(crate::db::endpoint::endpoint_disable_many(&mut tx, &[id], &reason).await?);
    }
    tx.commit().await?;
    Ok(disabled)
}

/// Attempts to `endpoints` since `since`, counted by hour and outcome,
/// oldest hour first (from the workers' running counts, up to a second
/// behind the attempt log).
pub async fn endpoint_hourly_list(
    pool: &PgPool,
    endpoints: &[Uuid],
    since: DateTime<Utc>,
) -> Result<Vec<(Uuid, crate::db::attempt::HourlyOutcome)>> {
    let rows: Vec<(Uuid, DateTime<Utc>, String, i64)> = sqlx::query_as(
        "SELECT endpoint_id, hour, outcome, count FROM outhook.endpoint_hourly
         WHERE endpoint_id = ANY ($1) AND hour >= date_trunc('hour', $2::timestamptz)
         ORDER BY hour, outcome",
    )
    .bind(endpoints)
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, hour, outcome, count)| (id, crate::db::attempt::HourlyOutcome { hour, outcome, count }))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().unwrap_or_default()
    }

    #[test]
    fn a_success_resets_the_streak_and_failures_after_it_count_again() {
        let d = HealthDelta::attempt(at(1), false)
            .then(HealthDelta::attempt(at(2), false))
            .then(HealthDelta::attempt(at(3), true))
            .then(HealthDelta::attempt(at(4), false));
        assert_eq!(d.streak, 1);
        assert_eq!(d.last_success_at, Some(at(3)));
        assert_eq!(d.last_failure_at, Some(at(4)));
        assert_eq!(d.last_attempt_at, at(4));
        assert_eq!(d.failing_since, Some(at(4)));
    }

    #[test]
    fn failures_without_a_success_add_up() {
        let d = HealthDelta::attempt(at(1), false).then(HealthDelta::attempt(at(2), false));
        assert_eq!((d.streak, d.last_success_at), (2, None));
        assert_eq!(d.failing_since, Some(at(1)), "the window starts at the first failure");
    }
}
