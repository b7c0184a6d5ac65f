//! Resource limits of a build step (wall-clock time, memory), shared by the
//! recipe parser (`[build] timeout` / `memory`) and the sandbox.
//!
//! Defaults: [`DEFAULT_TIMEOUT`] (30 minutes) and [`DEFAULT_MEMORY`]
//! (4 GiB, swap included). A step over its time is killed; a step over its
//! memory is killed by the kernel's cgroup OOM killer.

use std::time::Duration;

/// Raise this process's soft limit of open files to its hard limit (as Go's
/// runtime does): a build holds about 60 descriptors plus 15 per worker
/// thread (measured, docs/benchmarks.md), so `--jobs 64` would pass the
/// usual soft limit of 1024. Build steps keep a fixed limit of their own
/// (the sandbox's spec sets 1024). Returns the limit now in force, if known.
pub fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current
}

/// Default wall-clock limit per build step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default memory limit per build step (bytes).
pub const DEFAULT_MEMORY: u64 = 4 << 30;

/// Limits applied to every step of one build stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    pub timeout: Duration,
    pub memory_bytes: u64,
}

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY,
        }
    }
}

/// `"90s"`, `"30m"`, `"2h"` (or bare seconds) as a duration of at least 1 s.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = split_unit(s);
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("unknown time unit {unit:?} in {s:?}")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration"))?;
    match n.checked_mul(mult) {
        Some(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(format!("{s:?} is not a positive duration")),
    }
}

/// `"512M"`, `"4G"`, `"1048576K"` (binary units; `B` optional) as bytes,
/// at least 16 MiB.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let (digits, unit) = split_unit(s);
    let unit = unit.trim_end_matches(['B', 'b']).trim_end_matches('i');
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("unknown size unit in {s:?}")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size"))?;
    match n.checked_mul(1 << shift) {
        Some(b) if b >= 16 << 20 => Ok(b),
        _ => Err(format!("{s:?} is below 16 MiB or too large")),
    }
}

fn split_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (&s[..at], s[at..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 days").is_err());
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert!(parse_bytes("1K").is_err());
        assert!(parse_bytes("99999999999G").is_err());
    }
}
