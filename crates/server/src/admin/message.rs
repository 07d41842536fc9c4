//! Messages: enqueue (the same transaction and fan-out as the SQL path),
//! read with their deliveries, list, and replay to an endpoint.

use outhook_dispatcher::Event;
use outhook_dispatcher::db::delivery::{Delivery, DeliveryFilter, delivery_list, delivery_replay};
use outhook_dispatcher::db::endpoint::endpoint_get;
use outhook_dispatcher::db::outbox::{
    FilterHint, Inserted, Message, MessageFilter, NewMessage, outbox_delivery_count, outbox_get,
    outbox_get_by_event_id, outbox_insert_batch, outbox_list,
};
use outhook_dispatcher::filter::hint::{self, Hint};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Error, Page, Result, Scope};

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

/// Checks a message and the caller's right to send it, and makes it ready
/// to insert (with its `uid` chosen now).
pub async fn prepare(pool: &PgPool, scope: &Scope, input: Event<'_>) -> Result<NewMessage> {
    super::event_type::check_name("event_type", input.event_type)?;
    if let Some(id) = input.event_id {
        super::rules::check_name("event_id", id)?;
    }
    check_payload(input.payload)?;
    match (input.owner, input.endpoint_id) {
        (Some(_), Some(_)) => return Err(Error::parameter("owner", "give owner or endpoint_id, not both")),
        (None, None) => return Err(Error::parameter("owner", "give owner (fan-out) or endpoint_id")),
        (Some(o), None) => {
            super::rules::check_name("owner", o)?;
            if !scope.sees(o) {
                return Err(Error::parameter("owner", "this token can only send to its own owner"));
            }
        }
        (None, Some(id)) => {
            super::endpoint::get(pool, scope, id).await?;
        }
    }
    Ok(NewMessage {
        uid: Uuid::new_v4(),
        event_type: input.event_type.to_owned(),
        payload: input.payload.to_owned(),
        owner: input.owner.map(str::to_owned),
        endpoint_id: input.endpoint_id,
        event_id: input.event_id.map(str::to_owned),
        traceparent: input
            .traceparent
            .filter(|tp| outhook_dispatcher::trace_context::is_valid(tp))
            .map(str::to_owned),
        filter_hint: None,
    })
}

/// What became of a prepared message: the stored message, or for a
/// repeated `event_id` the first one (if the caller may see it).
pub async fn finish(pool: &PgPool, scope: &Scope, message: NewMessage, inserted: Inserted) -> Result<Enqueue> {
    match inserted {
        Inserted::New {
            id,
            created_at,
            deliveries,
        } => Ok(Enqueue {
            message: Message {
                id,
                uid: message.uid,
                event_id: message.event_id,
                event_type: message.event_type,
                payload: message.payload,
                owner: message.owner,
                endpoint_id: message.endpoint_id,
                created_at,
            },
            deliveries,
            duplicate: false,
        }),
        Inserted::Duplicate => {
            let event_id = message.event_id.unwrap_or_default();
            let first = outbox_get_by_event_id(pool, &event_id).await?;
            if !visible(pool, scope, &first).await? {
                return Err(Error::parameter("event_id", "already used"));
            }
            let deliveries = outbox_delivery_count(pool, first.id).await?;
            Ok(Enqueue {
                message: first,
                deliveries,
                duplicate: true,
            })
        }
    }
}

/// Enqueues one message (its own transaction), or finds the one its
/// `event_id` made before. [`Ingest`] does the same for many concurrent
/// callers, sharing commits.
pub async fn create(pool: &PgPool, scope: &Scope, input: Event<'_>) -> Result<Enqueue> {
    let message = prepare(pool, scope, input).await?;
    let inserted = outbox_insert_batch(pool, std::slice::from_ref(&message))
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the insert answered nothing".into()))?;
    finish(pool, scope, message, inserted).await
}

type Waiting = (NewMessage, oneshot::Sender<Result<Inserted>>);

/// Group commit for concurrent senders: messages queued while a batch
/// commits go into the next one, as one statement and one commit, so a
/// burst of API calls does not pay one WAL flush each. Each caller still
/// gets its own answer, in the same transaction semantics as the SQL path.
#[derive(Debug, Clone)]
pub struct Ingest {
    queue: mpsc::Sender<Waiting>,
}

impl Ingest {
    /// Starts the batching task (call inside a tokio runtime). It ends when
    /// every clone of the handle is dropped.
    pub fn start(pool: PgPool, max_batch: usize) -> Self {
        let (queue, mut waiting) = mpsc::channel::<Waiting>(max_batch * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            let mut hints = HintPaths::default();
            while waiting.recv_many(&mut batch, max_batch).await > 0 {
                let (mut messages, replies): (Vec<NewMessage>, Vec<_>) = batch.drain(..).unzip();
                hints.apply(&pool, &mut messages).await;
                match outbox_insert_batch(&pool, &messages).await {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    // One event a strict catalog, the payload limit or the
                    // filters' reading refuses must not fail the others
                    // that shared its batch: each goes alone, and
                    // only the refused ones get the refusal.
                    Err(
                        outhook_dispatcher::Error::EventRefused(_)
                        | outhook_dispatcher::Error::PayloadTooLarge(_)
                        | outhook_dispatcher::Error::PayloadUnreadable(_),
                    ) => {
                        for (message, reply) in messages.iter().zip(replies) {
                            let alone = outbox_insert_batch(&pool, std::slice::from_ref(message))
                                .await
                                .map_err(Error::from)
                                .and_then(|mut r| {
                                    r.pop()
                                        .ok_or_else(|| Error::Internal("the insert answered nothing".into()))
                                });
                            let _ = reply.send(alone);
                        }
                    }
                    Err(e) => {
                        let text = e.to_string();
                        tracing::warn!(error = %e, batch = messages.len(), "enqueueing a batch failed");
                        for reply in replies {
                            let _ = reply.send(Err(Error::Unavailable(text.clone())));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Enqueues one message through the shared batches.
    pub async fn create(&self, pool: &PgPool, scope: &Scope, input: Event<'_>) -> Result<Enqueue> {
        let message = prepare(pool, scope, input).await?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((message.clone(), reply))
            .await
            .map_err(|_| Error::Internal("the ingest task stopped".into()))?;
        let inserted = answer
            .await
            .map_err(|_| Error::Internal("the ingest task stopped".into()))??;
        finish(pool, scope, message, inserted).await
    }
}

/// An owner's hint path: as the database gave it, and its member names.
type HintPath = (String, Vec<String>);

/// The key path each owner's filters can be hinted at
/// (`outhook.filter_hint_path`), asked at most once a second per owner.
/// A path that changed since is only a hint the fan-out does not take, so
/// the worst a stale entry costs is the payload's cast, for a second.
#[derive(Default)]
struct HintPaths {
    /// Owner: when asked, and its hint path.
    owners: HashMap<String, (Instant, Option<HintPath>)>,
}

impl HintPaths {
    const FRESH: Duration = Duration::from_secs(1);
    /// Owners remembered at most; past it the map starts again.
    const MAX_OWNERS: usize = 10_000;

    /// Sets each message's hint where its owner's filters can take one.
    /// Failing to ask only leaves the hints out.
    async fn apply(&mut self, pool: &PgPool, messages: &mut [NewMessage]) {
        let now = Instant::now();
        let mut stale: Vec<&str> = messages
            .iter()
            .filter_map(|m| m.owner.as_deref())
            .filter(|o| {
                self.owners
                    .get(*o)
                    .is_none_or(|(at, _)| now.duration_since(*at) >= Self::FRESH)
            })
            .collect();
        stale.sort_unstable();
        stale.dedup();
        if !stale.is_empty() {
            let asked: std::result::Result<Vec<(String, Option<String>)>, _> =
                sqlx::query_as("SELECT o, outhook.filter_hint_path(o) FROM unnest($1::text[]) AS o")
                    .bind(&stale)
                    .fetch_all(pool)
                    .await;
            match asked {
                Ok(rows) => {
                    if self.owners.len() + rows.len() > Self::MAX_OWNERS {
                        self.owners.clear();
                    }
                    for (owner, path) in rows {
                        let path = path.and_then(|p| hint::path_keys(&p).map(|keys| (p, keys)));
                        self.owners.insert(owner, (now, path));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "asking for filter hint paths failed; sending no hints"),
            }
        }
        for m in messages.iter_mut() {
            let Some((_, Some((path, keys)))) = m.owner.as_deref().and_then(|o| self.owners.get(o)) else {
                continue;
            };
            m.filter_hint = hint::find(&m.payload, keys).map(|h| FilterHint {
                path: path.clone(),
                value: match h {
                    Hint::Nothing => None,
                    Hint::Scalar(v) => Some(v.to_owned()),
                },
            });
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
    let data = outbox_list(
        pool,
        &MessageFilter {
            owner: scope.owner().map(str::to_owned),
            event_type: query.event_type,
            before_id: parse_id_cursor(query.cursor.as_deref())?,
            limit: limit + 1,
        },
    )
    .await?;
    Ok(Page::from_overfetch(data, limit, |m| m.id.to_string()))
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
