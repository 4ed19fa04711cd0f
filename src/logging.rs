//! A small backend for the `log` facade: one line per event on stderr, with a UTC timestamp,
//! the level and the node's short id, so the lines of several nodes (a devnet, a test bed) can
//! be told apart and sorted.
//!
//! ```text
//! 2026-12-01T03:12:45.123Z INFO  3f9a1c0e peer 77b0…@127.0.0.1:4001 connected (inbound)
//! ```
//!
//! The library logs only from its runtime threads, never from the sans-IO cores; nothing it
//! logs contains key material (ids, addresses and counts only). Some of what it logs comes
//! from peers (an agent string), so control characters are escaped: a peer cannot end a line
//! and forge the next one, or send escape sequences to the operator's terminal.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

/// Characters of the node id shown on each line.
const SHORT_ID: usize = 8;

struct StderrLogger {
    /// The node's short id, once it is known.
    node: OnceLock<String>,
}

static LOGGER: StderrLogger = StderrLogger { node: OnceLock::new() };

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let node = self.node.get().map_or("-", String::as_str);
        let line = format!(
            "{} {:<5} {node} {}\n",
            timestamp(SystemTime::now()),
            record.level(),
            record.args()
        );
        // One write per line, so lines of concurrent threads do not interleave; a closed
        // stderr must not take the node down.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger at `level`. A second call (a test, or an application with its own
/// logger) only changes the level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Names the node on every later line: the first `SHORT_ID` hex digits of `id` (its `Display`).
/// Only the first call counts: one process logs for one node.
pub fn set_node(id: &impl std::fmt::Display) {
    let id = id.to_string();
    let _ = LOGGER.node.set(id.chars().take(SHORT_ID).collect());
}

/// `text` with every control character (newlines, escape sequences) written as `\u{..}`, so
/// one event is one line whatever a peer put in it.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `t` as RFC 3339 UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's civil-from-days
/// method: count in 400-year eras of 146,097 days, with years starting in March so the leap
/// day is the last of the year).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn control_characters_from_peers_cannot_forge_lines_or_reach_the_terminal() {
        let agent = "evil/1\n2026-12-01T00:00:00.000Z INFO  00000000 forged\x1b[31m";
        let escaped = escape_controls(agent);
        assert_eq!(
            escaped,
            "evil/1\\u{a}2026-12-01T00:00:00.000Z INFO  00000000 forged\\u{1b}[31m"
        );
        assert!(!escaped.chars().any(char::is_control));
        assert!(matches!(escape_controls("plain text ü"), Cow::Borrowed("plain text ü")));
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let at = |secs: u64, ms: u64| {
            timestamp(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century leap year), 2100-03-01 (2100 is not leap).
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(1_796_095_965, 123), "2026-12-01T03:32:45.123Z");
    }
}
