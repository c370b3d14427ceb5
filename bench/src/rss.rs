//! Memory of the child: `VmRSS` sampled every 10 ms, and `VmHWM`, from `/proc/<pid>/status`;
//! and CPU time (user + system) of a process from `/proc/<pid>/stat`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`, …).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// User + system CPU time of process `pid` (`"self"` for this one), all threads.
/// Resolution is one clock tick (usually 10 ms).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces:
    // state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0)?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// Samples `VmRSS` on its own thread until [`RssSampler::stop`].
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

/// What a sampler saw.
#[derive(Debug, Clone, Copy)]
pub struct RssPeak {
    pub peak_kib: u64,
    pub samples: u64,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak_kib, samples) = (stop.clone(), peak_kib.clone(), samples.clone());
            std::thread::spawn(move || loop {
                if let Some(kib) = status_kib(pid, "VmRSS") {
                    peak_kib.fetch_max(kib, Ordering::Relaxed);
                    samples.fetch_add(1, Ordering::Relaxed);
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(SAMPLE_EVERY);
            })
        };
        RssSampler {
            stop,
            peak_kib,
            samples,
            thread,
        }
    }

    /// Takes one last sample and returns the peak.
    pub fn stop(self) -> RssPeak {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        RssPeak {
            peak_kib: self.peak_kib.load(Ordering::Relaxed),
            samples: self.samples.load(Ordering::Relaxed),
        }
    }
}
