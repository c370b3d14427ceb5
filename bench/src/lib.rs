//! What every Vitrine benchmark binary shares: the machine the figures were measured
//! on, medians, and writing the Markdown report (with the command that produced it).
//!
//! The binaries: `upload-throughput` (`src/main.rs` and its modules),
//! `upload-url-throughput`, `queue-throughput`, `import-throughput` and `load` (issue 9;
//! `docs/reliability.md`) (`src/bin/`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// The median (`NaN` for no values).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// (busy, total) CPU time of the machine, all cores, since boot, from `/proc/stat`.
/// Busy is everything but idle and iowait; guest time is inside user.
pub fn machine_cpu() -> (Duration, Duration) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // user nice system idle iowait irq softirq steal
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    let secs = |t: u64| Duration::from_secs_f64(t as f64 / hz);
    (secs(total - idle), secs(total))
}

/// The host, as read from `/proc` and `/etc/os-release`.
pub struct Host {
    /// CPU model name.
    pub cpu: String,
    /// Whether the CPU has the SHA extensions (`sha_ni`).
    pub sha_ni: bool,
    pub cores: usize,
    pub memory: String,
    pub os: String,
    pub kernel: String,
}

impl Host {
    pub fn describe() -> Host {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        Host {
            cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            sha_ni: cpuinfo
                .lines()
                .find(|l| l.starts_with("flags"))
                .is_some_and(|l| l.split_whitespace().any(|f| f == "sha_ni")),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory: field(&read("/proc/meminfo"), "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| format!("{:.1} GiB", kib as f64 / (1u64 << 20) as f64))
                .unwrap_or_else(|| "unknown".into()),
            os: read("/etc/os-release")
                .lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_else(|| "unknown".into()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        }
    }
}

/// Writes (or appends) the Markdown report to `path`, creating its directory.
pub fn write_output(path: &Path, markdown: &str, append: bool) -> Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(markdown.as_bytes())?;
    Ok(())
}

/// The command as typed, quoted where a shell would need it.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./,=:".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quoting() {
        assert!(median(vec![]).is_nan());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let argv = ["bench", "--output", "a b.md", "it's"].map(String::from);
        assert_eq!(command_line(&argv), r"bench --output 'a b.md' 'it'\''s'");
    }
}
