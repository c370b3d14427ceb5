//! Command line: flags, their defaults, and byte sizes like `64MiB`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const USAGE: &str = "\
upload-throughput — PUT /uploads throughput and memory of a real storage-service process

USAGE:
    upload-throughput [OPTIONS]

OPTIONS:
    --service PATH       storage-service binary (default: next to this binary,
                         else target/release/storage-service); it is not built for you
    --work-dir DIR       files, database and blob store go in a fresh subdirectory of DIR;
                         put it on the disk you want to measure (default: target/bench-work)
    --sizes LIST         comma-separated sizes in B, KiB, MiB or GiB (default: 1MiB,64MiB,1GiB)
    --runs LIST          runs per size: one number for every size, or one per size
                         (default: 20 up to 1 MiB, 5 up to 64 MiB, 3 above)
    --cache MODE         warm (default): the source file stays in the page cache, so
                         neither the upload nor the reference commands read the disk;
                         cold: evict that file (posix_fadvise DONTNEED) before every
                         timed step; drop: `echo 3 > /proc/sys/vm/drop_caches` instead —
                         machine-wide, and on a VM with free-page reporting it makes
                         later page-cache writes slower (see bench/README.md)
    --client-chunk SIZE  read size of the client's request body stream (default: 256KiB)
    --settle SECS        before every timed write (PUT or dd): delete the previous output,
                         `sync`, and wait this long, so both start from the same disk state
                         (default: 6 for sizes of 64 MiB and more, 1 below; see bench/README.md)
    --output FILE        also write the Markdown report to FILE
    --append             append to --output instead of replacing it
    --keep               keep the work directory (files, blobs, database, service log)
    -h, --help           this text

Build first: cargo build --release -p storage-service -p vitrine-bench";

/// Whether the source file may stay in the page cache between timed steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    Warm,
    /// Evict the source file only.
    Cold,
    /// Drop every clean page of the machine.
    Drop,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub service: PathBuf,
    pub work_dir: PathBuf,
    /// (size in bytes, runs) in the order given.
    pub plan: Vec<(u64, usize)>,
    pub cache: CacheMode,
    pub client_chunk: usize,
    /// `None`: [`default_settle`].
    pub settle: Option<f64>,
    pub output: Option<PathBuf>,
    pub append: bool,
    pub keep: bool,
}

/// `None` when help was asked for.
pub fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut service = None;
    let mut work_dir = None;
    let mut sizes = vec![1 << 20, 64 << 20, 1 << 30];
    let mut runs: Option<Vec<usize>> = None;
    let mut cache = CacheMode::Warm;
    let mut client_chunk = 256 * 1024;
    let mut settle = None;
    let mut output = None;
    let mut append = false;
    let mut keep = false;

    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--service" => service = Some(PathBuf::from(value()?)),
            "--work-dir" => work_dir = Some(PathBuf::from(value()?)),
            "--sizes" => {
                sizes = value()?
                    .split(',')
                    .map(parse_size)
                    .collect::<Result<Vec<_>>>()?;
            }
            "--runs" => {
                runs = Some(
                    value()?
                        .split(',')
                        .map(|n| {
                            n.trim()
                                .parse::<usize>()
                                .ok()
                                .filter(|&n| n > 0)
                                .with_context(|| format!("--runs: `{n}` is not a positive number"))
                        })
                        .collect::<Result<Vec<_>>>()?,
                );
            }
            "--cache" => {
                cache = match value()?.as_str() {
                    "warm" => CacheMode::Warm,
                    "cold" => CacheMode::Cold,
                    "drop" => CacheMode::Drop,
                    other => bail!("--cache: `{other}` is not warm, cold or drop"),
                }
            }
            "--client-chunk" => {
                let size = parse_size(value()?)?;
                client_chunk = usize::try_from(size)
                    .ok()
                    .filter(|&s| s > 0)
                    .context("--client-chunk must be positive")?;
            }
            "--settle" => {
                let raw = value()?;
                settle = Some(
                    raw.parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .with_context(|| format!("--settle: `{raw}` is not a number of seconds"))?,
                );
            }
            "--output" => output = Some(PathBuf::from(value()?)),
            "--append" => append = true,
            "--keep" => keep = true,
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }

    if sizes.is_empty() {
        bail!("--sizes is empty");
    }
    let runs = match runs {
        None => sizes.iter().map(|&s| default_runs(s)).collect(),
        Some(r) if r.len() == 1 => vec![r[0]; sizes.len()],
        Some(r) if r.len() == sizes.len() => r,
        Some(r) => bail!(
            "--runs has {} values for {} sizes; give one, or one per size",
            r.len(),
            sizes.len()
        ),
    };
    let (default_service, default_work) = defaults_next_to_exe();
    Ok(Some(Options {
        service: service.unwrap_or(default_service),
        work_dir: work_dir.unwrap_or(default_work),
        plan: sizes.into_iter().zip(runs).collect(),
        cache,
        client_chunk,
        settle,
        output,
        append,
        keep,
    }))
}

fn default_runs(size: u64) -> usize {
    match size {
        s if s <= 1 << 20 => 20,
        s if s <= 64 << 20 => 5,
        _ => 3,
    }
}

/// Pause before a timed write of `size` bytes. Long enough (> ext4's 5 s journal
/// commit interval) for the previous output's deletion — and, on a `discard` mount,
/// its discard — to reach the device before a large write; short for small ones.
pub fn default_settle(size: u64) -> f64 {
    if size >= 64 << 20 {
        6.0
    } else {
        1.0
    }
}

/// The service binary and `bench-work` in the cargo target directory this binary
/// was built into, falling back to paths relative to the current directory.
fn defaults_next_to_exe() -> (PathBuf, PathBuf) {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let service = exe_dir
        .as_ref()
        .map(|dir| dir.join("storage-service"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("target/release/storage-service"));
    let work = exe_dir
        .as_ref()
        .filter(|dir| {
            dir.file_name()
                .is_some_and(|n| n == "release" || n == "debug")
        })
        .and_then(|dir| dir.parent())
        .map(|target| target.join("bench-work"))
        .unwrap_or_else(|| PathBuf::from("target/bench-work"));
    (service, work)
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB` (binary units; `B` optional).
pub fn parse_size(raw: &str) -> Result<u64> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .with_context(|| format!("`{raw}` is not a size like 64MiB"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => bail!("`{raw}`: unknown unit `{other}` (use B, KiB, MiB or GiB)"),
    };
    let size = n
        .checked_mul(1 << shift)
        .with_context(|| format!("`{raw}` is too large"))?;
    if size == 0 {
        bail!("`{raw}`: sizes must be positive");
    }
    Ok(size)
}

/// `1 MiB`, `64 MiB`, `1 GiB`, `1536 KiB`, `1000 B`: exact, in the largest unit that divides.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}
