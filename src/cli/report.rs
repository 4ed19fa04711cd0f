//! What the measuring subcommands ([`devnet`](super::devnet), [`bench`](super::bench)) share:
//! the process's CPU time and memory read from `/proc/self` (percentiles are in
//! [`crate::stats`]).
//!
//! The `/proc` readings are Linux-only; elsewhere they return `None` and the reports print 0.

/// Clock ticks per second of `/proc/self/stat`. `sysconf(_SC_CLK_TCK)` needs libc (and
/// unsafe); it is 100 on every mainstream Linux configuration, so it is assumed.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A `kB` line of `/proc/self/status`, such as `VmRSS:` or `VmHWM:`.
pub fn proc_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// User plus system CPU time of the whole process so far (fields 14 and 15 of
/// `/proc/self/stat`), in seconds, at a resolution of one clock tick (10 ms).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after it start at field 3.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readings_are_available_on_linux() {
        assert!(proc_status_kib("VmRSS:").unwrap() > 0);
        assert!(proc_status_kib("NoSuchKey:").is_none());
        // CPU time advances with work: spin until it has, at most for five seconds.
        let before = cpu_seconds().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut spins = 0u64;
        while cpu_seconds().unwrap() <= before {
            assert!(std::time::Instant::now() < deadline, "CPU time did not advance");
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
}
