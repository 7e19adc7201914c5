//! Go-compatible time helpers: `time.ParseDuration`, `Duration.String`,
//! the `%v` rendering of `time.Now()`, log-line timestamps and HTTP dates
//! (the calendar work is jiff's).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jiff::fmt::rfc2822::DateTimePrinter;
use jiff::fmt::strtime;
use jiff::Timestamp;

/// Parses a Go duration string ("5s", "500ms", "1m30s", "1.5h", "0").
/// Negative durations are clamped to zero.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration {input:?}");
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &s[start..i];
        if number.is_empty() || number == "." {
            return Err(err());
        }
        let value: f64 = number.parse().map_err(|_| err())?;
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let nanos_per_unit = match &s[unit_start..i] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {input:?}")),
            unit => return Err(format!("time: unknown unit {unit:?} in duration {input:?}")),
        };
        total += value * nanos_per_unit;
    }
    if negative || total <= 0.0 {
        return Ok(Duration::ZERO);
    }
    if total > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Renders a duration like Go's `Duration.String` ("0s", "500ms", "1m30s").
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let secs = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Records the process start used for the monotonic part of [`now_go`].
pub fn init_clock() {
    let _ = process_start();
}

/// Formats `ts` (in UTC) with a strftime pattern; patterns here only use
/// fields every timestamp has, the fallback is for the impossible case.
fn strftime(pattern: &str, ts: Timestamp) -> String {
    strtime::format(pattern, ts).unwrap_or_else(|_| ts.to_string())
}

/// `time.Now()` as Go's `%v` prints it (in UTC), including the monotonic reading.
pub fn now_go() -> String {
    go_time_string(Timestamp::now(), process_start().elapsed())
}

/// `ts` as Go's `Time.String` prints a UTC time with monotonic reading `mono`.
fn go_time_string(ts: Timestamp, mono: Duration) -> String {
    format!(
        "{} +0000 UTC m=+{}.{:09}",
        strftime("%Y-%m-%d %H:%M:%S%.f", ts),
        mono.as_secs(),
        mono.subsec_nanos()
    )
}

/// Timestamp in Go's `log` format: "2006/01/02 15:04:05" (UTC).
pub fn log_timestamp() -> String {
    log_timestamp_at(Timestamp::now())
}

fn log_timestamp_at(ts: Timestamp) -> String {
    strftime("%Y/%m/%d %H:%M:%S", ts)
}

/// An RFC 9110 date ("Sun, 06 Nov 1994 08:49:37 GMT") for the `Date`
/// response header.
pub fn http_date() -> String {
    http_date_at(Timestamp::now())
}

fn http_date_at(ts: Timestamp) -> String {
    DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&ts)
        .unwrap_or_else(|_| strftime("%a, %d %b %Y %H:%M:%S GMT", ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("-3s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn formats_go_durations() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn timestamps_have_go_shape() {
        let now = now_go();
        assert!(now.contains(" +0000 UTC m=+"), "{now}");
        assert_eq!(log_timestamp().len(), 19);
        assert!(http_date().ends_with(" GMT"));
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn http_dates_are_rfc9110() {
        assert_eq!(
            http_date_at(ts("1994-11-06T08:49:37Z")),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            http_date_at(ts("2024-02-29T23:59:59.999Z")),
            "Thu, 29 Feb 2024 23:59:59 GMT"
        );
    }

    #[test]
    fn go_time_strings_trim_fractions() {
        let mono = Duration::new(3, 5);
        assert_eq!(
            go_time_string(ts("2009-11-10T23:00:00Z"), mono),
            "2009-11-10 23:00:00 +0000 UTC m=+3.000000005"
        );
        assert_eq!(
            go_time_string(ts("2009-11-10T23:00:00.12Z"), mono),
            "2009-11-10 23:00:00.12 +0000 UTC m=+3.000000005"
        );
    }

    #[test]
    fn log_timestamps_are_go_log_format() {
        assert_eq!(
            log_timestamp_at(ts("2001-02-03T04:05:06.7Z")),
            "2001/02/03 04:05:06"
        );
    }
}
