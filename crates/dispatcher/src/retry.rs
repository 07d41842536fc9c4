//! When to try again: one pure function of the attempt number.
//!
//! The schedule is persisted (as the delivery's `next_attempt_at`), so it
//! survives restarts. Nothing here keeps state in memory.

use std::time::Duration;

/// How a failed attempt failed, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The receiver was too slow: wait at least [`RetryPolicy::overload_floor`].
    Timeout,
    /// `429 Too Many Requests`: wait at least the overload floor, or longer
    /// if `Retry-After` asks (up to a cap).
    RateLimited,
    /// `503 Service Unavailable`: honour `Retry-After` (up to a cap).
    Unavailable,
    /// Any other failure.
    Other,
}

/// The retry policy: a schedule of delays, jitter, and limits by attempts
/// and by age.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before attempt `n + 2` is `delays[n]`; past the end, the last
    /// delay repeats (until `max_attempts`).
    delays: Vec<Duration>,
    /// Each delay is multiplied by a factor in `[1 - jitter, 1 + jitter]`.
    jitter: f64,
    /// Total attempts, the first included, before a delivery is dead.
    max_attempts: u32,
    /// No attempt is scheduled later than this after the first.
    max_age: Duration,
    /// The least delay after a timeout or a 429.
    overload_floor: Duration,
    /// The most a `Retry-After` can stretch a delay to.
    retry_after_cap: Duration,
    /// The growth factor of an exponential schedule, kept to be checked.
    factor: Option<f64>,
}

impl Default for RetryPolicy {
    /// Svix's schedule: attempts at once, then after 5 s, 5 min, 30 min, 2 h,
    /// 5 h, 10 h and 10 h (8 attempts over about 27.5 hours), ±20% jitter;
    /// timeouts and 429s wait at least a minute.
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            delays: vec![s(5), s(300), s(1800), s(7200), s(18000), s(36000), s(36000)],
            jitter: 0.2,
            max_attempts: 8,
            max_age: s(3 * 24 * 3600),
            overload_floor: s(60),
            retry_after_cap: s(3600),
            factor: None,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff: `initial`, then times `factor` each attempt, at
    /// most `cap`, for `max_attempts` attempts in all. Other settings keep
    /// their defaults.
    pub fn exponential(initial: Duration, factor: f64, cap: Duration, max_attempts: u32) -> Self {
        let mut delays = Vec::new();
        let mut next = initial.as_secs_f64();
        for _ in 1..max_attempts.max(1) {
            // A factor the check refuses (NaN, negative) must not panic here.
            let d = Duration::try_from_secs_f64(next.min(cap.as_secs_f64())).unwrap_or(Duration::ZERO);
            delays.push(d);
            next *= factor;
        }
        Self {
            delays,
            max_attempts: max_attempts.max(1),
            factor: Some(factor),
            ..Self::default()
        }
    }

    /// A fixed schedule of delays between attempts; `delays.len() + 1`
    /// attempts in all.
    pub fn schedule(delays: Vec<Duration>) -> Self {
        let max_attempts = u32::try_from(delays.len() + 1).unwrap_or(u32::MAX);
        Self {
            delays,
            max_attempts,
            ..Self::default()
        }
    }

    /// Sets the jitter fraction (0 for none, at most 1; the dispatcher's
    /// builder refuses anything else).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Why the policy cannot be used, if it cannot: a jitter that is not a
    /// fraction, a growth factor under 1 or not a number, a zero delay.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if !(self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter)) {
            return Err(format!("jitter ({}) must be a number from 0 to 1", self.jitter));
        }
        if let Some(f) = self.factor
            && !(f.is_finite() && f >= 1.0)
        {
            return Err(format!("factor ({f}) must be a number of at least 1"));
        }
        if let Some(i) = self.delays.iter().position(Duration::is_zero) {
            return Err(format!("delay {} is zero: retries need a delay", i + 1));
        }
        if self.max_age.is_zero() {
            return Err("max_age must not be zero".into());
        }
        Ok(())
    }

    /// Sets the total number of attempts.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// No attempt is scheduled later than this after a delivery's first.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Sets the age after which no further attempt is scheduled.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets the least delay after a timeout or a 429.
    pub fn with_overload_floor(mut self, floor: Duration) -> Self {
        self.overload_floor = floor;
        self
    }

    /// Sets the most a `Retry-After` header can ask for.
    pub fn with_retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// The total number of attempts.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The least delay after a timeout or a 429.
    pub fn overload_floor(&self) -> Duration {
        self.overload_floor
    }

    /// The delay before the next attempt, or `None` when the delivery is dead.
    ///
    /// - `attempts_made`: attempts so far in this cycle, the failed one included (≥ 1).
    /// - `age`: time since the cycle's first attempt was due.
    /// - `retry_after`: the receiver's `Retry-After`, if any.
    /// - `jitter_unit`: a number in `[-1, 1]` (random in production, fixed in tests).
    pub fn next_delay(
        &self,
        attempts_made: u32,
        kind: FailureKind,
        retry_after: Option<Duration>,
        age: Duration,
        jitter_unit: f64,
    ) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let index = usize::try_from(attempts_made.saturating_sub(1)).unwrap_or(usize::MAX);
        let base = self
            .delays
            .get(index)
            .or(self.delays.last())
            .copied()
            .unwrap_or(Duration::ZERO);
        let factor = (1.0 + self.jitter * jitter_unit.clamp(-1.0, 1.0)).max(0.0);
        // Whole milliseconds: stored precision, and exact arithmetic in tests.
        let millis = (base.as_millis() as f64 * factor).round();
        let mut delay = Duration::from_millis(millis as u64);
        if matches!(kind, FailureKind::Timeout | FailureKind::RateLimited) {
            delay = delay.max(self.overload_floor);
        }
        if let (Some(asked), FailureKind::RateLimited | FailureKind::Unavailable) = (retry_after, kind) {
            delay = delay.max(asked.min(self.retry_after_cap));
        }
        if age.saturating_add(delay) > self.max_age {
            return None;
        }
        Some(delay)
    }
}

/// Delays for retrying the dispatcher's own database work in process
/// (claims, result writes, LISTEN reconnects) while PostgreSQL is away:
/// exponential from `min` up to 5 s, without end. Deliveries never use this;
/// their schedule is persisted.
pub(crate) fn reconnect_backoff(min: Duration) -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_default_is_svix_schedule_of_eight_attempts_over_about_27_and_a_half_hours() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = (1..=8)
            .map(|n| p.next_delay(n, FailureKind::Other, None, Duration::ZERO, 0.0))
            .collect();
        assert_eq!(
            delays,
            vec![
                Some(S(5)),
                Some(S(300)),
                Some(S(1800)),
                Some(S(7200)),
                Some(S(18000)),
                Some(S(36000)),
                Some(S(36000)),
                None
            ]
        );
        let total: u64 = delays.iter().flatten().map(Duration::as_secs).sum();
        assert_eq!(total, 99_305); // 27 h 35 min 5 s
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay(2, FailureKind::Other, None, Duration::ZERO, 1.0),
            Some(S(360))
        );
        assert_eq!(
            p.next_delay(2, FailureKind::Other, None, Duration::ZERO, -1.0),
            Some(S(240))
        );
    }

    #[test]
    fn timeouts_and_429s_wait_at_least_a_minute_and_retry_after_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay(1, FailureKind::Timeout, None, Duration::ZERO, 0.0),
            Some(S(60))
        );
        assert_eq!(
            p.next_delay(1, FailureKind::RateLimited, Some(S(120)), Duration::ZERO, 0.0),
            Some(S(120))
        );
        assert_eq!(
            p.next_delay(1, FailureKind::Unavailable, Some(S(999_999)), Duration::ZERO, 0.0),
            Some(S(3600))
        );
        // Retry-After on other failures is not honoured.
        assert_eq!(
            p.next_delay(1, FailureKind::Other, Some(S(120)), Duration::ZERO, 0.0),
            Some(S(5))
        );
    }

    #[test]
    fn the_age_limit_ends_retries() {
        let p = RetryPolicy::default().with_max_age(S(100));
        assert_eq!(p.next_delay(1, FailureKind::Other, None, S(96), 0.0), None);
        assert_eq!(p.next_delay(1, FailureKind::Other, None, S(96), -1.0), Some(S(4)));
    }

    #[test]
    fn exponential_grows_by_the_factor_up_to_the_cap() {
        let p = RetryPolicy::exponential(S(1), 2.0, S(5), 6).with_jitter(0.0);
        let d: Vec<_> = (1..=6)
            .map(|n| p.next_delay(n, FailureKind::Other, None, Duration::ZERO, 0.0))
            .collect();
        assert_eq!(
            d,
            vec![Some(S(1)), Some(S(2)), Some(S(4)), Some(S(5)), Some(S(5)), None]
        );
    }
}
