//! `scripts/upload-flow.sh` (the curl walk-through) against the embedded stack exactly
//! as users start it: the `vitrine` launcher with its defaults (SQLite, local disk,
//! generated keys, dev login), in a temp data dir on free ports.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The script's tools; missing ones skip the test (or fail it where CI requires them).
fn tools_present(test: &str) -> bool {
    let missing: Vec<&str> = ["curl", "jq", "sha256sum"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if service_kit::testing::backends_required() {
        panic!("{test}: {missing:?} not installed, and VITRINE_REQUIRE_BACKENDS=1 requires them");
    }
    eprintln!("SKIPPED {test}: install {missing:?} to run it");
    false
}

/// Runs `vitrine up`; SIGTERM (then SIGKILL) when dropped.
struct Launcher {
    child: std::process::Child,
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn curl_script_runs_the_whole_flow_on_the_embedded_stack() {
    if !tools_present("curl_script_runs_the_whole_flow_on_the_embedded_stack") {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let app_bind = format!("127.0.0.1:{}", free_port());
    let storage_bind = format!("127.0.0.1:{}", free_port());
    let log = data.path().join("launcher.log");
    let mut command = Command::new(vitrine_bin());
    stop_with_parent(&mut command);
    let child = command
        .arg("up")
        .env("VITRINE_DATA_DIR", data.path())
        .env("APP_BIND", &app_bind)
        .env("STORAGE_BIND", &storage_bind)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vitrine up");
    let mut launcher = Launcher { child };

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
