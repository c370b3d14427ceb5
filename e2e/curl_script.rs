//! `scripts/upload-flow.sh` (the curl walk-through) against the embedded stack exactly
//! as users start it: the `vitrine` launcher with its defaults (SQLite, local disk,
//! generated keys, dev login), in a temp data dir on free ports.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn curl_script_runs_the_whole_flow_on_the_embedded_stack() {
    if !tools_present("curl_script_runs_the_whole_flow_on_the_embedded_stack") {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let (mut launcher, binds, log) = Launcher::start(&["up"], data.path(), &[], &[]);
    let app_bind = binds["APP_BIND"].clone();

    // Ready when the app answers /readyz (the launcher starts storage first).
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = launcher.child.try_wait() {
            panic!(
                "vitrine up exited with {status}; output:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let ready = client
            .get(format!("http://{app_bind}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "the stack was not ready in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/upload-flow.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .env("APP_URL", format!("http://{app_bind}"))
        .env("SELLER_ID", "curl-seller")
        .output()
        .await
        .expect("run the script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/upload-flow.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("==> done: image "), "{stdout}");
    assert!(
        stdout.contains("identical to"),
        "the image came back: {stdout}"
    );

    // `vitrine token` mints tokens the running app accepts (same data dir, same key).
    let token = Command::new(vitrine_bin())
        .args(["token", "--seller", "cli-seller"])
        .env("VITRINE_DATA_DIR", data.path())
        .output()
        .expect("vitrine token");
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let listed = client
        .get(format!("http://{app_bind}/products"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.status(), 200);

    // Ctrl-C (SIGTERM) stops the whole stack.
    drop(launcher);
    let after = client
        .get(format!("http://{app_bind}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        after.is_err(),
        "the app still answers after the launcher stopped"
    );
}
