//! Where a delivery's time goes: a wall-clock stamp at each stage, from the
//! notification that woke the claimer to the committed completion.
//!
//! Every delivery's stage durations go into the `outhook_stage_seconds`
//! histogram (label `stage`), cheap enough to leave on: a clock read per
//! stage and a histogram record per stage at completion. With
//! `OUTHOOK_STAGE_LOG=<file>` set, each delivery's raw stamps are also
//! appended to that file, one line each, for a benchmark to join with its
//! own commit and arrival times (see `benches/e2e.rs`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::Histogram;
use uuid::Uuid;

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One delivery's stamps, in nanoseconds since the epoch; 0 where a stage
/// did not happen (the claimer was not asleep, or the attempt was refused
/// before signing).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stamps {
    /// The listener received the notification that woke the claimer.
    pub notified: u64,
    /// The claimer woke from its sleep for that notification.
    pub woke: u64,
    /// The claim statement was sent.
    pub claim_sent: u64,
    /// The claim's rows came back.
    pub claimed: u64,
    /// The attempt's task began.
    pub started: u64,
    /// The request was signed and built.
    pub signed: u64,
    /// The response's status and headers arrived.
    pub answered: u64,
    /// The response body was read (or the attempt ended otherwise).
    pub read: u64,
    /// The completion was committed.
    pub written: u64,
}

/// Reads one stamp.
type Stamp = fn(&Stamps) -> u64;

/// The stages, as (label, from, to).
const STAGES: [(&str, Stamp, Stamp); 8] = [
    ("notify_to_wake", |s| s.notified, |s| s.woke),
    ("wake_to_claim", |s| s.woke, |s| s.claim_sent),
    ("claim", |s| s.claim_sent, |s| s.claimed),
    ("claimed_to_start", |s| s.claimed, |s| s.started),
    ("sign", |s| s.started, |s| s.signed),
    ("request", |s| s.signed, |s| s.answered),
    ("response_body", |s| s.answered, |s| s.read),
    ("complete", |s| s.read, |s| s.written),
];

/// The stage histograms, looked up once; and the optional stamp log.
pub(crate) struct StageRecorder {
    histograms: Vec<Histogram>,
    /// Several workers may append to one file: each batch is one write.
    log: Option<std::fs::File>,
    line: String,
}

impl StageRecorder {
    /// The histograms, and the log if `OUTHOOK_STAGE_LOG` names a file that
    /// can be opened for appending (if it cannot, a warning says so).
    pub fn new() -> Self {
        let histograms = STAGES
            .iter()
            .map(|(name, _, _)| metrics::histogram!("outhook_stage_seconds", "stage" => *name))
            .collect();
        let log = std::env::var_os("OUTHOOK_STAGE_LOG").and_then(|path| {
            match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(path = ?path, error = %e, "cannot open OUTHOOK_STAGE_LOG; stamps not logged");
                    None
                }
            }
        });
        Self {
            histograms,
            log,
            line: String::new(),
        }
    }

    /// Records a written batch's stamps, `written` being the commit's time.
    pub fn record(&mut self, batch: &[(Uuid, Stamps)], written: u64) {
        for (uid, stamps) in batch {
            let mut s = *stamps;
            s.written = written;
            for ((_, from, to), h) in STAGES.iter().zip(&self.histograms) {
                let (a, b) = (from(&s), to(&s));
                if a != 0 && b >= a {
                    h.record((b - a) as f64 / 1e9);
                }
            }
            if self.log.is_some() {
                let _ = writeln!(
                    self.line,
                    "{} {} {} {} {} {} {} {} {} {}",
                    uid.simple(),
                    s.notified,
                    s.woke,
                    s.claim_sent,
                    s.claimed,
                    s.started,
                    s.signed,
                    s.answered,
                    s.read,
                    s.written
                );
            }
        }
        if self.line.len() > 1 << 16 {
            self.flush();
        }
    }

    /// Appends what the log has gathered, in one write.
    pub fn flush(&mut self) {
        if let Some(log) = &mut self.log
            && !self.line.is_empty()
        {
            let _ = log.write_all(self.line.as_bytes());
            self.line.clear();
        }
    }
}
