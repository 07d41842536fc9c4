//! Messages: enqueue (the same transaction and fan-out as the SQL path),
//! read with their deliveries, list, and replay to an endpoint.

use outhook_dispatcher::db::delivery::{Delivery, DeliveryFilter, delivery_list, delivery_replay};
use outhook_dispatcher::db::endpoint::endpoint_get;
use outhook_dispatcher::db::outbox::{
    Message, MessageFilter, outbox_delivery_count, outbox_get, outbox_get_by_event_id, outbox_list,
};
use outhook_dispatcher::{Enqueued, Event, enqueue};
use sqlx::PgPool;
use uuid::Uuid;

use super::endpoint::Page;
use super::{Error, Result, Scope};

/// A message to enqueue.
#[derive(Debug, Clone, Copy)]
pub struct MessageInput<'a> {
    /// The event type.
    pub event_type: &'a str,
    /// The JSON payload, byte for byte as it will be sent (re-serialising
    /// schemes excepted).
    pub payload: &'a str,
    /// Fan out to this owner's subscribed endpoints ...
    pub owner: Option<&'a str>,
    /// ... or send to this one endpoint.
    pub endpoint_id: Option<Uuid>,
    /// An idempotency key: enqueueing it again returns the first message.
    pub event_id: Option<&'a str>,
}

/// What enqueueing did.
#[derive(Debug, Clone)]
pub struct Enqueue {
    /// The message (the first one, for a repeated `event_id`).
    pub message: Message,
    /// How many deliveries it fanned out to.
    pub deliveries: i64,
    /// Whether `event_id` had been enqueued before, so nothing was added.
    pub duplicate: bool,
}

/// Whether `scope` sees `message`.
async fn visible(pool: &PgPool, scope: &Scope, message: &Message) -> Result<bool> {
    let Some(owner) = scope.owner() else {
        return Ok(true);
    };
    if message.owner.as_deref() == Some(owner) {
        return Ok(true);
    }
    match message.endpoint_id {
        Some(id) => match endpoint_get(pool, id).await {
            Ok(e) => Ok(e.owner == owner),
            Err(outhook_dispatcher::Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        },
        None => Ok(false),
    }
}

/// Checks a payload: JSON (what PostgreSQL's `json` column would refuse is
/// refused here first, with a position) and an object or array.
pub fn check_payload(payload: &str) -> Result<()> {
    outhook_signer::json::validate(payload.as_bytes()).map_err(|e| Error::Payload(format!("payload: {e}")))?;
    match payload.trim_start().as_bytes().first() {
        Some(b'{' | b'[') => Ok(()),
        _ => Err(Error::Payload("payload must be a JSON object or array".into())),
    }
}

/// Enqueues a message, or finds the one its `event_id` made before.
pub async fn create(pool: &PgPool, scope: &Scope, input: MessageInput<'_>) -> Result<Enqueue> {
    if input.event_type.trim().is_empty() || input.event_type.len() > 256 {
        return Err(Error::parameter("event_type", "1 to 256 characters"));
    }
    if input.event_id.is_some_and(|id| id.is_empty() || id.len() > 256) {
        return Err(Error::parameter("event_id", "1 to 256 characters"));
    }
    check_payload(input.payload)?;
    let owner = match (input.owner, input.endpoint_id) {
        (Some(_), Some(_)) => return Err(Error::parameter("owner", "give owner or endpoint_id, not both")),
        (None, None) => return Err(Error::parameter("owner", "give owner (fan-out) or endpoint_id")),
        (Some(o), None) => {
            if !scope.sees(o) {
                return Err(Error::parameter("owner", "this token can only send to its own owner"));
            }
            Some(o)
        }
        (None, Some(id)) => {
            super::endpoint::get(pool, scope, id).await?;
            None
        }
    };
    let event = Event {
        event_type: input.event_type,
        payload: input.payload,
        owner,
        endpoint_id: input.endpoint_id,
        event_id: input.event_id,
    };
    match enqueue(pool, &event).await? {
        Enqueued::New(id) => {
            let message = outbox_get(pool, id).await?;
            let deliveries = outbox_delivery_count(pool, id).await?;
            Ok(Enqueue {
                message,
                deliveries,
                duplicate: false,
            })
        }
        Enqueued::Duplicate => {
            let event_id = input.event_id.unwrap_or_default();
            let message = outbox_get_by_event_id(pool, event_id).await?;
            if !visible(pool, scope, &message).await? {
                return Err(Error::parameter("event_id", "already used"));
            }
            let deliveries = outbox_delivery_count(pool, message.id).await?;
            Ok(Enqueue {
                message,
                deliveries,
                duplicate: true,
            })
        }
    }
}

/// One message and its deliveries.
pub async fn get(pool: &PgPool, scope: &Scope, id: i64) -> Result<(Message, Vec<Delivery>)> {
    let message = outbox_get(pool, id).await?;
    if !visible(pool, scope, &message).await? {
        return Err(Error::NotFound("message"));
    }
    let deliveries = delivery_list(
        pool,
        &DeliveryFilter {
            message_id: Some(id),
            owner: scope.owner().map(str::to_owned),
            limit: Some(1000),
            ..DeliveryFilter::default()
        },
    )
    .await?;
    Ok((message, deliveries))
}

/// Which messages to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this event type.
    pub event_type: Option<String>,
    /// The cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 250.
    pub limit: Option<i64>,
}

/// Parses an id cursor (the last id of the previous page).
pub(crate) fn parse_id_cursor(cursor: Option<&str>) -> Result<Option<i64>> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| Error::parameter("cursor", "not a cursor this API returned"))
        })
        .transpose()
}

/// A page of messages in the caller's scope, newest first.
pub async fn list(pool: &PgPool, scope: &Scope, query: ListQuery) -> Result<Page<Message>> {
    let limit = super::page_limit(query.limit)?;
    let mut data = outbox_list(
        pool,
        &MessageFilter {
            owner: scope.owner().map(str::to_owned),
            event_type: query.event_type,
            before_id: parse_id_cursor(query.cursor.as_deref())?,
            limit: limit + 1,
        },
    )
    .await?;
    let next_cursor = if data.len() as i64 > limit {
        data.truncate(limit as usize);
        data.last().map(|m| m.id.to_string())
    } else {
        None
    };
    Ok(Page { data, next_cursor })
}

/// Sends a message to an endpoint again (both in the caller's scope),
/// with a fresh retry cycle. Returns the delivery's id.
pub async fn replay(pool: &PgPool, scope: &Scope, id: i64, endpoint_id: Uuid) -> Result<i64> {
    let message = outbox_get(pool, id).await?;
    if !visible(pool, scope, &message).await? {
        return Err(Error::NotFound("message"));
    }
    super::endpoint::get(pool, scope, endpoint_id).await?;
    Ok(delivery_replay(pool, id, endpoint_id).await?)
}
