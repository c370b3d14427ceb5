//! `vitrine up --demo`: the Drive + Dropbox emulator ([`fake_providers`]) in the
//! launcher's process, sharing one generated sample folder, so the import can be tried
//! offline. The import services get its base URL as their provider endpoints.

use std::net::SocketAddr;

use fake_providers::{FakeProviders, Folder, Generate, RunningFake};

/// Where the emulator listens, and the default.
pub const DEMO_BIND: (&str, &str) = ("DEMO_PROVIDERS_BIND", "127.0.0.1:9900");

/// How many images the sample folder holds (`DEMO_IMAGES`, default 300, 1–100,000).
pub const DEMO_IMAGES: (&str, usize) = ("DEMO_IMAGES", 300);

/// The sample folder: `images` images of ~50 KiB (PNG and JPEG in turn) over the root
/// and 3 + 9 nested subfolders, 3 PDFs, 2 Google Docs (Drive only) and one broken
/// `.jpg` that storage refuses. Fixed seed: the same folder, ids and URLs every run.
pub fn sample_folder(images: usize) -> Generate {
    Generate::images(images)
        .size(50 * 1024)
        .subfolders(3)
        .depth(2)
        .non_images(3)
        .docs(2)
        .broken(1)
        .seed(2026)
}

/// A listener bound on `DEMO_PROVIDERS_BIND` (checked before anything starts).
pub fn bind(addr: &str) -> anyhow::Result<Result<std::net::TcpListener, String>> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("{}=`{addr}` is not an address: {e}", DEMO_BIND.0))?;
    Ok(std::net::TcpListener::bind(parsed).map_err(|e| {
        format!(
            "vitrine: cannot use {parsed} for the demo providers ({e}). Stop the program using it, or set {}=127.0.0.1:<free port>.",
            DEMO_BIND.0
        )
    }))
}

/// Serves the sample folder (shared over Drive and Dropbox) on `listener`, and
/// computes its checksums in the background.
pub fn start(listener: std::net::TcpListener) -> anyhow::Result<RunningFake> {
    let images = match std::env::var(DEMO_IMAGES.0) {
        Ok(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| {
                anyhow::anyhow!("{}=`{raw}` is not a number from 1 to 100000", DEMO_IMAGES.0)
            })?,
        Err(_) => DEMO_IMAGES.1,
    };
    let folder = Folder::generated(sample_folder(images)).name("Vitrine demo");
    let fake = FakeProviders::builder()
        .drive_folder(folder.clone())
        .dropbox_folder(folder)
        .build()?;
    listener.set_nonblocking(true)?;
    let running = fake.serve_on(tokio::net::TcpListener::from_std(listener)?)?;
    tokio::spawn(async move {
        if let Err(e) = fake.prewarm().await {
            eprintln!("[demo] cannot compute the sample folder's checksums: {e}");
        }
    });
    Ok(running)
}

/// The import services' provider settings for the emulator at `base_url` (any key
/// and token are accepted).
pub fn import_env(base_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GOOGLE_DRIVE_API_BASE", base_url.to_owned()),
        ("DROPBOX_API_BASE", base_url.to_owned()),
        ("DROPBOX_CONTENT_BASE", base_url.to_owned()),
        ("GOOGLE_API_KEY", "demo".to_owned()),
        ("DROPBOX_ACCESS_TOKEN", "demo".to_owned()),
    ]
}
