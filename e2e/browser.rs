//! The web UI in headless Chromium against `vitrine up --demo`, as a user meets it:
//! sign in, import a nested 60-image Drive folder and watch it reach 100 %, the gallery
//! and its source filter, an upload and a product, rejected uploads explained, the
//! phone-width layout, keyboard navigation and sign out.
//!
//! The scenarios are `e2e/browser/ui.test.mjs` (Playwright's `playwright-core` driving
//! Debian's `chromium`); this test starts the stack on free ports, reads the URLs from the
//! launcher's banner and runs the script with Node.js. It needs `node`, `chromium` (or
//! `VITRINE_CHROMIUM`) and `npm ci --prefix e2e/browser`; without them it prints
//! `SKIPPED …`, or fails under `VITRINE_REQUIRE_BACKENDS=1` (CI installs all three).
//!
//! Screenshots of each screen land in `target/browser-screenshots/`; with
//! `VITRINE_UPDATE_SCREENSHOTS=1` they replace the committed set in `docs/screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const DEMO_IMAGES: &str = "60";
const WEB_LINE: &str = "Open the web UI: ";
/// The whole script takes about 15 s; this only stops a hung browser.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("VITRINE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the scenarios need that is not Rust; missing parts skip the test (or fail it
/// where CI requires them).
fn browser_tools_present() -> bool {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("node (Node.js 18+)".to_owned());
    }
    if !chromium().is_file() {
        missing.push(format!(
            "{} (apt-get install chromium, or set VITRINE_CHROMIUM)",
            chromium().display()
        ));
    }
    if !root()
        .join("e2e/browser/node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push("playwright-core (npm ci --prefix e2e/browser)".to_owned());
    }
    if missing.is_empty() {
        return true;
    }
    if service_kit::testing::backends_required() {
        panic!("browser tests: {missing:?} missing, and VITRINE_REQUIRE_BACKENDS=1 requires them");
    }
    eprintln!("SKIPPED web UI browser tests: {}", missing.join("; "));
    false
}

#[tokio::test]
async fn the_web_ui_drives_both_flows_in_headless_chromium() {
    if !browser_tools_present() {
        return;
    }
    // Arrange: the stack with the emulator, 60 images in the demo folder.
    let data = tempfile::tempdir().expect("tempdir");
    let (mut launcher, _binds, log) =
        Launcher::start_demo_with(data.path(), &[("DEMO_IMAGES", DEMO_IMAGES)]);
    let folder = launcher.banner(&log, DEMO_FOLDER_LINE).await;
    let web = launcher.banner(&log, WEB_LINE).await;
    let dropbox = launcher.banner(&log, DEMO_DROPBOX_LINE).await;

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let screenshots = if std::env::var("VITRINE_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        root().join("docs/screenshots")
    } else {
        target.join("browser-screenshots")
    };
    let work = tempfile::tempdir().expect("tempdir");

    // Act: the scenarios, in Chromium.
    let mut node = Command::new("node");
    stop_with_parent(&mut node);
    let output_path = work.path().join("node.log");
    let output = std::fs::File::create(&output_path).expect("node log");
    let mut child = node
        .arg(root().join("e2e/browser/ui.test.mjs"))
        .current_dir(root().join("e2e/browser"))
        .env("WEB_URL", &web)
        .env("DEMO_FOLDER_URL", &folder)
        .env("DEMO_DROPBOX_URL", &dropbox)
        .env("DEMO_IMAGES", DEMO_IMAGES)
        .env("SCREENSHOTS_DIR", &screenshots)
        .env("BROWSER_WORK_DIR", work.path())
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("log handle"))
        .stderr(output)
        .spawn()
        .expect("spawn node");
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let transcript = std::fs::read_to_string(&output_path).unwrap_or_default();
    eprintln!("{transcript}");

    // Assert: every scenario passed, and the screens were captured.
    let status = status.unwrap_or_else(|| {
        panic!(
            "the browser scenarios did not finish in {SCRIPT_DEADLINE:?}; launcher output:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert!(
        status.success(),
        "the browser scenarios failed ({status}); screenshots in {}; launcher output:\n{}",
        screenshots.display(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        transcript.contains("browser scenarios passed"),
        "{transcript}"
    );
    for screen in [
        "sign-in",
        "import",
        "images",
        "images-phone",
        "upload",
        "products",
        "upload-rejected",
    ] {
        let shot = screenshots.join(format!("{screen}.png"));
        let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            shot.display()
        );
    }
    drop(launcher);
}
