//! `upload-throughput`: how fast a real storage-service process takes `PUT /uploads`
//! bodies, how much memory it uses doing so, and how that compares with the
//! physical limit of the same disk (hash + durable write of the same file).
//!
//! Nothing is built here: it runs an already built `storage-service` as a child
//! process. See `bench/README.md` for what is measured and how to run it.
//!
//! # Layout
//! - `main.rs`: the sequence — start the service, then per size: write the file,
//!   and per run: upload it, `sha256sum` it, `dd` it; report; clean up.
//! - [`args`]: flags, defaults and byte sizes.
//! - [`service`]: the child process (keys, SQLite, `file://` blobs, readiness, SIGTERM).
//! - [`upload`]: presign (signed like the App Service) and the streamed, timed PUT.
//! - [`rss`]: the child's `VmRSS` sampled every 10 ms, and `VmHWM`.
//! - [`physical`]: the input PNG, `sha256sum`, `dd conv=fsync`, page-cache eviction.
//! - [`report`]: medians and the Markdown report with machine details.

mod args;
mod physical;
mod report;
mod rss;
mod service;
mod upload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::args::{format_size, CacheMode, Options};
use crate::physical::Eviction;
use crate::report::{mbps, Machine, Report, Run, SizeResult};
use crate::rss::{RssPeak, RssSampler};
use crate::service::Service;
use crate::upload::PutTiming;
use vitrine_bench::{command_line, write_output};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let options = match args::parse(&argv[1..]) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("upload-throughput: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&options, &command_line(&argv)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upload-throughput: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options, command: &str) -> Result<()> {
    std::fs::create_dir_all(&options.work_dir)
        .with_context(|| format!("creating {}", options.work_dir.display()))?;
    // A subdirectory of our own, so that cleaning up never touches anything else.
    let work = options
        .work_dir
        .join(format!("upload-throughput-{}", std::process::id()));
    std::fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    let work = std::fs::canonicalize(&work)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(measure(options, &work, command));

    if options.keep {
        eprintln!("kept {}", work.display());
    } else {
        if let Err(e) = std::fs::remove_dir_all(&work) {
            eprintln!("could not remove {}: {e}", work.display());
        }
        // Only if nothing else is in it.
        let _ = std::fs::remove_dir(&options.work_dir);
    }

    let report = outcome?;
    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(path) = &options.output {
        write_output(path, &markdown, options.append)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

async fn measure(options: &Options, work: &Path, command: &str) -> Result<Report> {
    let machine = Machine::describe(work);
    let max_size = options.plan.iter().map(|(s, _)| *s).max().unwrap_or(1);
    let mut service = Service::start(&options.service, work, max_size)?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    service.wait_ready(&client).await?;
    let pid = service.pid();
    eprintln!(
        "storage-service {} (pid {pid}) ready at {}; work dir {}",
        options.service.display(),
        service.base_url,
        work.display()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline_rss_kib = rss::status_kib(pid, "VmRSS");

    let mut results = Vec::new();
    let mut evictions = Vec::new();
    for &(size, runs) in &options.plan {
        let file = work.join(format!("input-{size}.png"));
        eprintln!("{}: writing {}", format_size(size), file.display());
        let sha256 = physical::write_png(&file, size)?;
        if options.cache == CacheMode::Warm {
            physical::warm(&file)?;
        }
        let mut evict = || -> Result<()> {
            match options.cache {
                CacheMode::Warm => {}
                CacheMode::Cold => evictions.push(physical::evict(&file, false)?),
                CacheMode::Drop => evictions.push(physical::evict(&file, true)?),
            }
            Ok(())
        };

        let settle =
            Duration::from_secs_f64(options.settle.unwrap_or_else(|| args::default_settle(size)));
        let mut figures = Vec::with_capacity(runs);
        for i in 1..=runs {
            // The two timed writes alternate, so that neither always follows the other.
            let order = if i % 2 == 1 {
                [Write::Put, Write::Dd]
            } else {
                [Write::Dd, Write::Put]
            };
            let (mut put, mut dd) = (None, None);
            for write in order {
                match write {
                    Write::Put => {
                        // Presign first: its database write is not part of the PUT.
                        let presigned = upload::presign(
                            &client,
                            &service.base_url,
                            &service.app_keys,
                            size,
                            &sha256,
                        )
                        .await?;
                        settle_disk(settle).await;
                        evict()?;
                        let measured = measured_put(
                            &client,
                            &service,
                            &presigned,
                            &file,
                            size,
                            &sha256,
                            options.client_chunk,
                        )
                        .await?;
                        put = Some(measured);
                    }
                    Write::Dd => {
                        settle_disk(settle).await;
                        evict()?;
                        dd = Some(physical::time_dd(&file, &physical::dd_target(work))?);
                    }
                }
            }
            let (put, dd) = put.zip(dd).context("a run lacks its PUT or dd")?;
            evict()?;
            let sha256sum = physical::time_sha256sum(&file, &sha256)?;
            evict()?;
            let sha2 = physical::time_sha2(&file, &sha256)?;

            eprintln!(
                "{} run {i}/{runs}: PUT {:.0} MB/s ({:.3} s after the last byte), peak RSS {:.1} MiB; sha256sum {:.0} MB/s, dd {:.0} MB/s, sha2 {:.0} MB/s",
                format_size(size),
                mbps(size, put.timing.total.as_secs_f64()),
                put.timing.total.saturating_sub(put.timing.body).as_secs_f64(),
                put.rss.peak_kib as f64 / 1024.0,
                mbps(size, sha256sum.as_secs_f64()),
                mbps(size, dd.as_secs_f64()),
                mbps(size, sha2.as_secs_f64()),
            );
            figures.push(Run {
                put: put.timing.total,
                put_body: put.timing.body,
                service_cpu: put.service_cpu,
                client_cpu: put.client_cpu,
                rss_peak_kib: put.rss.peak_kib,
                rss_samples: put.rss.samples,
                sha256sum,
                dd,
                sha2,
            });
        }
        std::fs::remove_file(&file)?;
        results.push(SizeResult {
            size,
            settle,
            runs: figures,
        });
    }

    let hwm_kib = rss::status_kib(pid, "VmHWM");
    service.stop()?;

    let cache_note = match options.cache {
        CacheMode::Warm => {
            "warm — the input file is read once before its runs and stays cached, so the \
            upload, `sha256sum` and `dd` all read it from memory and only their writes reach the \
            disk (no `drop_caches`)"
                .to_owned()
        }
        CacheMode::Cold => "cold — before every timed step the input file was evicted with \
            `posix_fadvise(DONTNEED)` (the file only; no `drop_caches`)"
            .to_owned(),
        CacheMode::Drop if evictions.contains(&Eviction::Fadvise) => "drop asked, but \
            `/proc/sys/vm/drop_caches` was refused: the input file was evicted with \
            `posix_fadvise(DONTNEED)` before every timed step"
            .to_owned(),
        CacheMode::Drop => "cold, machine-wide — `sync; echo 3 > /proc/sys/vm/drop_caches` \
            before every timed step"
            .to_owned(),
    };
    Ok(Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: command.to_owned(),
        machine,
        cache_note,
        client_chunk: options.client_chunk,
        baseline_rss_kib,
        hwm_kib,
        load_after: report::load_average(),
        results,
    })
}

/// A PUT with what was measured around it.
struct MeasuredPut {
    timing: PutTiming,
    rss: RssPeak,
    service_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
}

/// The timed PUT, with the service's RSS sampled and both sides' CPU time taken;
/// then deletes the stored object (untimed).
async fn measured_put(
    client: &reqwest::Client,
    service: &Service,
    presigned: &upload::Presigned,
    file: &Path,
    size: u64,
    sha256: &str,
    read_chunk: usize,
) -> Result<MeasuredPut> {
    let pid = service.pid();
    let cpu_before = (cpu_of(pid), rss::cpu_time("self"));
    let sampler = RssSampler::start(pid);
    let timing = upload::put(client, presigned, file, size, sha256, read_chunk).await;
    let rss = sampler.stop();
    let cpu_after = (cpu_of(pid), rss::cpu_time("self"));
    let timing = timing.map_err(|e| e.context(format!("service log:\n{}", service.log_tail())))?;
    remove_files_under(&service.blob_dir.join("images"))?;
    let used = |before: Option<Duration>, after: Option<Duration>| {
        before
            .zip(after)
            .map(|(before, after)| after.saturating_sub(before))
    };
    Ok(MeasuredPut {
        timing,
        rss,
        service_cpu: used(cpu_before.0, cpu_after.0),
        client_cpu: used(cpu_before.1, cpu_after.1),
    })
}

fn cpu_of(pid: u32) -> Option<Duration> {
    rss::cpu_time(&pid.to_string())
}

/// The two timed writes of a run.
#[derive(Clone, Copy)]
enum Write {
    Put,
    Dd,
}

/// `sync`, then wait: pending writeback (ours and other processes') and the deletion
/// of the previous output reach the device before the next timed write starts.
async fn settle_disk(pause: Duration) {
    let _ = tokio::process::Command::new("sync").status().await;
    tokio::time::sleep(pause).await;
}

/// Removes the objects the uploads stored (keeps the disk from filling up over many runs).
fn remove_files_under(dir: &Path) -> Result<()> {
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}
