//! An emulator of the parts of the **Google Drive API v3** and the **Dropbox API
//! v2** that Vitrine's Import Service uses, faithful to their wire formats, with
//! deterministic content and scriptable faults. Tests run it in-process on
//! `127.0.0.1:0`; demos and the benchmark run the `fake-providers` binary.
//!
//! # Layout
//! - `lib.rs` — [`FakeProviders`] (builder, router, serving), [`RunningFake`].
//! - [`catalog`] — folder specifications ([`Folder`], [`Generate`]), the node
//!   arena they become, stable ids, cached digests.
//! - [`content`] — file bytes generated on demand from `(seed, index)` (PNG, JPEG,
//!   PDF) or read from disk; MD5 / SHA-256 / Dropbox `content_hash`.
//! - `drive/` — `GET /drive/v3/files` (`list.rs`) and
//!   `GET /drive/v3/files/{id}[?alt=media]` (`get.rs`), `fields` partial
//!   responses (`fields.rs`), Google's error JSON (`error.rs`).
//! - `dropbox/` — `POST /2/files/list_folder[/continue]` (`list.rs`),
//!   `POST /2/sharing/get_shared_link_metadata` (`metadata.rs`) and
//!   `POST /2/sharing/get_shared_link_file` (`download.rs`), Dropbox's route errors.
//! - [`faults`] — [`FaultConfig`], [`Rule`], [`Schedule`], [`Fault`], [`Stats`].
//! - `admin.rs` — `/_fake/faults`, `/_fake/stats`, `/_fake/reset`, `/_fake/folders`.
//! - `respond.rs` — `Range`, truncated and broken bodies, HTML error pages.
//! - [`serve`] — the accept loop that lets a handler reset its own connection.
//!
//! # Use in a test
//! ```no_run
//! use fake_providers::{Fault, FakeProviders, Folder, Generate, RouteMatch, Rule};
//! # async fn demo() -> std::io::Result<()> {
//! let fake = FakeProviders::builder()
//!     .drive_folder(Folder::generated(Generate::images(2_500).subfolders(2).docs(1)))
//!     .dropbox_folder(Folder::generated(Generate::images(100)))
//!     .build()?;
//! let running = fake.serve_on_loopback().await?;
//! let (base, folder) = (&running.base_url, &running.drive_folders()[0].id);
//! running
//!     .faults()
//!     .add(Rule::new(RouteMatch::Download, Fault::ConnectionReset).first(3));
//! // … point the client at `base`, import `folder` …
//! assert_eq!(running.stats().fault("connection_reset"), 3);
//! # let _ = (base, folder);
//! running.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # One base URL for everything
//! Real Drive lives at `https://www.googleapis.com`, Dropbox RPC at
//! `https://api.dropboxapi.com` and Dropbox content at
//! `https://content.dropboxapi.com`. The emulator serves all three sets of paths
//! on its one base URL, so `GOOGLE_DRIVE_API_BASE`, `DROPBOX_API_BASE` and
//! `DROPBOX_CONTENT_BASE` all point at it.
//!
//! # Emulated
//! - Drive: `files.list` with `q` = `'<id>' in parents` [`and trashed = false`]
//!   [`and mimeType = / != '<type>'`], `pageSize` 1–1000 (default 100),
//!   `pageToken`/`nextPageToken`, `fields` partial responses (with Drive's default
//!   subset when absent, `400 invalidParameter` for unknown fields), `size` as a
//!   string, `md5Checksum`, `sha256Checksum`, `resourceKey`, `shortcutDetails`,
//!   `imageMediaMetadata.width/height` (generated images);
//!   `files.get` (metadata, `alt=media` with `Content-Length` and single `Range`);
//!   `key` (or `X-Goog-Api-Key`, or any `Authorization: Bearer`) required;
//!   resource keys via `X-Goog-Drive-Resource-Keys`; Google Docs
//!   (`403 fileNotDownloadable`); Google's error JSON.
//! - Dropbox: `files/list_folder` with `shared_link` (+ `path`, `limit`),
//!   `files/list_folder/continue`, `sharing/get_shared_link_metadata` (a link's
//!   folder: `.tag`, `name`, `id`), `sharing/get_shared_link_file` (`Dropbox-API-Arg`
//!   in, `Dropbox-API-Result` out, `Range`), the real `content_hash`, 409 route
//!   errors, 401 `invalid_access_token`, 400 plain-text call errors.
//!
//! # Not emulated
//! Writes of any kind, OAuth flows, `files.export`, Drive queries other than the
//! above (a `q` without `in parents` is a 400 here), `orderBy` (order is the
//! folder's creation order), shared drives, trashed files, per-file resource
//! keys (only a folder's own key is checked), Dropbox `recursive` listings and
//! listing a user's own Dropbox (only shared links), link passwords, the `path` of
//! `get_shared_link_metadata`, Dropbox
//! `/sh/` links, `arg` URL parameters. Real Dropbox omits `path_lower` /
//! `path_display` for shared-link listings; the emulator includes them (relative
//! to the link root): clients should not rely on them.

pub mod catalog;
pub mod content;
pub mod faults;
pub mod serve;

mod admin;
mod drive;
mod dropbox;
mod respond;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use catalog::{DriveFolder, DropboxLink, Folder, Generate};
pub use content::{dropbox_content_hash, Digests, ImageKind};
pub use faults::{
    Fault, FaultConfig, Faults, RateLimitReason, Route, RouteMatch, Rule, Schedule, Stats,
};

use catalog::{Catalog, Node};
use faults::StatsHandle;
use serve::ConnKiller;

/// The emulator: an immutable catalog plus live faults and statistics. Cheap to
/// clone (one `Arc`).
#[derive(Clone)]
pub struct FakeProviders(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) catalog: Catalog,
    pub(crate) faults: Faults,
    pub(crate) stats: StatsHandle,
    /// `None`: any non-empty `key` is accepted.
    pub(crate) drive_api_key: Option<String>,
    /// `None`: any non-empty bearer token is accepted.
    pub(crate) dropbox_token: Option<String>,
}

/// Builds a [`FakeProviders`].
#[derive(Default)]
pub struct Builder {
    drive: Vec<Folder>,
    dropbox: Vec<Folder>,
    drive_api_key: Option<String>,
    dropbox_token: Option<String>,
    faults: FaultConfig,
}

impl Builder {
    /// Shares a folder over Drive (ids: `FakeProviders::drive_folders`).
    pub fn drive_folder(mut self, folder: Folder) -> Self {
        self.drive.push(folder);
        self
    }

    /// Shares a folder over Dropbox (links: `FakeProviders::dropbox_links`).
    pub fn dropbox_folder(mut self, folder: Folder) -> Self {
        self.dropbox.push(folder);
        self
    }

    /// Only this Drive API key is valid (default: any non-empty key).
    pub fn drive_api_key(mut self, key: impl Into<String>) -> Self {
        self.drive_api_key = Some(key.into());
        self
    }

    /// Only this Dropbox bearer token is valid (default: any non-empty token).
    pub fn dropbox_token(mut self, token: impl Into<String>) -> Self {
        self.dropbox_token = Some(token.into());
        self
    }

    /// Faults in force from the start.
    pub fn faults(mut self, config: FaultConfig) -> Self {
        self.faults = config;
        self
    }

    /// Builds the catalog (walks directories; generates nothing yet).
    pub fn build(self) -> io::Result<FakeProviders> {
        let mut catalog = Catalog::default();
        for (i, folder) in self.drive.iter().enumerate() {
            catalog.add_folder(folder, true, i)?;
        }
        for (i, folder) in self.dropbox.iter().enumerate() {
            catalog.add_folder(folder, false, i)?;
        }
        let faults = Faults::default();
        faults.set(self.faults);
        Ok(FakeProviders(Arc::new(Inner {
            catalog,
            faults,
            stats: StatsHandle::default(),
            drive_api_key: self.drive_api_key,
            dropbox_token: self.dropbox_token,
        })))
    }
}

/// The outcome of the fault gate for a request that goes on.
#[derive(Debug, Default)]
pub(crate) struct Passed {
    pub truncate: Option<u64>,
    pub empty_listing: bool,
}

impl FakeProviders {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The Drive folders, in the order they were added.
    pub fn drive_folders(&self) -> &[DriveFolder] {
        &self.0.catalog.drive_folders
    }

    /// The Dropbox shared links, in the order they were added.
    pub fn dropbox_links(&self) -> &[DropboxLink] {
        &self.0.catalog.dropbox_links
    }

    /// Every node (files, folders, docs, shortcuts, shortcut targets).
    pub fn nodes(&self) -> &[Node] {
        &self.0.catalog.nodes
    }

    /// The node with this Drive id.
    pub fn drive_node(&self, id: &str) -> Option<&Node> {
        self.0
            .catalog
            .drive_node(id)
            .map(|i| &self.0.catalog.nodes[i])
    }

    /// The live fault configuration.
    pub fn faults(&self) -> &Faults {
        &self.0.faults
    }

    /// A snapshot of the request statistics.
    pub fn stats(&self) -> Stats {
        self.0.stats.snapshot()
    }

    /// Clears faults and statistics.
    pub fn reset(&self) {
        self.0.faults.clear();
        self.0.stats.reset();
    }

    /// Computes (and caches) the digests of every file, on blocking threads (half
    /// the cores, so serving goes on), so listings do not pay for them. Returns
    /// the number of files.
    pub async fn prewarm(&self) -> io::Result<usize> {
        let count = self.0.catalog.file_nodes().count();
        let workers = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        let mut tasks = Vec::new();
        for w in 0..workers {
            let me = self.clone();
            tasks.push(tokio::task::spawn_blocking(move || -> io::Result<()> {
                for (i, node) in me.0.catalog.file_nodes().enumerate() {
                    if i % workers == w {
                        node.digests()?;
                    }
                }
                Ok(())
            }));
        }
        for task in tasks {
            task.await.map_err(io::Error::other)??;
        }
        Ok(count)
    }

    /// The router: Drive, Dropbox and `/_fake` routes. Use [`serve::serve`] (or
    /// [`FakeProviders::serve_on`]) to run it: with plain `axum::serve` or
    /// `oneshot`, [`Fault::ConnectionReset`] degrades to a body that fails at once.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(drive::routes())
            .merge(dropbox::routes())
            .merge(admin::routes())
            .with_state(self.clone())
    }

    /// Serves on `listener` until the returned handle is shut down or dropped.
    pub fn serve_on(&self, listener: tokio::net::TcpListener) -> io::Result<RunningFake> {
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = serve::serve(listener, router, shutdown).await {
                tracing::error!(error = %e, "fake-providers server failed");
            }
        });
        Ok(RunningFake {
            base_url: format!("http://{addr}"),
            addr,
            fake: self.clone(),
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Binds `127.0.0.1:0` and serves there.
    pub async fn serve_on_loopback(&self) -> io::Result<RunningFake> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        self.serve_on(listener)
    }

    /// Statistics, latency and faults for one request, in that order. `Err` is
    /// a fault to render as the provider would; a connection reset never returns.
    pub(crate) async fn admit(
        &self,
        route: Route,
        keys: &[&str],
        killer: Option<&ConnKiller>,
    ) -> Result<Passed, Fault> {
        self.0.stats.request(route);
        let decision = self.0.faults.decide(route, keys);
        if !decision.delay.is_zero() {
            tokio::time::sleep(decision.delay).await;
        }
        let Some(fault) = decision.fault else {
            tracing::debug!(route = route.name(), ?keys, "request");
            return Ok(Passed::default());
        };
        tracing::debug!(
            route = route.name(),
            ?keys,
            fault = fault.name(),
            "request, fault injected"
        );
        self.0.stats.fault(&fault);
        match fault {
            Fault::ConnectionReset => match killer {
                Some(killer) => {
                    killer.kill();
                    std::future::pending().await
                }
                None => Err(Fault::ConnectionReset),
            },
            Fault::TruncatedBody { after_bytes } => Ok(Passed {
                truncate: Some(after_bytes),
                empty_listing: false,
            }),
            Fault::EmptyListing => Ok(Passed {
                truncate: None,
                empty_listing: true,
            }),
            other => Err(other),
        }
    }

    /// The exact size of a file, generating it once if only that tells.
    pub(crate) async fn file_size(&self, node: usize) -> io::Result<u64> {
        let n = &self.0.catalog.nodes[node];
        let Some(content) = n.content() else {
            return Ok(0);
        };
        if let Some(size) = content.known_size() {
            return Ok(size);
        }
        if let Some(d) = n.cached_digests() {
            return Ok(d.size);
        }
        if let content::Content::Disk { path } = content {
            return Ok(tokio::fs::metadata(path).await?.len());
        }
        self.digests_of(vec![node]).await?;
        Ok(n.cached_digests().map_or(0, |d| d.size))
    }

    /// Makes sure these nodes' digests are cached (on a blocking thread).
    pub(crate) async fn digests_of(&self, nodes: Vec<usize>) -> io::Result<()> {
        let missing: Vec<usize> = nodes
            .into_iter()
            .filter(|&i| {
                let n = &self.0.catalog.nodes[i];
                n.content().is_some() && n.cached_digests().is_none()
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            for i in missing {
                me.0.catalog.nodes[i].digests()?;
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// A running emulator. Dropping it (or [`RunningFake::shutdown`]) stops it.
pub struct RunningFake {
    /// `http://127.0.0.1:PORT`: the value of `GOOGLE_DRIVE_API_BASE`,
    /// `DROPBOX_API_BASE` and `DROPBOX_CONTENT_BASE`.
    pub base_url: String,
    pub addr: SocketAddr,
    fake: FakeProviders,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningFake {
    pub fn fake(&self) -> &FakeProviders {
        &self.fake
    }

    /// Stops accepting, drops open connections, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl std::ops::Deref for RunningFake {
    type Target = FakeProviders;

    fn deref(&self) -> &FakeProviders {
        &self.fake
    }
}

impl Drop for RunningFake {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
