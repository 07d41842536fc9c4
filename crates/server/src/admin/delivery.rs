//! Deliveries: list with filters, read with every attempt, retry, recover
//! an endpoint's dead letters, and per-endpoint stats.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use outhook_dispatcher::db::attempt::{Attempt, HourlyOutcome, attempt_list};
use outhook_dispatcher::db::delivery::{
    Delivery, DeliveryFilter, DeliveryStatus, delivery_get, delivery_list, delivery_requeue,
    delivery_requeue_dead_since,
};
use outhook_dispatcher::db::endpoint_health::endpoint_hourly_list;
use sqlx::PgPool;
use uuid::Uuid;

use super::message::parse_id_cursor;
use super::{Error, Page, Result, Scope};

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this endpoint.
    pub endpoint_id: Option<Uuid>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only events enqueued at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events enqueued before this time.
    pub until: Option<DateTime<Utc>>,
    /// The cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 250.
    pub limit: Option<i64>,
}

/// A page of deliveries in the caller's scope, newest first.
pub async fn list(pool: &PgPool, scope: &Scope, query: ListQuery) -> Result<Page<Delivery>> {
    let limit = super::page_limit(query.limit)?;
    let before_id = parse_id_cursor(query.cursor.as_deref())?;
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since >= until
    {
        // An empty window holds nothing: an empty page, as for any other
        // filter that nothing matches.
        return Ok(Page::from_overfetch(Vec::new(), limit, |d: &Delivery| d.id.to_string()));
    }
    let data = delivery_list(
        pool,
        &DeliveryFilter {
            status: query.status,
            endpoint_id: query.endpoint_id,
            event_type: query.event_type,
            message_id: None,
            owner: scope.owner().map(str::to_owned),
            since: query.since,
            until: query.until,
            before_id,
            limit: Some(limit + 1),
        },
    )
    .await?;
    Ok(Page::from_overfetch(data, limit, |d| d.id.to_string()))
}

/// One delivery in the caller's scope.
async fn visible(pool: &PgPool, scope: &Scope, id: i64) -> Result<Delivery> {
    let delivery = delivery_get(pool, id).await?;
    if scope.owner().is_some() {
        // Deliveries to a deleted endpoint are visible to admins only.
        match super::endpoint::get(pool, scope, delivery.endpoint_id).await {
            Ok(_) => {}
            Err(Error::NotFound(_)) => return Err(Error::NotFound("delivery")),
            Err(e) => return Err(e),
        }
    }
    Ok(delivery)
}

/// One delivery with every attempt, oldest first.
pub async fn get(pool: &PgPool, scope: &Scope, id: i64) -> Result<(Delivery, Vec<Attempt>)> {
    let delivery = visible(pool, scope, id).await?;
    let attempts = attempt_list(pool, id).await?;
    Ok((delivery, attempts))
}

/// Re-queues one delivery now, with a fresh retry cycle: a dead letter
/// comes back, a delivered one is sent again.
pub async fn retry(pool: &PgPool, scope: &Scope, id: i64) -> Result<Delivery> {
    visible(pool, scope, id).await?;
    delivery_requeue(pool, &[id]).await?;
    Ok(delivery_get(pool, id).await?)
}

/// Re-queues an endpoint's dead letters enqueued since `since`. Returns how
/// many.
pub async fn recover(pool: &PgPool, scope: &Scope, endpoint_id: Uuid, since: DateTime<Utc>) -> Result<u64> {
    super::endpoint::get(pool, scope, endpoint_id).await?;
    Ok(delivery_requeue_dead_since(pool, endpoint_id, since).await?)
}

/// Attempts to an endpoint by hour and outcome over the last `hours`
/// hours (1 to 168), from the workers' running counts (up to a second
/// behind the attempt log).
pub async fn stats(pool: &PgPool, scope: &Scope, endpoint_id: Uuid, hours: i64) -> Result<Vec<HourlyOutcome>> {
    if !(1..=168).contains(&hours) {
        return Err(Error::parameter("period", "1 hour to 7 days"));
    }
    super::endpoint::get(pool, scope, endpoint_id).await?;
    let since = Utc::now() - TimeDelta::hours(hours);
    Ok(endpoint_hourly_list(pool, &[endpoint_id], since)
        .await?
        .into_iter()
        .map(|(_, h)| h)
        .collect())
}
