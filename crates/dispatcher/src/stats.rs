//! Counters of what a dispatcher did, for callers and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::completion::CompletionBatch;
use crate::db::delivery::DeliveryStatus;

/// Live counters, shared by the dispatcher's tasks.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    attempts: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    stale: AtomicU64,
}

/// What a dispatcher run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Attempts whose results were written.
    pub attempts: u64,
    /// Deliveries that got a 2xx.
    pub delivered: u64,
    /// Failed attempts scheduled for a retry.
    pub retried: u64,
    /// Deliveries that became dead letters.
    pub dead: u64,
    /// Results dropped because another worker had taken the lease over.
    pub stale: u64,
}

impl Stats {
    pub fn record(&self, batch: &CompletionBatch, written: u64) {
        let counts = batch.by_status;
        let batch_len = batch.len() as u64;
        self.attempts.fetch_add(written, Ordering::Relaxed);
        self.stale
            .fetch_add(batch_len.saturating_sub(written), Ordering::Relaxed);
        // Counted by intent; stale results are rare and counted apart.
        self.retried.fetch_add(
            counts[usize::from(DeliveryStatus::Pending.code().unsigned_abs())],
            Ordering::Relaxed,
        );
        self.delivered.fetch_add(
            counts[usize::from(DeliveryStatus::Delivered.code().unsigned_abs())],
            Ordering::Relaxed,
        );
        self.dead.fetch_add(
            counts[usize::from(DeliveryStatus::Dead.code().unsigned_abs())],
            Ordering::Relaxed,
        );
    }

    pub fn summary(&self) -> Summary {
        Summary {
            attempts: self.attempts.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
        }
    }
}
