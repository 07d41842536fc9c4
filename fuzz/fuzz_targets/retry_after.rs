//! `Retry-After` parsing: never panics; whole seconds read as themselves and
//! a date never gives more than its distance from now.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use outhook_dispatcher::http::parse_retry_after;

fuzz_target!(|input: &str| {
    let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let parsed = parse_retry_after(input, now);
    if let Ok(seconds) = input.trim().parse::<u64>() {
        assert_eq!(parsed, Some(Duration::from_secs(seconds)));
    } else if let (Some(delay), Ok(at)) = (parsed, chrono::DateTime::parse_from_rfc2822(input.trim())) {
        let expected = (at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO);
        assert_eq!(delay, expected);
    }
});
