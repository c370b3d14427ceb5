//! Flow 2 under fire: every fault `fake-providers` can inject, on Google Drive and on
//! Dropbox, on listings as well as downloads. Each import must end with every image of
//! the folder imported exactly once (as items, in the catalog, in storage, as objects),
//! or with the failed files (or the whole job) recorded with the right reason; failed
//! files come back with `POST /imports/{id}/retry`, and `GET /imports/{id}/events`
//! streams the progress.
//!
//! The fault matrix runs on SQLite + the SQL queue; one mixed-fault import also runs on
//! PostgreSQL + RabbitMQ with two workers (skipped without those backends).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::import::{seller, ImportOptions, ImportStack, Queue};
use common::Db;
use fake_providers::{FakeProviders, Fault, Folder, Generate, RateLimitReason, RouteMatch, Rule};
use futures::StreamExt;
use serde_json::Value;

const FINISH: Duration = Duration::from_secs(60);
/// Small images keep the matrix fast; big enough for a cut to land mid-body.
const IMAGE_BYTES: usize = 16 * 1024;

// ------------------------------------------------------------------- harness

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Drive,
    Dropbox,
}

use Provider::{Drive, Dropbox};

impl Provider {
    const BOTH: [Provider; 2] = [Drive, Dropbox];

    /// `POST /import/<path>`.
    fn path(self) -> &'static str {
        match self {
            Drive => "google-drive",
            Dropbox => "dropbox",
        }
    }
}

/// `count` small images in the root and `subfolders` subfolders, plus one PDF (skipped).
fn folder(count: usize, subfolders: usize) -> Folder {
    Folder::generated(
        Generate::images(count)
            .size(IMAGE_BYTES)
            .subfolders(subfolders)
            .non_images(1),
    )
    .name("Faulty folder")
}

/// An emulator sharing one folder over `provider`.
fn fake(provider: Provider, folder: Folder) -> FakeProviders {
    let builder = FakeProviders::builder();
    match provider {
        Drive => builder.drive_folder(folder),
        Dropbox => builder.dropbox_folder(folder),
    }
    .build()
    .expect("fake providers")
}

/// The image files `provider` shares, in catalog order, with the id the import records
/// as `source_id` and the key a fault rule matches them by (both: the provider's file id).
fn image_ids(fake: &FakeProviders, provider: Provider) -> Vec<String> {
    fake.nodes()
        .iter()
        .filter(|n| n.content().is_some() && n.mime().starts_with("image/") && n.parent.is_some())
        .filter(|n| (fake.drive_node(&n.drive_id).is_some()) == (provider == Drive))
        .map(|n| match provider {
            Drive => n.drive_id.clone(),
            Dropbox => n.dropbox_id.clone(),
        })
        .collect()
}

/// What a fault rule names a subfolder's listing by: its Drive id, or its Dropbox path.
fn subfolder_key(fake: &FakeProviders, provider: Provider, name: &str) -> String {
    let node = fake
        .nodes()
        .iter()
        .find(|n| {
            n.is_folder()
                && n.name == name
                && n.parent.is_some()
                && fake.drive_node(&n.drive_id).is_some() == (provider == Drive)
        })
        .expect("subfolder");
    match provider {
        Drive => node.drive_id.clone(),
        Dropbox => node.path.clone(),
    }
}

/// The image ids that live in the subfolder named `name`.
fn images_in(fake: &FakeProviders, provider: Provider, name: &str) -> BTreeSet<String> {
    let nodes = fake.nodes();
    let folder = nodes
        .iter()
        .position(|n| {
            n.is_folder()
                && n.name == name
                && n.parent.is_some()
                && fake.drive_node(&n.drive_id).is_some() == (provider == Drive)
        })
        .expect("subfolder");
    let ids: BTreeSet<String> = image_ids(fake, provider).into_iter().collect();
    nodes
        .iter()
        .filter(|n| n.parent == Some(folder))
        .map(|n| match provider {
            Drive => n.drive_id.clone(),
            Dropbox => n.dropbox_id.clone(),
        })
        .filter(|id| ids.contains(id))
        .collect()
}

fn options(extra: &[(&str, &str)]) -> ImportOptions {
    ImportOptions {
        extra: extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..ImportOptions::default()
    }
}

/// The embedded stack (SQLite + SQL queue, one in-process worker).
async fn start(fake: FakeProviders, extra: &[(&str, &str)], test: &str) -> ImportStack {
    ImportStack::start(fake, options(extra), test)
        .await
        .expect("the embedded stack needs no backend")
}

fn folder_url(stack: &ImportStack, provider: Provider) -> String {
    match provider {
        Drive => stack.fake.drive_folders()[0].url.clone(),
        Dropbox => stack.fake.dropbox_links()[0].url.clone(),
    }
}

/// Imports the shared folder as a fresh seller and waits for the end.
async fn import(stack: &ImportStack, provider: Provider) -> (String, Value) {
    let s = seller();
    let id = stack
        .import_ok(&s, provider.path(), &folder_url(stack, provider))
        .await;
    let job = stack.wait_finished(&s, &id, FINISH).await;
    (s, job)
}

fn id_of(job: &Value) -> &str {
    job["id"].as_str().expect("job id")
}

fn sources(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["source_id"].as_str().expect("source_id").to_owned())
        .collect()
}

/// Asserts that a list of source ids has no repeats and is exactly `expected`.
#[track_caller]
fn assert_same_once(what: &str, got: Vec<String>, expected: &BTreeSet<String>) {
    let set: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        set.len(),
        got.len(),
        "{what}: a source file appears twice: {got:?}"
    );
    let missing: Vec<_> = expected.difference(&set).collect();
    let extra: Vec<_> = set.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, unexpected {extra:?}"
    );
}

/// The job's imported items are exactly `expected`, each once.
async fn assert_items_imported(
    stack: &ImportStack,
    seller: &str,
    job: &Value,
    expected: &BTreeSet<String>,
) {
    let imported = stack.items(seller, id_of(job), Some("imported")).await;
    for item in &imported {
        assert!(item["image_id"].is_string(), "{item}");
        assert!(item["storage_path"].is_string(), "{item}");
    }
    assert_same_once("imported items", sources(&imported), expected);
    assert_eq!(job["counts"]["imported"], expected.len(), "{job}");
    assert_eq!(job["counts"]["in_progress"], 0, "{job}");
}

/// The seller's catalog and storage hold exactly `expected`, each once, and storage has
/// nothing else: no extra image rows (in any state) and no orphan or temporary objects.
/// (Each stack serves one seller, so storage-wide counts are this seller's.)
async fn assert_stored_once(stack: &ImportStack, seller: &str, expected: &BTreeSet<String>) {
    let images = stack.images(seller, None).await;
    let ids: BTreeSet<&str> = images
        .iter()
        .map(|i| i["image_id"].as_str().expect("image_id"))
        .collect();
    assert_eq!(ids.len(), images.len(), "an image is listed twice");
    assert_same_once("GET /images", sources(&images), expected);
    let n = expected.len() as i64;
    assert_eq!(
        stack.stored_images(seller).await,
        n,
        "complete images in storage"
    );
    assert_eq!(
        stack.storage_rows().await,
        n,
        "image rows in storage (any state)"
    );
    assert_eq!(
        stack.blob_files(),
        expected.len(),
        "files in the blob store"
    );
}

/// A completed job that imported every image of the folder exactly once.
async fn assert_all_imported_once(stack: &ImportStack, seller: &str, job: &Value, all: &[String]) {
    let expected: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(job["state"], "completed", "{job}");
    assert_no_failed_items(stack, seller, job).await;
    assert_eq!(job["pages"]["failed"], 0, "{job}");
    assert_items_imported(stack, seller, job, &expected).await;
    assert_stored_once(stack, seller, &expected).await;
}

/// No item failed (the failed ones, with their reasons, in the message if some did).
async fn assert_no_failed_items(stack: &ImportStack, seller: &str, job: &Value) {
    let failed = stack.items(seller, id_of(job), Some("failed")).await;
    let why: Vec<String> = failed
        .iter()
        .map(|i| format!("{} {}: {}", i["name"], i["reason"], i["detail"]))
        .collect();
    assert!(failed.is_empty(), "failed items: {why:#?}\njob: {job}");
    assert_eq!(job["counts"]["failed"], 0, "{job}");
}

#[track_caller]
fn assert_injected(stack: &ImportStack, fault: &str) {
    let stats = stack.fake.stats();
    assert!(
        stats.fault(fault) > 0,
        "the fault `{fault}` never fired: {:?}",
        stats.faults
    );
}

/// Faults for single files: file `i` of `ids` gets `faults[i % (n + 1)]` on its first
/// `times` downloads (`times` stays below IMPORT_MAX_ATTEMPTS), and every `(n + 1)`-th
/// file none. Per-file rules keep the outcome deterministic: a rule on "every k-th
/// download" can, with retries interleaving, hit one file more often than it may fail.
fn on_files(ids: &[String], faults: &[Fault], times: u64) -> Vec<Rule> {
    ids.iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let fault = faults.get(i % (faults.len() + 1))?;
            Some(
                Rule::new(RouteMatch::Download, fault.clone())
                    .file(id.clone())
                    .first(times),
            )
        })
        .collect()
}

/// How many times each fault kind of `rules` fires (rules made by [`on_files`]).
fn planned(rules: &[Rule], fault: &str) -> u64 {
    rules
        .iter()
        .filter(|r| r.fault.name() == fault)
        .map(|r| match r.schedule {
            fake_providers::Schedule::First(n) => n,
            _ => 0,
        })
        .sum()
}

/// Each file with a rule of [`on_files`] was asked for `times + 1` times (the faults,
/// then the download that worked), every other image once.
#[track_caller]
fn assert_downloads(stack: &ImportStack, all: &[String], rules: &[Rule]) {
    let stats = stack.fake.stats();
    for id in all {
        let faulted = rules
            .iter()
            .find(|r| r.file.as_deref() == Some(id.as_str()))
            .map_or(0, |r| match r.schedule {
                fake_providers::Schedule::First(n) => n,
                _ => 0,
            });
        assert_eq!(
            stats.downloads_of(id),
            faulted + 1,
            "downloads of {id}: {:?}",
            stats.downloads
        );
    }
}

/// Runs one fault scenario on `provider`: a folder of `count` images in three folders,
/// `faults` on single files (see [`on_files`]) and `listing` rules in force from the
/// start, an import, and the exactly-once checks. Returns the stack and the file rules.
async fn survives(
    provider: Provider,
    count: usize,
    faults: &[Fault],
    listing: Vec<Rule>,
    test: &str,
) -> (ImportStack, Vec<Rule>) {
    let fake = fake(provider, folder(count, 2));
    let all = image_ids(&fake, provider);
    assert_eq!(all.len(), count);
    let rules = on_files(&all, faults, 2);
    for rule in rules.iter().cloned().chain(listing) {
        fake.faults().add(rule);
    }
    let stack = start(fake, &[], test).await;
    let (s, job) = import(&stack, provider).await;
    assert_all_imported_once(&stack, &s, &job, &all).await;
    assert_downloads(&stack, &all, &rules);
    for fault in faults {
        assert!(
            stack.fake.stats().fault(fault.name()) >= planned(&rules, fault.name()),
            "{provider:?}: {:?}",
            stack.fake.stats().faults
        );
    }
    (stack, rules)
}

fn rate_limited(status: u16, reason: RateLimitReason, retry_after: Option<u64>) -> Fault {
    Fault::RateLimited {
        status,
        reason,
        retry_after,
    }
}

// ---------------------------------------------------------------- transient faults

#[tokio::test]
async fn latency_and_answers_slower_than_the_provider_timeout_are_retried() {
    for provider in Provider::BOTH {
        let fake = fake(provider, folder(24, 2));
        let all = image_ids(&fake, provider);
        // Every call is slow; three downloads answer only after the client gave up
        // (PROVIDER_TIMEOUT_SECS=1) and must be tried again.
        fake.faults().set_latency(Duration::from_millis(20));
        let slow: Vec<String> = [&all[0], &all[11], &all[23]].into_iter().cloned().collect();
        for id in &slow {
            fake.faults().add(
                Rule::new(RouteMatch::Download, Fault::Delay { ms: 1_600 })
                    .file(id.clone())
                    .first(1),
            );
        }
        fake.faults()
            .add(Rule::new(RouteMatch::Any, Fault::Delay { ms: 150 }).every(4));
        let stack = start(fake, &[("PROVIDER_TIMEOUT_SECS", "1")], "faults_latency").await;
        let (s, job) = import(&stack, provider).await;
        assert_all_imported_once(&stack, &s, &job, &all).await;
        for id in &slow {
            assert!(
                stack.fake.stats().downloads_of(id) >= 2,
                "{provider:?}: the timed-out download of {id} was not retried"
            );
        }
    }
}

#[tokio::test]
async fn drive_rate_limits_403_and_429_are_retried_honouring_retry_after() {
    use RateLimitReason::{RateLimitExceeded, UserRateLimitExceeded};
    let fake = fake(Drive, folder(24, 2));
    let all = image_ids(&fake, Drive);
    let mut rules = on_files(
        &all[1..],
        &[
            rate_limited(403, RateLimitExceeded, None),
            rate_limited(403, UserRateLimitExceeded, None),
            rate_limited(429, RateLimitExceeded, None),
            rate_limited(429, UserRateLimitExceeded, Some(1)),
        ],
        2,
    );
    // One file is told to come back in 2 s; the backoff alone is capped at
    // IMPORT_RETRY_MAX_SECS=1, so the job cannot end sooner unless Retry-After is obeyed.
    rules.push(
        Rule::new(
            RouteMatch::Download,
            rate_limited(403, UserRateLimitExceeded, Some(2)),
        )
        .file(all[0].clone())
        .first(1),
    );
    for rule in rules.iter().cloned().chain([
        // Listing pages, and the folder check (the API's, then the worker's).
        Rule::new(
            RouteMatch::DriveList,
            rate_limited(403, UserRateLimitExceeded, None),
        )
        .first(2),
        Rule::new(
            RouteMatch::Metadata,
            rate_limited(429, RateLimitExceeded, None),
        )
        .first(2),
    ]) {
        fake.faults().add(rule);
    }
    let stack = start(fake, &[], "faults_drive_rate_limits").await;
    let started = Instant::now();
    let (s, job) = import(&stack, Drive).await;
    let took = started.elapsed();
    assert_all_imported_once(&stack, &s, &job, &all).await;
    assert_downloads(&stack, &all, &rules);
    assert_eq!(
        stack.fake.stats().fault("rate_limited"),
        planned(&rules, "rate_limited") + 2 + 2
    );
    assert!(
        took >= Duration::from_secs(2),
        "finished {took:?} after start: Retry-After: 2 was not honoured"
    );
    // The API's folder check was rate-limited; the worker checked again and named it.
    assert_eq!(job["folder_name"], "Faulty folder", "{job}");
}

#[tokio::test]
async fn dropbox_429_is_retried_with_and_without_retry_after() {
    let fake = fake(Dropbox, folder(24, 2));
    let all = image_ids(&fake, Dropbox);
    let mut rules = on_files(
        &all[1..],
        &[
            rate_limited(429, RateLimitReason::RateLimitExceeded, None),
            rate_limited(429, RateLimitReason::RateLimitExceeded, Some(1)),
        ],
        2,
    );
    rules.push(
        Rule::new(
            RouteMatch::Download,
            rate_limited(429, RateLimitReason::RateLimitExceeded, Some(2)),
        )
        .file(all[0].clone())
        .first(1),
    );
    for rule in rules.iter().cloned().chain([
        // The API's folder check, then the worker's first listing calls.
        Rule::new(
            RouteMatch::Listing,
            rate_limited(429, RateLimitReason::RateLimitExceeded, None),
        )
        .first(3),
    ]) {
        fake.faults().add(rule);
    }
    let stack = start(fake, &[], "faults_dropbox_rate_limits").await;
    let started = Instant::now();
    let (s, job) = import(&stack, Dropbox).await;
    let took = started.elapsed();
    assert_all_imported_once(&stack, &s, &job, &all).await;
    assert_downloads(&stack, &all, &rules);
    assert_eq!(
        stack.fake.stats().fault("rate_limited"),
        planned(&rules, "rate_limited") + 3
    );
    assert!(
        took >= Duration::from_secs(2),
        "finished {took:?} after start: Retry-After: 2 was not honoured"
    );
}

#[tokio::test]
async fn html_429_and_server_errors_are_retried() {
    for provider in Provider::BOTH {
        survives(
            provider,
            30,
            &[
                Fault::Html429 { retry_after: None },
                Fault::ServerError { status: 500 },
                Fault::ServerError { status: 503 },
                // Not 500/503: an HTML page from the front end.
                Fault::ServerError { status: 502 },
                Fault::Html429 {
                    retry_after: Some(1),
                },
            ],
            vec![
                Rule::new(RouteMatch::Listing, Fault::ServerError { status: 503 }).first(2),
                Rule::new(RouteMatch::Metadata, Fault::Html429 { retry_after: None }).first(2),
            ],
            "faults_server_errors",
        )
        .await;
    }
}

#[tokio::test]
async fn connection_resets_are_retried() {
    for provider in Provider::BOTH {
        survives(
            provider,
            30,
            &[Fault::ConnectionReset],
            vec![
                Rule::new(RouteMatch::Listing, Fault::ConnectionReset).first(2),
                Rule::new(RouteMatch::Metadata, Fault::ConnectionReset).first(1),
            ],
            "faults_connection_reset",
        )
        .await;
    }
}

#[tokio::test]
async fn bodies_cut_off_mid_stream_are_retried_and_leave_no_partial_objects() {
    for provider in Provider::BOTH {
        // `survives` checks that storage kept no row and no object of a cut upload.
        survives(
            provider,
            30,
            &[
                Fault::TruncatedBody {
                    after_bytes: (IMAGE_BYTES / 2) as u64,
                },
                Fault::TruncatedBody { after_bytes: 0 },
                Fault::TruncatedBody {
                    after_bytes: IMAGE_BYTES as u64 - 1,
                },
            ],
            vec![Rule::new(
                RouteMatch::Listing,
                Fault::TruncatedBody { after_bytes: 40 },
            )
            .first(2)],
            "faults_truncated",
        )
        .await;
    }
}

#[tokio::test]
async fn mixed_faults_on_sqlite_and_the_sql_queue() {
    mixed_faults(ImportOptions::default(), "faults_mixed_sqlite").await;
}

#[tokio::test]
async fn mixed_faults_on_postgres_and_rabbitmq_with_two_workers() {
    let options = ImportOptions {
        db: Db::Postgres,
        queue: Queue::Amqp,
        in_process_workers: 2,
        extra: Vec::new(),
    };
    mixed_faults(options, "faults_mixed_postgres_amqp").await;
}

/// A Drive and a Dropbox folder imported at once by one seller through every transient
/// fault, then each image exactly once.
async fn mixed_faults(options: ImportOptions, test: &str) {
    let fake = FakeProviders::builder()
        .drive_folder(folder(40, 3))
        .dropbox_folder(folder(40, 3))
        .build()
        .expect("fake");
    let drive = image_ids(&fake, Drive);
    let dropbox = image_ids(&fake, Dropbox);
    let kinds = [
        Fault::ConnectionReset,
        Fault::TruncatedBody { after_bytes: 5_000 },
        rate_limited(429, RateLimitReason::RateLimitExceeded, None),
        Fault::ServerError { status: 503 },
        Fault::Html429 { retry_after: None },
        Fault::Delay { ms: 300 },
    ];
    let mut rules = on_files(&drive, &kinds, 2);
    rules.extend(on_files(&dropbox, &kinds, 2));
    for rule in rules.iter().cloned().chain([
        Rule::new(RouteMatch::Any, Fault::Delay { ms: 50 }).every(3),
        Rule::new(RouteMatch::Listing, Fault::ServerError { status: 500 }).first(2),
        Rule::new(RouteMatch::Listing, Fault::ConnectionReset)
            .file(subfolder_key(&fake, Drive, "Folder 02"))
            .first(1),
        Rule::new(RouteMatch::Listing, Fault::ConnectionReset)
            .file(subfolder_key(&fake, Dropbox, "Folder 03"))
            .first(1),
    ]) {
        fake.faults().add(rule);
    }
    let Some(stack) = ImportStack::start(fake, options, test).await else {
        return;
    };
    let s = seller();
    let drive_job = stack
        .import_ok(&s, Drive.path(), &folder_url(&stack, Drive))
        .await;
    let dropbox_job = stack
        .import_ok(&s, Dropbox.path(), &folder_url(&stack, Dropbox))
        .await;
    let mut everything = BTreeSet::new();
    for (job_id, ids) in [(&drive_job, &drive), (&dropbox_job, &dropbox)] {
        let job = stack.wait_finished(&s, job_id, FINISH).await;
        let expected: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(job["state"], "completed", "{job}");
        assert_no_failed_items(&stack, &s, &job).await;
        assert_eq!(job["pages"]["done"], 4, "{job}");
        assert_items_imported(&stack, &s, &job, &expected).await;
        everything.extend(expected);
    }
    assert_eq!(everything.len(), 80);
    assert_stored_once(&stack, &s, &everything).await;
    // Delays are not failures: those files are downloaded once; the others once per fault.
    let failing: Vec<Rule> = rules
        .into_iter()
        .filter(|r| r.fault.name() != "delay")
        .collect();
    let all: Vec<String> = drive.iter().chain(&dropbox).cloned().collect();
    assert_downloads(&stack, &all, &failing);
    for fault in [
        "connection_reset",
        "truncated_body",
        "rate_limited",
        "server_error",
        "html_429",
    ] {
        assert_injected(&stack, fault);
    }
}

// ---------------------------------------------------------------- permanent faults

#[tokio::test]
async fn download_quota_exceeded_fails_only_the_chosen_files() {
    for provider in Provider::BOTH {
        let fake = fake(provider, folder(24, 2));
        let all = image_ids(&fake, provider);
        let chosen: BTreeSet<String> = [&all[1], &all[10], &all[17]].into_iter().cloned().collect();
        for id in &chosen {
            fake.faults().add(
                Rule::new(RouteMatch::Download, Fault::DownloadQuotaExceeded).file(id.clone()),
            );
        }
        let stack = start(fake, &[], "faults_quota").await;
        let (s, job) = import(&stack, provider).await;
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!(job["counts"]["failed"], 3, "{job}");
        let rest: BTreeSet<String> = all
            .iter()
            .filter(|id| !chosen.contains(*id))
            .cloned()
            .collect();
        assert_items_imported(&stack, &s, &job, &rest).await;
        assert_stored_once(&stack, &s, &rest).await;

        let failed = stack.items(&s, id_of(&job), Some("failed")).await;
        assert_same_once("failed items", sources(&failed), &chosen);
        // Drive says `downloadQuotaExceeded`. Dropbox has no quota error of its own: the
        // emulator (like Dropbox for a link over its traffic limit) answers
        // `shared_link_access_denied`, which the client reads as a link it may not read.
        let reason = match provider {
            Drive => "download-quota-exceeded",
            Dropbox => "not-public",
        };
        for item in &failed {
            assert_eq!(item["status"], "failed", "{item}");
            assert_eq!(item["reason"], reason, "{provider:?}: {item}");
            assert!(
                item["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{item}"
            );
            assert!(item["image_id"].is_null(), "{item}");
            // Permanent: asked once, never retried.
            assert_eq!(item["attempts"], 1, "{item}");
            let id = item["source_id"].as_str().unwrap();
            assert_eq!(stack.fake.stats().downloads_of(id), 1, "{id} retried");
        }
        assert_eq!(stack.fake.stats().fault("download_quota_exceeded"), 3);
    }
}

#[tokio::test]
async fn transient_faults_beyond_max_attempts_fail_with_the_transient_reason() {
    for provider in Provider::BOTH {
        let fake = fake(provider, folder(20, 1));
        let all = image_ids(&fake, provider);
        let limited: BTreeSet<String> = [&all[2], &all[9]].into_iter().cloned().collect();
        let down = all[14].clone();
        for id in &limited {
            fake.faults().add(
                Rule::new(
                    RouteMatch::Download,
                    Fault::RateLimited {
                        status: 429,
                        reason: RateLimitReason::RateLimitExceeded,
                        retry_after: None,
                    },
                )
                .file(id.clone()),
            );
        }
        fake.faults().add(
            Rule::new(RouteMatch::Download, Fault::ServerError { status: 503 }).file(down.clone()),
        );
        let stack = start(fake, &[("IMPORT_MAX_ATTEMPTS", "3")], "faults_max_attempts").await;
        let (s, job) = import(&stack, provider).await;
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!(job["counts"]["failed"], 3, "{job}");
        let mut failing = limited.clone();
        failing.insert(down.clone());
        let rest: BTreeSet<String> = all
            .iter()
            .filter(|id| !failing.contains(*id))
            .cloned()
            .collect();
        assert_items_imported(&stack, &s, &job, &rest).await;
        assert_stored_once(&stack, &s, &rest).await;

        let failed = stack.items(&s, id_of(&job), Some("failed")).await;
        assert_same_once("failed items", sources(&failed), &failing);
        for item in &failed {
            let id = item["source_id"].as_str().unwrap();
            let reason = if id == down {
                "provider-unavailable"
            } else {
                "rate-limited"
            };
            assert_eq!(item["reason"], reason, "{provider:?}: {item}");
            assert_eq!(item["attempts"], 3, "{item}");
            assert_eq!(stack.fake.stats().downloads_of(id), 3, "{id}");
        }
    }
}

#[tokio::test]
async fn a_root_listing_that_keeps_failing_fails_the_job() {
    for provider in Provider::BOTH {
        let fake = fake(provider, folder(10, 1));
        fake.faults().add(Rule::new(
            RouteMatch::Listing,
            Fault::ServerError { status: 503 },
        ));
        let stack = start(fake, &[("IMPORT_MAX_ATTEMPTS", "2")], "faults_root_listing").await;
        let (s, job) = import(&stack, provider).await;
        assert_eq!(job["state"], "failed", "{job}");
        assert_eq!(job["error"]["code"], "provider-unavailable", "{job}");
        assert_eq!(job["pages"]["failed"], 1, "{job}");
        assert_eq!(job["counts"]["discovered"], 0, "{job}");
        assert!(job["finished_at"].is_string(), "{job}");
        assert_stored_once(&stack, &s, &BTreeSet::new()).await;
    }
}

#[tokio::test]
async fn a_folder_made_private_after_the_import_started_fails_the_job() {
    for provider in Provider::BOTH {
        let fake = fake(provider, folder(10, 1));
        let mut opts = options(&[]);
        opts.in_process_workers = 0;
        let mut stack = ImportStack::start(fake, opts, "faults_private_later")
            .await
            .expect("embedded stack");
        let s = seller();
        let id = stack
            .import_ok(&s, provider.path(), &folder_url(&stack, provider))
            .await;
        // Shared when the API checked it; not any more when the worker gets to it.
        stack
            .fake
            .faults()
            .add(Rule::new(RouteMatch::Any, Fault::PrivateFolder));
        stack.start_worker();
        let job = stack.wait_finished(&s, &id, FINISH).await;
        assert_eq!(job["state"], "failed", "{job}");
        assert_eq!(job["error"]["code"], "not-public", "{provider:?}: {job}");
        assert!(
            job["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{job}"
        );
        assert_eq!(job["counts"]["discovered"], 0, "{job}");
        assert_stored_once(&stack, &s, &BTreeSet::new()).await;
    }
}

#[tokio::test]
async fn a_private_folder_is_refused_at_the_start_and_nothing_is_created() {
    for provider in Provider::BOTH {
        let fake = fake(provider, folder(10, 1));
        // The API's check is Drive's `files.get` on the folder, Dropbox's `list_folder`.
        fake.faults()
            .add(Rule::new(RouteMatch::Any, Fault::PrivateFolder));
        let stack = start(fake, &[], "faults_private_at_start").await;
        let s = seller();
        let answer = stack
            .start_import(&s, provider.path(), &folder_url(&stack, provider))
            .await;
        // Both clients report a folder they may not see as not public: Drive answers
        // 404 for private and missing folders alike, Dropbox `shared_link_not_found`.
        common::assert_error(&answer, 422, "folder-not-public");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, _, page) = stack.get("/imports", &s).await;
        assert_eq!(status, 200);
        assert_eq!(
            page["items"],
            serde_json::json!([]),
            "a job was created: {page}"
        );
        // Only the check reached the provider: no worker listed anything.
        assert_eq!(stack.fake.stats().total, 1, "{:?}", stack.fake.stats());
        assert_stored_once(&stack, &s, &BTreeSet::new()).await;
    }
}

#[tokio::test]
async fn an_empty_listing_completes_with_no_images() {
    for provider in Provider::BOTH {
        let fake = fake(provider, folder(10, 1));
        fake.faults()
            .add(Rule::new(RouteMatch::Listing, Fault::EmptyListing));
        let stack = start(fake, &[], "faults_empty").await;
        let (s, job) = import(&stack, provider).await;
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!(job["counts"]["discovered"], 0, "{job}");
        assert_eq!(job["counts"]["imported"], 0, "{job}");
        assert_eq!(job["pages"]["done"], 1, "{job}");
        assert!(stack.items(&s, id_of(&job), None).await.is_empty());
        assert_stored_once(&stack, &s, &BTreeSet::new()).await;
        assert_eq!(
            stack
                .fake
                .stats()
                .route(fake_providers::Route::DriveDownload),
            0
        );
        assert_eq!(
            stack
                .fake
                .stats()
                .route(fake_providers::Route::DropboxDownload),
            0
        );
    }
}

// ------------------------------------------------------------------- retry

#[tokio::test]
async fn failed_files_and_pages_are_imported_by_retry_once_the_fault_is_gone() {
    for provider in Provider::BOTH {
        let fake = fake(provider, folder(24, 2));
        let all = image_ids(&fake, provider);
        let quota: BTreeSet<String> = [&all[0], &all[7]].into_iter().cloned().collect();
        for id in &quota {
            fake.faults().add(
                Rule::new(RouteMatch::Download, Fault::DownloadQuotaExceeded).file(id.clone()),
            );
        }
        // One subfolder cannot be listed (transient, but beyond IMPORT_MAX_ATTEMPTS).
        let sub = subfolder_key(&fake, provider, "Folder 02");
        let unlisted = images_in(&fake, provider, "Folder 02");
        assert!(!unlisted.is_empty());
        fake.faults()
            .add(Rule::new(RouteMatch::Listing, Fault::ServerError { status: 500 }).file(sub));
        let stack = start(fake, &[("IMPORT_MAX_ATTEMPTS", "2")], "faults_retry").await;
        let (s, job) = import(&stack, provider).await;
        let id = id_of(&job).to_owned();
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!(job["pages"]["failed"], 1, "{job}");
        assert_eq!(job["counts"]["failed"], 2, "{job}");
        let first: BTreeSet<String> = all
            .iter()
            .filter(|i| !quota.contains(*i) && !unlisted.contains(*i))
            .cloned()
            .collect();
        assert_items_imported(&stack, &s, &job, &first).await;
        assert_stored_once(&stack, &s, &first).await;

        // `?status=failed` lists exactly the failed files, with their reasons.
        let failed = stack.items(&s, &id, Some("failed")).await;
        assert_same_once("failed items", sources(&failed), &quota);
        assert!(failed.iter().all(|i| i["reason"].is_string()), "{failed:?}");

        // The fault is gone: retry puts the failed files and the failed page back in line.
        stack.fake.faults().clear();
        let retry =
            common::send(stack.request(reqwest::Method::POST, &format!("/imports/{id}/retry"), &s))
                .await;
        assert_eq!(retry.0, 202, "{}", retry.2);
        assert_eq!(retry.2["retried_items"], 2, "{}", retry.2);
        assert_eq!(retry.2["retried_pages"], 1, "{}", retry.2);
        assert!(
            !matches!(
                retry.2["job"]["state"].as_str(),
                Some("completed" | "failed")
            ),
            "{}",
            retry.2
        );
        let job = stack.wait_finished(&s, &id, FINISH).await;
        assert_all_imported_once(&stack, &s, &job, &all).await;
        assert!(stack.items(&s, &id, Some("failed")).await.is_empty());

        // Nothing left to retry: a no-op that leaves the job completed.
        let again =
            common::send(stack.request(reqwest::Method::POST, &format!("/imports/{id}/retry"), &s))
                .await;
        assert_eq!(again.0, 202, "{}", again.2);
        assert_eq!(again.2["retried_items"], 0);
        assert_eq!(again.2["retried_pages"], 0);
        assert_eq!(again.2["job"]["state"], "completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_stored_once(&stack, &s, &all.iter().cloned().collect()).await;
    }
}

// ------------------------------------------------------------------- events

/// One server-sent event: its name and JSON data.
#[derive(Debug)]
struct SseEvent {
    name: String,
    data: Value,
}

/// Reads `GET /imports/{id}/events` until the server ends the stream.
async fn read_events(stack: &ImportStack, seller: &str, job_id: &str) -> Vec<SseEvent> {
    let response = stack
        .request(
            reqwest::Method::GET,
            &format!("/imports/{job_id}/events"),
            seller,
        )
        .send()
        .await
        .expect("events request");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("event stream broke off");
            buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut name = "message".to_owned();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data.join("\n")).expect("event data is JSON");
                events.push(SseEvent { name, data });
            }
        }
    };
    tokio::time::timeout(FINISH, read)
        .await
        .expect("the event stream did not end after the import finished");
    events
}

#[tokio::test]
async fn events_stream_progress_then_one_done_event() {
    let fake = fake(Drive, folder(20, 1));
    // Slow downloads, two at a time: the import lasts a few event polls.
    fake.faults()
        .add(Rule::new(RouteMatch::Download, Fault::Delay { ms: 120 }));
    let stack = start(fake, &[("IMPORT_WORKER_CONCURRENCY", "2")], "faults_events").await;
    let s = seller();
    let id = stack
        .import_ok(&s, Drive.path(), &folder_url(&stack, Drive))
        .await;
    let events = read_events(&stack, &s, &id).await;

    let (last, progress) = events.split_last().expect("no events");
    assert_eq!(last.name, "done", "{events:?}");
    assert_eq!(last.data["id"], id.as_str());
    assert_eq!(last.data["state"], "completed", "{:?}", last.data);
    assert_eq!(last.data["counts"]["imported"], 20, "{:?}", last.data);
    assert!(progress.len() >= 2, "expected progress events: {events:?}");
    let mut seen = -1;
    for event in progress {
        assert_eq!(event.name, "progress", "{events:?}");
        assert_eq!(event.data["id"], id.as_str());
        assert!(!matches!(
            event.data["state"].as_str(),
            Some("completed" | "failed")
        ));
        let imported = event.data["counts"]["imported"].as_i64().unwrap();
        assert!(imported >= seen, "progress went backwards: {events:?}");
        seen = imported;
    }
    assert!(seen < 20, "no progress event before the end: {events:?}");

    // A finished import: one `done` event, then the stream ends.
    let again = read_events(&stack, &s, &id).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].name, "done");
    assert_eq!(again[0].data["counts"]["imported"], 20);
}
