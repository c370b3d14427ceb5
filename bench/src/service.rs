//! The storage-service under test: a child process with fresh keys, a fresh SQLite
//! database and a `file://` blob store in the work directory.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shared_signing::{KeyId, KeyRing};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Service {
    child: Child,
    pub base_url: String,
    pub app_keys: KeyRing,
    pub blob_dir: PathBuf,
    pub log: PathBuf,
}

impl Service {
    /// Starts `binary` with everything under `dir`, accepting bodies up to `max_upload`.
    pub fn start(binary: &Path, dir: &Path, max_upload: u64) -> Result<Service> {
        if !binary.is_file() {
            bail!(
                "no storage-service binary at {} (build it: cargo build --release -p storage-service, or pass --service)",
                binary.display()
            );
        }
        let app_keys = KeyRing::generate(KeyId::new("benchapp")?);
        let import_keys = KeyRing::generate(KeyId::new("benchimport")?);
        let url_keys = KeyRing::generate(KeyId::new("benchurl")?);
        let bind = free_loopback_port()?;
        let base_url = format!("http://{bind}");
        let blob_dir = dir.join("blobs");
        let log = dir.join("storage-service.log");
        let log_file = File::create(&log)?;
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("STORAGE_BIND", bind.to_string())
            .env("STORAGE_PUBLIC_URL", &base_url)
            .env(
                "STORAGE_DATABASE_URL",
                format!("sqlite://{}", dir.join("storage.db").display()),
            )
            .env("BLOB_STORE", format!("file://{}", blob_dir.display()))
            .env("APP_STORAGE_KEYS", app_keys.to_env_value())
            .env("IMPORT_STORAGE_KEYS", import_keys.to_env_value())
            .env("URL_SIGNING_KEYS", url_keys.to_env_value())
            .env("MAX_UPLOAD_BYTES", max_upload.to_string())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Service {
            child,
            base_url,
            app_keys,
            blob_dir,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `GET /readyz` until it answers 200.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/readyz", self.base_url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "storage-service exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(response) = client.get(&url).send().await {
                if response.status() == reqwest::StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "storage-service not ready after {READY_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the service's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then wait (SIGKILL if it does not stop in time).
    pub fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("storage-service ignored SIGTERM for {STOP_TIMEOUT:?}; killed it")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Error paths: never leave the child behind.
        let _ = self.terminate();
    }
}

fn free_loopback_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
