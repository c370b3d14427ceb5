//! Fault injection (what goes wrong, where, and when) and request statistics.
//!
//! A [`FaultConfig`] is a fixed latency plus an ordered list of [`Rule`]s. Every
//! request to an emulated route is matched against every rule's [`RouteMatch`]
//! and optional `file`; each matching rule counts it, and its [`Schedule`]
//! decides from that count whether it fires. All firing [`Fault::Delay`]s add
//! up; of the other firing rules the first one in the list is applied. So the
//! outcome of the n-th matching request is a pure function of n (and, for
//! [`Schedule::Random`], of the rule's seed): tests can assert exact counts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The emulated routes, as counted in [`Stats`] and matched by rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `GET /drive/v3/files`
    DriveList,
    /// `GET /drive/v3/files/{id}` (metadata)
    DriveGet,
    /// `GET /drive/v3/files/{id}?alt=media`
    DriveDownload,
    /// `POST /2/files/list_folder` and `/2/files/list_folder/continue`
    DropboxList,
    /// `POST /2/sharing/get_shared_link_file`
    DropboxDownload,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::DriveList => "drive_list",
            Route::DriveGet => "drive_get",
            Route::DriveDownload => "drive_download",
            Route::DropboxList => "dropbox_list",
            Route::DropboxDownload => "dropbox_download",
        }
    }

    pub fn is_drive(self) -> bool {
        matches!(
            self,
            Route::DriveList | Route::DriveGet | Route::DriveDownload
        )
    }

    pub fn is_listing(self) -> bool {
        matches!(self, Route::DriveList | Route::DropboxList)
    }

    pub fn is_download(self) -> bool {
        matches!(self, Route::DriveDownload | Route::DropboxDownload)
    }
}

/// Which requests a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteMatch {
    Any,
    /// Drive and Dropbox listings.
    Listing,
    /// Drive and Dropbox downloads.
    Download,
    /// Drive `files.get` without `alt=media`.
    Metadata,
    DriveList,
    DriveGet,
    DriveDownload,
    DropboxList,
    DropboxDownload,
    /// Any Drive route.
    Drive,
    /// Any Dropbox route.
    Dropbox,
}

impl RouteMatch {
    pub fn matches(self, route: Route) -> bool {
        match self {
            RouteMatch::Any => true,
            RouteMatch::Listing => route.is_listing(),
            RouteMatch::Download => route.is_download(),
            RouteMatch::Metadata | RouteMatch::DriveGet => route == Route::DriveGet,
            RouteMatch::DriveList => route == Route::DriveList,
            RouteMatch::DriveDownload => route == Route::DriveDownload,
            RouteMatch::DropboxList => route == Route::DropboxList,
            RouteMatch::DropboxDownload => route == Route::DropboxDownload,
            RouteMatch::Drive => route.is_drive(),
            RouteMatch::Dropbox => !route.is_drive(),
        }
    }
}

/// When a rule fires, counting the requests that match it (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Every matching request.
    Always,
    /// The first `n` matching requests.
    First(u64),
    /// Matching requests number k, 2k, 3k, …
    Every(u64),
    /// Each matching request with this probability, drawn from an RNG seeded
    /// with `seed` (the same sequence of requests gets the same faults).
    Random { probability: f64, seed: u64 },
}

/// Drive's two rate-limit reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitReason {
    /// `rateLimitExceeded` ("Rate Limit Exceeded")
    RateLimitExceeded,
    /// `userRateLimitExceeded` ("User Rate Limit Exceeded")
    UserRateLimitExceeded,
}

/// What goes wrong. How each renders per provider is in the README's fault catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Wait `ms` more, then answer normally (adds to the global latency).
    Delay { ms: u64 },
    /// Drive: `status` (403 or 429) with `reason`; Dropbox: always 429
    /// `too_many_requests`. `retry_after` (seconds) → `Retry-After` header (and
    /// Dropbox's `retry_after` field); `None` → no header.
    RateLimited {
        #[serde(default = "default_rate_status")]
        status: u16,
        #[serde(default = "default_rate_reason")]
        reason: RateLimitReason,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// 429 with an HTML body (`text/html`), as a front end in trouble answers.
    Html429 {
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// A 5xx: 500 and 503 with the provider's error body, others with HTML.
    ServerError { status: u16 },
    /// The TCP connection is closed (with an RST) without any HTTP response.
    ConnectionReset,
    /// Status and headers (with the full `Content-Length`) are sent, then the
    /// connection is dropped after `after_bytes` bytes of body.
    TruncatedBody { after_bytes: u64 },
    /// Downloads only: Drive 403 `downloadQuotaExceeded`; Dropbox 409
    /// `shared_link_access_denied`.
    DownloadQuotaExceeded,
    /// The folder/file is not (or no longer) shared: Drive 404 `notFound`,
    /// Dropbox 409 `shared_link_not_found`.
    PrivateFolder,
    /// The file is gone: Drive 404 `notFound`, Dropbox 409 `path/not_found`.
    NotFound,
    /// Listings only: an empty page with no continuation.
    EmptyListing,
}

fn default_rate_status() -> u16 {
    403
}

fn default_rate_reason() -> RateLimitReason {
    RateLimitReason::RateLimitExceeded
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Delay { .. } => "delay",
            Fault::RateLimited { .. } => "rate_limited",
            Fault::Html429 { .. } => "html_429",
            Fault::ServerError { .. } => "server_error",
            Fault::ConnectionReset => "connection_reset",
            Fault::TruncatedBody { .. } => "truncated_body",
            Fault::DownloadQuotaExceeded => "download_quota_exceeded",
            Fault::PrivateFolder => "private_folder",
            Fault::NotFound => "not_found",
            Fault::EmptyListing => "empty_listing",
        }
    }

    /// Whether the fault means anything on `route` (others are ignored there).
    pub fn applies_to(&self, route: Route) -> bool {
        match self {
            Fault::DownloadQuotaExceeded => route.is_download(),
            Fault::EmptyListing => route.is_listing(),
            _ => true,
        }
    }
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default = "default_route")]
    pub route: RouteMatch,
    /// Only requests about this file or folder: a Drive id, a Dropbox id
    /// (`id:…`), a Dropbox path (`/sub/a.jpg`) or a file name.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    pub fault: Fault,
}

fn default_route() -> RouteMatch {
    RouteMatch::Any
}

fn default_schedule() -> Schedule {
    Schedule::Always
}

impl Rule {
    /// `fault` on every request matching `route`.
    pub fn new(route: RouteMatch, fault: Fault) -> Self {
        Rule {
            route,
            file: None,
            schedule: Schedule::Always,
            fault,
        }
    }

    /// Only for requests about `file` (id, path or name).
    pub fn file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn first(mut self, n: u64) -> Self {
        self.schedule = Schedule::First(n);
        self
    }

    pub fn every(mut self, k: u64) -> Self {
        self.schedule = Schedule::Every(k);
        self
    }

    pub fn random(mut self, probability: f64, seed: u64) -> Self {
        self.schedule = Schedule::Random { probability, seed };
        self
    }
}

/// Everything that can be configured about faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    /// Added to every emulated request (not to `/_fake` routes).
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl FaultConfig {
    pub fn latency(mut self, ms: u64) -> Self {
        self.latency_ms = ms;
        self
    }

    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
}

struct ActiveRule {
    rule: Rule,
    seen: u64,
    rng: u64,
}

impl ActiveRule {
    fn new(rule: Rule) -> Self {
        let rng = match rule.schedule {
            Schedule::Random { seed, .. } => crate::content::mix(seed, 0) | 1,
            _ => 1,
        };
        ActiveRule { rule, seen: 0, rng }
    }

    fn fires(&mut self) -> bool {
        self.seen += 1;
        match self.rule.schedule {
            Schedule::Always => true,
            Schedule::First(n) => self.seen <= n,
            Schedule::Every(k) => k > 0 && self.seen.is_multiple_of(k),
            Schedule::Random { probability, .. } => {
                // xorshift64*
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
                ((x >> 11) as f64 / (1u64 << 53) as f64) < probability
            }
        }
    }
}

#[derive(Default)]
struct FaultState {
    latency_ms: u64,
    rules: Vec<ActiveRule>,
}

/// What to do with one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Total wait before answering (latency plus delays).
    pub delay: Duration,
    /// The fault to apply, if any.
    pub fault: Option<Fault>,
}

/// A cheap handle on the live fault configuration (shared by clones).
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<FaultState>>);

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Faults").field(&self.config()).finish()
    }
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the configuration; rule counters start again from zero.
    pub fn set(&self, config: FaultConfig) {
        let mut state = self.lock();
        state.latency_ms = config.latency_ms;
        state.rules = config.rules.into_iter().map(ActiveRule::new).collect();
    }

    /// Appends one rule (its counter starts at zero).
    pub fn add(&self, rule: Rule) {
        self.lock().rules.push(ActiveRule::new(rule));
    }

    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency_ms = latency.as_millis() as u64;
    }

    /// No latency, no rules.
    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }

    pub fn config(&self) -> FaultConfig {
        let state = self.lock();
        FaultConfig {
            latency_ms: state.latency_ms,
            rules: state.rules.iter().map(|r| r.rule.clone()).collect(),
        }
    }

    /// Counts the request against every matching rule and decides its fate.
    /// `keys` are the ids/paths/names the request is about.
    pub fn decide(&self, route: Route, keys: &[&str]) -> Decision {
        let mut state = self.lock();
        let mut decision = Decision {
            delay: Duration::from_millis(state.latency_ms),
            fault: None,
        };
        for active in &mut state.rules {
            if !active.rule.route.matches(route) || !active.rule.fault.applies_to(route) {
                continue;
            }
            if let Some(file) = &active.rule.file {
                if !keys.iter().any(|k| k == file) {
                    continue;
                }
            }
            if !active.fires() {
                continue;
            }
            match &active.rule.fault {
                Fault::Delay { ms } => decision.delay += Duration::from_millis(*ms),
                fault if decision.fault.is_none() => decision.fault = Some(fault.clone()),
                _ => {}
            }
        }
        decision
    }
}

/// A snapshot of what the emulator has seen since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Emulated requests, all routes.
    pub total: u64,
    /// Requests per route (`drive_list`, `drive_get`, `drive_download`,
    /// `dropbox_list`, `dropbox_download`), faulted or not.
    pub routes: BTreeMap<String, u64>,
    /// Download attempts per file (Drive id or Dropbox id), faulted or not.
    pub downloads: BTreeMap<String, u64>,
    /// Downloads whose whole body was handed to the connection, per file.
    pub completed_downloads: BTreeMap<String, u64>,
    /// Listing requests per folder (Drive id, or Dropbox link id + path).
    pub listings: BTreeMap<String, u64>,
    /// Faults injected, per fault kind (`rate_limited`, `connection_reset`, …).
    pub faults: BTreeMap<String, u64>,
}

impl Stats {
    pub fn route(&self, route: Route) -> u64 {
        self.routes.get(route.name()).copied().unwrap_or(0)
    }

    pub fn fault(&self, name: &str) -> u64 {
        self.faults.get(name).copied().unwrap_or(0)
    }

    pub fn downloads_of(&self, file: &str) -> u64 {
        self.downloads.get(file).copied().unwrap_or(0)
    }
}

/// A cheap handle on the live statistics.
#[derive(Clone, Default, Debug)]
pub struct StatsHandle(Arc<Mutex<Stats>>);

impl StatsHandle {
    fn lock(&self) -> MutexGuard<'_, Stats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Stats {
        self.lock().clone()
    }

    pub fn reset(&self) {
        *self.lock() = Stats::default();
    }

    pub(crate) fn request(&self, route: Route) {
        let mut s = self.lock();
        s.total += 1;
        *s.routes.entry(route.name().to_owned()).or_default() += 1;
    }

    pub(crate) fn download(&self, file: &str) {
        *self.lock().downloads.entry(file.to_owned()).or_default() += 1;
    }

    pub(crate) fn completed(&self, file: &str) {
        *self
            .lock()
            .completed_downloads
            .entry(file.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn listing(&self, folder: &str) {
        *self.lock().listings.entry(folder.to_owned()).or_default() += 1;
    }

    pub(crate) fn fault(&self, fault: &Fault) {
        *self
            .lock()
            .faults
            .entry(fault.name().to_owned())
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(faults: &Faults, route: Route, keys: &[&str], n: usize) -> Vec<bool> {
        (0..n)
            .map(|_| faults.decide(route, keys).fault.is_some())
            .collect()
    }

    #[test]
    fn first_n_and_every_kth() {
        let faults = Faults::default();
        faults.add(Rule::new(RouteMatch::Download, Fault::ConnectionReset).first(2));
        assert_eq!(
            fired(&faults, Route::DriveDownload, &[], 4),
            [true, true, false, false]
        );
        faults.set(
            FaultConfig::default()
                .rule(Rule::new(RouteMatch::Listing, Fault::ServerError { status: 503 }).every(3)),
        );
        assert_eq!(
            fired(&faults, Route::DropboxList, &[], 6),
            [false, false, true, false, false, true]
        );
        // Other routes neither fire nor count.
        assert_eq!(fired(&faults, Route::DriveDownload, &[], 3), [false; 3]);
    }

    #[test]
    fn file_filter_and_route_applicability() {
        let faults = Faults::default();
        faults.add(Rule::new(RouteMatch::Any, Fault::DownloadQuotaExceeded).file("abc"));
        assert!(faults
            .decide(Route::DriveDownload, &["abc"])
            .fault
            .is_some());
        assert!(faults
            .decide(Route::DriveDownload, &["xyz"])
            .fault
            .is_none());
        // Quota faults mean nothing on a listing.
        assert!(faults.decide(Route::DriveList, &["abc"]).fault.is_none());
    }

    #[test]
    fn random_is_reproducible() {
        let run = || {
            let faults = Faults::default();
            faults.add(Rule::new(RouteMatch::Any, Fault::NotFound).random(0.3, 42));
            fired(&faults, Route::DriveGet, &[], 200)
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|x| **x).count();
        assert!((30..90).contains(&hits), "{hits}");
    }

    #[test]
    fn delays_add_up_and_first_fault_wins() {
        let faults = Faults::default();
        faults.set(
            FaultConfig::default()
                .latency(5)
                .rule(Rule::new(RouteMatch::Any, Fault::Delay { ms: 10 }))
                .rule(Rule::new(RouteMatch::Any, Fault::NotFound))
                .rule(Rule::new(RouteMatch::Any, Fault::ConnectionReset)),
        );
        let d = faults.decide(Route::DriveGet, &[]);
        assert_eq!(d.delay, Duration::from_millis(15));
        assert_eq!(d.fault, Some(Fault::NotFound));
    }

    #[test]
    fn config_json_round_trip() {
        let json = r#"{"latency_ms":20,"rules":[
            {"route":"download","file":"x","schedule":{"first":3},
             "fault":{"kind":"rate_limited","status":429,"reason":"user_rate_limit_exceeded","retry_after":2}},
            {"schedule":{"random":{"probability":0.5,"seed":7}},"fault":{"kind":"connection_reset"}},
            {"route":"listing","schedule":"always","fault":{"kind":"empty_listing"}}]}"#;
        let config: FaultConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.latency_ms, 20);
        assert_eq!(config.rules[0].schedule, Schedule::First(3));
        assert_eq!(config.rules[1].route, RouteMatch::Any);
        let back: FaultConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
    }
}
