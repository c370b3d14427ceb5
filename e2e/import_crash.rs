//! Issue 5: worker processes killed with SIGKILL during a 2,000-image import lose
//! nothing and duplicate nothing.
//!
//! Two `vitrine serve import-worker` processes import a Google Drive folder of 2,000
//! small images (a root of 1,001 entries, so two pages, and a subfolder of 1,000: three
//! listing tasks). Each time the job's imported count passes 300, 900 and 1,500, one
//! worker (in turn: the first, the second, the first's replacement) is killed with
//! SIGKILL while it holds tasks, and a replacement process is started. The job must
//! then complete with every image exactly once: as an item, in the catalog
//! (`GET /images`), as a complete image in storage, and as one object on disk, with no
//! image row in any other state and no temp file of an aborted write left behind.
//!
//! Downloads are delayed a little (`Fault::Delay`) so that each worker always has files
//! in every stage (waiting for the provider, streaming into storage, committing), and
//! the test checks that the kills really interrupted work: items the job showed as
//! `importing` right after a kill come back for a second claim (for at least two of the
//! three kills: a kill can, rarely, land while its victim holds no file).
//!
//! Storage's sweeper does not run in this harness, so nothing is tidied behind the
//! test's back: the blob directory, including storage's `.incoming/` temp files, must
//! hold exactly the 2,000 objects. A write still open when the job completes (a task
//! redelivered while its item was being imported elsewhere, streaming a duplicate that
//! storage will discard) gets up to 10 s to end before leftovers count as orphans.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::import::{seller, ImportOptions, ImportStack, Queue};
use common::{Db, ServiceProcess};
use fake_providers::{
    FakeProviders, Fault, FaultConfig, Folder, Generate, Route, RouteMatch, Rule,
};
use serde_json::Value;

const IMAGES: usize = 2_000;
/// Imported counts after which a worker is killed.
const KILL_AFTER: [i64; 3] = [300, 900, 1_500];
/// Added to every download, before its first byte.
const DOWNLOAD_DELAY_MS: u64 = 10;
/// The whole test (import, kills, checks) must fit in this.
const BUDGET: Duration = Duration::from_secs(100);

/// What the test saw at one kill.
#[derive(Debug)]
struct Kill {
    slot: usize,
    imported_before: i64,
    /// Items the job showed as `importing` just before the kill, with their attempts.
    importing: Vec<(String, i64)>,
    /// Uncommitted blob writes (`.incoming/*.part`) storage had just before the kill.
    temp_files: usize,
    at: Duration,
}

/// Files under `dir` (recursively).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                1
            }
        })
        .sum()
}

/// The temp files (`.incoming/*.part`) still there after `within` (sooner if there are
/// none): (name, size, age).
async fn temp_files_after(incoming: &Path, within: Duration) -> Vec<(String, u64, Duration)> {
    let deadline = Instant::now() + within;
    loop {
        let found: Vec<(String, u64, Duration)> = std::fs::read_dir(incoming)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        let meta = e.metadata().ok()?;
                        let age = meta.modified().ok()?.elapsed().unwrap_or_default();
                        Some((
                            e.file_name().to_string_lossy().into_owned(),
                            meta.len(),
                            age,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn spawn_worker(stack: &ImportStack, n: usize) -> ServiceProcess {
    // One log directory per process: every worker's log file has the same name.
    let logs = stack.dir.path().join(format!("worker-{n}"));
    std::fs::create_dir_all(&logs).expect("log dir");
    stack.spawn_worker_process(&logs).await
}

/// `GET /imports/{id}` until `imported` reaches `at_least`; returns the job.
async fn wait_imported(
    stack: &ImportStack,
    seller: &str,
    job: &str,
    at_least: i64,
    deadline: Instant,
) -> Value {
    loop {
        let (status, _, body) = stack.get(&format!("/imports/{job}"), seller).await;
        assert_eq!(status, 200, "{body}");
        if body["counts"]["imported"].as_i64().unwrap_or(0) >= at_least {
            return body;
        }
        assert_ne!(
            body["state"], "completed",
            "the job completed before {at_least} imports: {body}"
        );
        assert_ne!(body["state"], "failed", "{body}");
        assert!(
            Instant::now() < deadline,
            "imported count never reached {at_least}; last: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn killed_workers_lose_nothing(db: Db, queue: Queue, test: &str) {
    let started = Instant::now();
    let deadline = started + BUDGET;
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(IMAGES).size(4 * 1024).subfolders(1),
        ))
        .faults(FaultConfig::default().rule(Rule::new(
            RouteMatch::Download,
            Fault::Delay {
                ms: DOWNLOAD_DELAY_MS,
            },
        )))
        .build()
        .expect("fake providers");
    let options = ImportOptions {
        db,
        queue,
        in_process_workers: 0,
        extra: Vec::new(),
    };
    let Some(stack) = ImportStack::start(fake, options, test).await else {
        return;
    };
    let blobs = stack.dir.path().join("blobs");
    let expected_sources: BTreeSet<String> = stack
        .fake
        .nodes()
        .iter()
        .filter(|n| n.content().is_some())
        .map(|n| n.drive_id.clone())
        .collect();
    assert_eq!(expected_sources.len(), IMAGES);

    let mut spawned = 0;
    let mut workers = Vec::new();
    for _ in 0..2 {
        workers.push(spawn_worker(&stack, spawned).await);
        spawned += 1;
    }
    let s = seller();
    let url = stack.fake.drive_folders()[0].url.clone();
    let job_id = stack.import_ok(&s, "google-drive", &url).await;

    // Act: three kills, each while work is in flight, each followed by a replacement.
    let mut kills = Vec::new();
    for (k, threshold) in KILL_AFTER.into_iter().enumerate() {
        let job = wait_imported(&stack, &s, &job_id, threshold, deadline).await;
        let temp_files = files_under(&blobs.join(".incoming"));
        let slot = k % 2;
        let victim = &mut workers[slot];
        let victim_url = victim.url.clone();
        victim.kill();
        // What was in flight, read after the kill: the victim's files stay `importing`
        // until their lease runs out, whereas a list read before the kill could see them
        // all finish in between (a file takes a few ms), and so show nothing interrupted.
        let importing: Vec<(String, i64)> = stack
            .items(&s, &job_id, Some("importing"))
            .await
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().expect("item id").to_owned(),
                    i["attempts"].as_i64().expect("attempts"),
                )
            })
            .collect();
        // It is gone: its health endpoint no longer answers.
        assert!(
            stack
                .http
                .get(format!("{victim_url}/readyz"))
                .send()
                .await
                .is_err(),
            "worker in slot {slot} still answers after SIGKILL"
        );
        kills.push(Kill {
            slot,
            imported_before: job["counts"]["imported"].as_i64().unwrap_or(0),
            importing,
            temp_files,
            at: started.elapsed(),
        });
        workers[slot] = spawn_worker(&stack, spawned).await;
        spawned += 1;
    }
    let last_kill = started.elapsed();

    let job = stack
        .wait_finished(
            &s,
            &job_id,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await;
    let finished = started.elapsed();

    // Assert: the job completed with every file imported once, nothing failed.
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["counts"]["imported"], IMAGES, "{job}");
    assert_eq!(job["counts"]["failed"], 0, "{job}");
    assert_eq!(job["counts"]["skipped"], 0, "{job}");
    assert_eq!(job["counts"]["in_progress"], 0, "{job}");
    let items = stack.items(&s, &job_id, None).await;
    assert_eq!(items.len(), IMAGES, "items");
    let not_imported: Vec<&Value> = items.iter().filter(|i| i["status"] != "imported").collect();
    assert!(
        not_imported.is_empty(),
        "items not imported: {not_imported:?}"
    );
    let item_sources: BTreeSet<String> = items
        .iter()
        .map(|i| i["source_id"].as_str().expect("source_id").to_owned())
        .collect();
    assert_eq!(
        item_sources, expected_sources,
        "imported files differ from the folder's"
    );
    let item_images: HashSet<&str> = items
        .iter()
        .map(|i| {
            i["image_id"]
                .as_str()
                .expect("imported item without image_id")
        })
        .collect();
    assert_eq!(item_images.len(), IMAGES, "two items share an image");

    // The kills interrupted work: some of the items `importing` right after a kill were
    // claimed again afterwards (their task came back). Items an earlier snapshot already
    // showed are left out: they may be an earlier victim's, not yet claimed again.
    // At least two of the three kills must have: a SIGKILL can, rarely, land while the
    // victim holds no file (one CI run on a quick host saw it, 16 files in flight, all
    // the survivor's), which says nothing about what is lost; one such kill is allowed.
    let attempts: std::collections::HashMap<&str, i64> = items
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id"),
                i["attempts"].as_i64().expect("attempts"),
            )
        })
        .collect();
    let mut earlier: HashSet<&str> = HashSet::new();
    let mut interrupted = Vec::new();
    for kill in &kills {
        let n = kill
            .importing
            .iter()
            .filter(|(id, _)| !earlier.contains(id.as_str()))
            .filter(|(id, before)| {
                attempts
                    .get(id.as_str())
                    .is_some_and(|after| after > before)
            })
            .count();
        interrupted.push(n);
        earlier.extend(kill.importing.iter().map(|(id, _)| id.as_str()));
    }
    let idle_kills: Vec<&Kill> = kills
        .iter()
        .zip(&interrupted)
        .filter(|(_, n)| **n == 0)
        .map(|(kill, _)| kill)
        .collect();
    assert!(
        idle_kills.len() <= 1,
        "{} of {} kills interrupted nothing: {idle_kills:?}",
        idle_kills.len(),
        kills.len()
    );
    let downloads = stack.fake.stats().route(Route::DriveDownload);
    assert!(
        downloads > IMAGES as u64,
        "no download was repeated: {downloads}"
    );

    // The catalog lists each image once, and they are the items' images.
    let images = stack.images(&s, None).await;
    assert_eq!(images.len(), IMAGES, "GET /images");
    let listed: HashSet<&str> = images
        .iter()
        .map(|i| i["image_id"].as_str().expect("image_id"))
        .collect();
    assert_eq!(
        listed, item_images,
        "GET /images differs from the items' images"
    );
    let listed_sources: BTreeSet<String> = images
        .iter()
        .map(|i| i["source_id"].as_str().expect("source_id").to_owned())
        .collect();
    assert_eq!(listed_sources, expected_sources);

    // Storage holds exactly those images, all complete, one object each, no leftovers.
    let not_complete: Vec<String> = {
        use sqlx::Row;
        sqlx::query("SELECT id, state, storage_key FROM images WHERE state <> 'complete'")
            .fetch_all(stack.storage.repo.pool())
            .await
            .expect("storage images")
            .iter()
            .map(|r| {
                let id: String = r.try_get("id").expect("id");
                let state: String = r.try_get("state").expect("state");
                let key: String = r.try_get("storage_key").expect("storage_key");
                let listed = if item_images.contains(id.as_str()) {
                    "in"
                } else {
                    "not in"
                };
                let object = if blobs.join(&key).is_file() {
                    "has"
                } else {
                    "has no"
                };
                format!("{id} {state}: {listed} the catalog, {object} object")
            })
            .collect()
    };
    assert!(
        not_complete.is_empty(),
        "storage images not complete: {not_complete:#?}"
    );
    assert_eq!(
        stack.stored_images(&s).await,
        IMAGES as i64,
        "complete images in storage"
    );
    assert_eq!(
        stack.storage_rows().await,
        IMAGES as i64,
        "image rows in storage (any state)"
    );
    let complete: HashSet<String> = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM images WHERE state = 'complete'")
            .fetch_all(stack.storage.repo.pool())
            .await
            .expect("storage images")
            .iter()
            .map(|r| r.try_get::<String, _>("id").expect("id"))
            .collect()
    };
    let complete: HashSet<&str> = complete.iter().map(String::as_str).collect();
    assert_eq!(
        complete, item_images,
        "storage's complete images differ from the catalog's"
    );
    // A task redelivered while its item was still being imported elsewhere may still be
    // streaming a duplicate (storage discards it): give such writes a moment to end.
    let leftovers = temp_files_after(&blobs.join(".incoming"), Duration::from_secs(10)).await;
    assert!(
        leftovers.is_empty(),
        "temp files of aborted writes left behind: {leftovers:?}"
    );
    assert_eq!(stack.blob_files(), IMAGES, "objects on disk");

    let repeated = attempts.values().filter(|a| **a >= 2).count();
    eprintln!(
        "{test}: {IMAGES} images, {} kills at {:?}; last kill at {last_kill:?}, completed at {finished:?}, \
         checks done at {:?}; {repeated} items claimed more than once, {downloads} downloads",
        kills.len(),
        kills
            .iter()
            .zip(&interrupted)
            .map(|(k, n)| format!(
                "slot {} after {} imported at {:?} ({} importing, {n} of them claimed again; \
                 {} storage writes open)",
                k.slot,
                k.imported_before,
                k.at,
                k.importing.len(),
                k.temp_files,
            ))
            .collect::<Vec<_>>(),
        started.elapsed()
    );
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_workers_lose_nothing_sqlite_sql_queue() {
    killed_workers_lose_nothing(Db::Embedded, Queue::Sql, "import_crash_sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_workers_lose_nothing_postgres_rabbitmq() {
    killed_workers_lose_nothing(Db::Postgres, Queue::Amqp, "import_crash_postgres_amqp").await;
}
