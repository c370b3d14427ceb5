//! The input file, and the physical limit measured with the same file on the same
//! disk: `sha256sum FILE` (hashing) and `dd … conv=fsync` (durably writing).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Claimed dimensions of the synthetic PNGs: 12 MP, well under the pixel cap.
const PNG_WIDTH: u32 = 4000;
const PNG_HEIGHT: u32 = 3000;

/// Writes a synthetic PNG of exactly `size` bytes to `path` (streamed, ~1 MiB at a
/// time), `fsync`s it, and returns its SHA-256 in hex.
pub fn write_png(path: &Path, size: u64) -> Result<String> {
    let len = usize::try_from(size)?;
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut sha = Sha256::new();
    let mut written = 0u64;
    for part in storage_service::inspect::synthetic::png_stream(PNG_WIDTH, PNG_HEIGHT, len) {
        sha.update(&part);
        file.write_all(&part)?;
        written += part.len() as u64;
    }
    if written != size {
        bail!("synthetic PNG is {written} bytes, wanted {size} (smaller than the minimum PNG?)");
    }
    // Clean pages: nothing of this write is left for the timed steps to flush.
    file.sync_all()?;
    Ok(hex::encode(sha.finalize()))
}

/// Reads `path` into the page cache (discarding the bytes).
pub fn warm(path: &Path) -> Result<()> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    while file.read(&mut buf)? > 0 {}
    Ok(())
}

/// How the page cache was emptied before a timed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// `sync; echo 3 > /proc/sys/vm/drop_caches` worked.
    DropCaches,
    /// `posix_fadvise(DONTNEED)` on the (clean) file.
    Fadvise,
}

/// Evicts `path` from the page cache; with `machine_wide`, drops every clean page
/// (falling back to the file alone when the kernel refuses).
pub fn evict(path: &Path, machine_wide: bool) -> Result<Eviction> {
    if machine_wide {
        let _ = Command::new("sync").status();
        if std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok() {
            return Ok(Eviction::DropCaches);
        }
    }
    let file = File::open(path)?;
    // SAFETY: posix_fadvise on an open descriptor we own; offset 0, length 0 = whole file.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        bail!("posix_fadvise(DONTNEED) failed: error {rc}");
    }
    Ok(Eviction::Fadvise)
}

/// Time of `sha256sum FILE`; checks it prints `expected`.
pub fn time_sha256sum(path: &Path, expected: &str) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new("sha256sum")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running sha256sum")?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "sha256sum failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    if printed.split_whitespace().next() != Some(expected) {
        bail!(
            "sha256sum printed `{}`, expected {expected}",
            printed.trim()
        );
    }
    Ok(elapsed)
}

/// Time of `dd if=FILE of=OUT bs=1M conv=fsync`; removes `OUT` afterwards (untimed).
pub fn time_dd(path: &Path, out: &Path) -> Result<Duration> {
    let start = Instant::now();
    let result = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .arg(format!("of={}", out.display()))
        .args(["bs=1M", "conv=fsync"])
        .stdin(Stdio::null())
        .output()
        .context("running dd")?;
    let elapsed = start.elapsed();
    if !result.status.success() {
        bail!(
            "dd failed: {}",
            String::from_utf8_lossy(&result.stderr).trim()
        );
    }
    std::fs::remove_file(out)?;
    Ok(elapsed)
}

/// Time to SHA-256 the file in this process with the `sha2` crate the service uses
/// (1 MiB reads): how fast hashing *can* be here, for comparison with `sha256sum`.
pub fn time_sha2(path: &Path, expected: &str) -> Result<Duration> {
    let start = Instant::now();
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut sha = Sha256::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    let actual = hex::encode(sha.finalize());
    let elapsed = start.elapsed();
    if actual != expected {
        bail!("sha2 gave {actual}, expected {expected}");
    }
    Ok(elapsed)
}

/// Where `dd` writes: next to the input, on the same file system.
pub fn dd_target(work: &Path) -> PathBuf {
    work.join("dd.out")
}
