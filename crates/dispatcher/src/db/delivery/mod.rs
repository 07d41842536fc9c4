//! `outhook.delivery`: the queue, one file per operation. A reader looking
//! for "where is a delivery claimed?" opens `claim.rs`; completion, which
//! writes to the log, the endpoints' health and the endpoints as well, has
//! its own module beside this one (`db::completion`).
//!
//! Layering: `completion` uses `endpoint_health`, `endpoint` and this
//! module; `endpoint` uses this module; this module uses only `attempt`.

mod admit;
mod claim;
mod depth;
mod hold;
mod list;
mod prune;
mod requeue;
#[cfg(test)]
mod tests;

pub(crate) use admit::{delivery_admit, delivery_limits_changed};
pub(crate) use claim::{
    ClaimLimits, ClaimedRow, FairShare, delivery_claim, delivery_claim_fair, delivery_claim_pooled,
    delivery_release_many, payload_kib,
};
pub use depth::{QueueDepth, delivery_queue_depth};
pub(crate) use hold::{delivery_held_sweep, delivery_hold, delivery_resume_held};
pub use list::{Delivery, DeliveryFilter, delivery_count_by_status, delivery_get, delivery_list};
pub use prune::{Pruned, delivery_prune, delivery_prune_paced};
pub(crate) use requeue::FIFO_LOCK;
pub use requeue::{delivery_replay, delivery_requeue, delivery_requeue_dead, delivery_requeue_dead_since};

use crate::error::Result;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in flight).
    Pending,
    /// A 2xx was received.
    Delivered,
    /// No further attempt will be made: a dead letter.
    Dead,
}

impl DeliveryStatus {
    pub(crate) fn code(self) -> i16 {
        match self {
            Self::Pending => 0,
            Self::Delivered => 1,
            Self::Dead => 2,
        }
    }

    /// Every status code that reads as pending: due or retrying (0),
    /// waiting behind an ordered endpoint's head (3), waiting for an
    /// in-flight place (4), as a SQL list.
    pub(crate) const PENDING_CODES: &'static str = "0, 3, 4";

    pub(crate) fn from_code(code: i16) -> Self {
        match code {
            1 => Self::Delivered,
            2 => Self::Dead,
            _ => Self::Pending,
        }
    }

    /// The status's name: `pending`, `delivered` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            other => Err(crate::Error::Config(format!(
                "unknown status `{other}` (pending, delivered, dead)"
            ))),
        }
    }
}
