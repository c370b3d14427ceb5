//! Figures → Markdown: the summary table, the physical-limit parts, every run, the
//! machine, and the targets.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::args::format_size;

/// Targets from the upload-throughput brief.
const RSS_TARGET_MIB: f64 = 64.0;
const RSS_TARGET_SIZE: u64 = 1 << 30;
const LIMIT_TARGET_PERCENT: f64 = 70.0;
const LIMIT_TARGET_SIZES: [u64; 2] = [64 << 20, 1 << 30];

/// One repetition at one size.
#[derive(Debug, Clone)]
pub struct Run {
    /// First body byte → `201`.
    pub put: Duration,
    /// First → last body byte sent by the client.
    pub put_body: Duration,
    /// CPU time (user + system) the service used during the PUT.
    pub service_cpu: Option<Duration>,
    /// CPU time this process (the client) used during the PUT.
    pub client_cpu: Option<Duration>,
    pub rss_peak_kib: u64,
    pub rss_samples: u64,
    pub sha256sum: Duration,
    pub dd: Duration,
    pub sha2: Duration,
}

#[derive(Debug, Clone)]
pub struct SizeResult {
    pub size: u64,
    /// Pause before each timed write.
    pub settle: Duration,
    pub runs: Vec<Run>,
}

impl SizeResult {
    fn median_of(&self, f: impl Fn(&Run) -> Duration) -> f64 {
        median(self.runs.iter().map(|r| f(r).as_secs_f64()).collect())
    }

    pub fn put_mbps(&self) -> f64 {
        mbps(self.size, self.median_of(|r| r.put))
    }

    /// bytes / (median `sha256sum` time + median `dd` time).
    pub fn limit_mbps(&self) -> f64 {
        mbps(
            self.size,
            self.median_of(|r| r.sha256sum) + self.median_of(|r| r.dd),
        )
    }

    pub fn percent_of_limit(&self) -> f64 {
        100.0 * self.put_mbps() / self.limit_mbps()
    }

    /// bytes / (median in-process `sha2` time + median `dd` time): the same limit with
    /// the hasher the service uses (SHA-NI where the CPU has it) instead of `sha256sum`.
    pub fn strict_limit_mbps(&self) -> f64 {
        mbps(
            self.size,
            self.median_of(|r| r.sha2) + self.median_of(|r| r.dd),
        )
    }

    pub fn peak_rss_mib(&self) -> f64 {
        let kib = self.runs.iter().map(|r| r.rss_peak_kib).max().unwrap_or(0);
        kib as f64 / 1024.0
    }
}

/// Everything the report says.
pub struct Report {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub cache_note: String,
    pub client_chunk: usize,
    pub baseline_rss_kib: Option<u64>,
    pub hwm_kib: Option<u64>,
    pub load_after: String,
    pub results: Vec<SizeResult>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "#### Run of {}\n", self.date);
        md.push_str("| Size | Runs | Median MB/s | Limit MB/s | % of limit | Peak RSS MiB |\n");
        md.push_str("|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.results {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.0} | {:.0}% | {:.1} |",
                format_size(r.size),
                r.runs.len(),
                r.put_mbps(),
                r.limit_mbps(),
                r.percent_of_limit(),
                r.peak_rss_mib()
            );
        }
        md.push_str(
            "\nMB/s = 10^6 bytes per second; MiB = 2^20 bytes. *Median MB/s*: size / median \
             PUT time, first body byte read by the client → `201` received (presign excluded). \
             *Limit*: size / (median `sha256sum FILE` + median \
             `dd if=FILE of=WORKDIR/dd.out bs=1M conv=fsync`), the sequential cost of hashing \
             and durably writing the same bytes on the same disk, measured interleaved with the \
             uploads. *Peak RSS*: highest `VmRSS` of the service process, sampled every 10 ms \
             during the PUTs of that size.\n\n",
        );

        md.push_str(
            "Parts of the limit (medians), and a stricter limit that hashes with the `sha2` \
             crate the service uses (in-process, 1 MiB reads) instead of `sha256sum`:\n\n",
        );
        md.push_str(
            "| Size | sha256sum MB/s | dd conv=fsync MB/s | sha2 crate MB/s | sha2+dd limit MB/s | % of it |\n",
        );
        md.push_str("|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.results {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}% |",
                format_size(r.size),
                mbps(r.size, r.median_of(|x| x.sha256sum)),
                mbps(r.size, r.median_of(|x| x.dd)),
                mbps(r.size, r.median_of(|x| x.sha2)),
                r.strict_limit_mbps(),
                100.0 * r.put_mbps() / r.strict_limit_mbps(),
            );
        }

        md.push_str(
            "\nPUT phases (medians): *body* = first → last byte handed to the client's HTTP \
             stack; *after body* = last byte → `201` (the bytes still in socket buffers, then \
             flush, `fsync`, rename, directory `fsync`, database commit):\n\n",
        );
        md.push_str(
            "| Size | body MB/s | after body s | after body, % of PUT time | service CPU s per GB | client CPU s per GB |\n",
        );
        md.push_str("|---:|---:|---:|---:|---:|---:|\n");
        let gb = |r: &SizeResult| r.size as f64 / 1e9;
        for r in &self.results {
            let tail = r.median_of(|x| x.put.saturating_sub(x.put_body));
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.3} | {:.0}% | {} | {} |",
                format_size(r.size),
                mbps(r.size, r.median_of(|x| x.put_body)),
                tail,
                100.0 * tail / r.median_of(|x| x.put),
                per_gb(r.median_of(|x| x.service_cpu.unwrap_or_default()), gb(r)),
                per_gb(r.median_of(|x| x.client_cpu.unwrap_or_default()), gb(r)),
            );
        }
        md.push_str(
            "\nCPU times come from `/proc/<pid>/stat` (10 ms ticks, so rough for small sizes); \
             service + client CPU close to 2 × the PUT time means both cores were busy.\n",
        );

        md.push_str("\n<details><summary>Every run</summary>\n\n");
        md.push_str(
            "| Size | Run | PUT s | after body s | PUT MB/s | service CPU s | client CPU s | Peak RSS MiB (samples) | sha256sum s | dd s | sha2 s |\n",
        );
        md.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.results {
            for (i, run) in r.runs.iter().enumerate() {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.4} | {:.4} | {:.0} | {} | {} | {:.1} ({}) | {:.4} | {:.4} | {:.4} |",
                    format_size(r.size),
                    i + 1,
                    run.put.as_secs_f64(),
                    run.put.saturating_sub(run.put_body).as_secs_f64(),
                    mbps(r.size, run.put.as_secs_f64()),
                    secs(run.service_cpu),
                    secs(run.client_cpu),
                    run.rss_peak_kib as f64 / 1024.0,
                    run.rss_samples,
                    run.sha256sum.as_secs_f64(),
                    run.dd.as_secs_f64(),
                    run.sha2.as_secs_f64(),
                );
            }
        }
        md.push_str("\n</details>\n\n");

        let kib_to_mib = |k: Option<u64>| {
            k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "unknown".into())
        };
        let _ = writeln!(
            md,
            "Service memory: {} RSS when idle before the first upload; `VmHWM` (lifetime peak) {} at the end.\n",
            kib_to_mib(self.baseline_rss_kib),
            kib_to_mib(self.hwm_kib)
        );
        md.push_str("Targets:\n\n");
        for line in self.target_lines() {
            let _ = writeln!(md, "- {line}");
        }
        md.push('\n');

        let m = &self.machine;
        md.push_str("Machine:\n\n");
        let _ = writeln!(md, "- CPU: {} ({} logical cores)", m.cpu, m.cores);
        let _ = writeln!(md, "- Memory: {}", m.memory);
        let _ = writeln!(md, "- OS / kernel: {} / {}", m.os, m.kernel);
        let _ = writeln!(md, "- Work dir file system (`df -T`): {}", m.filesystem);
        let _ = writeln!(
            md,
            "- Load average (1/5/15 min): {} before, {} after",
            m.load_before, self.load_after
        );
        let _ = writeln!(md, "- Page cache: {}", self.cache_note);
        let settles: Vec<String> = self
            .results
            .iter()
            .map(|r| format!("{} s at {}", r.settle.as_secs_f64(), format_size(r.size)))
            .collect();
        let _ = writeln!(
            md,
            "- Disk state: before each timed write (PUT or dd) the previous output was deleted, \
             then `sync` and a pause ({}); PUT and dd alternate which goes first",
            settles.join(", ")
        );
        let _ = writeln!(
            md,
            "- Client: reqwest over loopback HTTP/1.1, body streamed from the file in {} reads, `Content-Length` set",
            format_size(self.client_chunk as u64)
        );
        let _ = writeln!(md, "\nCommand: `{}`\n", self.command);
        md
    }

    fn target_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match self.results.iter().find(|r| r.size == RSS_TARGET_SIZE) {
            Some(r) => {
                let peak = r.peak_rss_mib();
                lines.push(format!(
                    "peak RSS < {RSS_TARGET_MIB:.0} MiB during the 1 GiB upload: **{}** ({peak:.1} MiB)",
                    met(peak < RSS_TARGET_MIB)
                ));
            }
            None => {
                lines.push("peak RSS during the 1 GiB upload: not measured (size not run)".into())
            }
        }
        for size in LIMIT_TARGET_SIZES {
            match self.results.iter().find(|r| r.size == size) {
                Some(r) => {
                    let pct = r.percent_of_limit();
                    lines.push(format!(
                        "≥ {LIMIT_TARGET_PERCENT:.0}% of the physical limit at {}: **{}** ({pct:.0}%)",
                        format_size(size),
                        met(pct >= LIMIT_TARGET_PERCENT)
                    ));
                }
                None => lines.push(format!(
                    "≥ {LIMIT_TARGET_PERCENT:.0}% of the physical limit at {}: not measured (size not run)",
                    format_size(size)
                )),
            }
        }
        lines
    }
}

/// CPU seconds per GB, or `n/a` when the time is within a few clock ticks.
fn per_gb(cpu_secs: f64, gb: f64) -> String {
    if cpu_secs < 0.05 {
        "n/a (too short)".into()
    } else {
        format!("{:.2}", cpu_secs / gb)
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "?".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

pub fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

pub use vitrine_bench::{load_average, median};

/// What the figures were measured on.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub os: String,
    pub kernel: String,
    pub filesystem: String,
    pub load_before: String,
}

impl Machine {
    pub fn describe(work_dir: &Path) -> Machine {
        let host = vitrine_bench::Host::describe();
        let cpu = if host.sha_ni {
            format!("{}, with SHA extensions (sha_ni)", host.cpu)
        } else {
            format!("{}, without SHA extensions", host.cpu)
        };
        Machine {
            cpu,
            cores: host.cores,
            memory: host.memory,
            os: host.os,
            kernel: host.kernel,
            filesystem: df_type(work_dir),
            load_before: load_average(),
        }
    }
}

/// Device, type and mount point of `dir` from `df -T`.
fn df_type(dir: &Path) -> String {
    let Ok(out) = Command::new("df").arg("-T").arg(dir).output() else {
        return "unknown (df failed)".into();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match text
        .lines()
        .nth(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
    {
        Some(cols) if cols.len() >= 7 => {
            format!("{} on {} ({})", cols[1], cols[6], cols[0])
        }
        _ => format!("unknown (`df -T` said: {})", text.trim()),
    }
}
