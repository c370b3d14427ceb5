//! The Postman collection (`postman/`) run by newman against the embedded stack with the
//! demo providers, exactly as users start it (`vitrine up --demo`, a temp data dir, every
//! address on a free port): both flows and the main rejections, every request's tests
//! passing, none skipped. Also checks that the committed collection is what
//! `postman/build.mjs` makes, and that the environment's defaults are the embedded stack's
//! (`.env.example`) and the demo folder's (the banner). Nothing leaves loopback.
//!
//! Needs Node.js and `npm ci --prefix postman` (newman); without them it prints `SKIPPED`,
//! and under `VITRINE_REQUIRE_BACKENDS=1` it fails.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn postman_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("postman")
}

fn newman_bin() -> PathBuf {
    postman_dir().join("node_modules/.bin/newman")
}

/// Node.js and the pinned newman; when missing, skips (or fails where CI requires them).
fn newman_present(test: &str) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if !node {
        "Node.js (`node`)"
    } else if !newman_bin().exists() {
        "newman (`npm ci --prefix postman`)"
    } else {
        return true;
    };
    if service_kit::testing::backends_required() {
        panic!("{test}: {missing} not installed, and VITRINE_REQUIRE_BACKENDS=1 requires it");
    }
    eprintln!("SKIPPED {test}: install {missing} to run it");
    false
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `NAME=value` from a dotenv-style file (`.env.example`, `<data>/keys.env`).
fn dotenv_value(path: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {}", path.display()))
        .trim()
        .to_owned()
}

/// Names of every request in a collection's (nested) items; they are unique (the poll
/// requests name themselves as the next request, and the report is matched by name).
fn request_names(items: &Value, into: &mut BTreeSet<String>) {
    for item in items.as_array().expect("items") {
        match item.get("item") {
            Some(children) => request_names(children, into),
            None => {
                let name = item["name"].as_str().expect("name");
                assert!(into.insert(name.to_owned()), "two requests named `{name}`");
            }
        }
    }
}

#[tokio::test]
async fn postman_collection_passes_with_newman_against_the_demo_stack() {
    let test = "postman_collection_passes_with_newman_against_the_demo_stack";
    if !newman_present(test) {
        return;
    }
    let dir = postman_dir();

    // The committed JSON is what build.mjs makes.
    let check = Command::new("node")
        .arg(dir.join("build.mjs"))
        .arg("--check")
        .output()
        .expect("node build.mjs --check");
    assert!(
        check.status.success(),
        "postman/ is stale: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    // The environment's defaults are the embedded stack's addresses.
    let environment: Value = read_json(&dir.join("vitrine.postman_environment.json"));
    let default = |key: &str| -> String {
        environment["values"]
            .as_array()
            .expect("values")
            .iter()
            .find(|v| v["key"] == key)
            .and_then(|v| v["value"].as_str())
            .unwrap_or_else(|| panic!("no {key} in the environment"))
            .to_owned()
    };
    let env_example = Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
    for (key, bind) in [
        ("app_url", "APP_BIND"),
        ("storage_url", "STORAGE_BIND"),
        ("import_url", "IMPORT_BIND"),
        ("demo_providers_url", "DEMO_PROVIDERS_BIND"),
    ] {
        assert_eq!(
            default(key),
            format!("http://{}", dotenv_value(&env_example, bind)),
            "the environment's {key} is not the embedded stack's {bind}"
        );
    }

    // Arrange: `vitrine up --demo`.
    let data = tempfile::tempdir().expect("tempdir");
    let (mut launcher, binds, log) = Launcher::start_demo(data.path());
    let folder_url = launcher.banner(&log, DEMO_FOLDER_LINE).await;
    let dropbox_url = launcher.banner(&log, DEMO_DROPBOX_LINE).await;
    // Users who import the environment get the folder the demo prints.
    assert_eq!(default("demo_drive_folder_url"), folder_url);
    assert_eq!(default("demo_dropbox_url"), dropbox_url);
    let jwt_secret = dotenv_value(&data.path().join("keys.env"), "JWT_HS256_SECRET");

    // Act: newman, with this stack's addresses and the secret for the signed bad tokens.
    let report = data.path().join("newman-report.json");
    let url = |bind: &str| format!("http://{}", binds[bind]);
    let env_vars = [
        ("app_url", url("APP_BIND")),
        ("storage_url", url("STORAGE_BIND")),
        ("import_url", url("IMPORT_BIND")),
        ("demo_providers_url", url("DEMO_PROVIDERS_BIND")),
        ("demo_drive_folder_url", folder_url),
        ("demo_dropbox_url", dropbox_url),
        ("jwt_secret", jwt_secret),
        ("poll_interval_ms", "200".to_owned()),
    ];
    let mut newman = tokio::process::Command::new(newman_bin());
    newman
        .arg("run")
        .arg(dir.join("vitrine.postman_collection.json"))
        .arg("--environment")
        .arg(dir.join("vitrine.postman_environment.json"))
        .arg("--working-dir")
        .arg(&dir)
        .args(["--reporters", "cli,json", "--reporter-json-export"])
        .arg(&report)
        .args(["--color", "off", "--disable-unicode"])
        .args(["--timeout-request", "30000"])
        .kill_on_drop(true);
    for (key, value) in &env_vars {
        newman.arg("--env-var").arg(format!("{key}={value}"));
    }
    // A guard against a run that never ends, not a timing assertion.
    let output = tokio::time::timeout(Duration::from_secs(600), newman.output())
        .await
        .expect("newman did not exit within 10 minutes")
        .expect("run newman");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    // Assert: newman passed, every assertion held, and every request ran.
    assert!(
        output.status.success(),
        "newman failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let report = read_json(&report);
    let run = &report["run"];
    assert_eq!(run["failures"], serde_json::json!([]), "{stdout}");
    let assertions = &run["stats"]["assertions"];
    assert_eq!(assertions["failed"], 0, "{stdout}");
    let mut expected = BTreeSet::new();
    request_names(&report["collection"]["item"], &mut expected);
    let executed: BTreeSet<String> = run["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .filter(|e| e.get("response").is_some_and(|r| !r.is_null()))
        .map(|e| e["item"]["name"].as_str().expect("name").to_owned())
        .collect();
    let skipped: Vec<&String> = expected.difference(&executed).collect();
    assert!(
        skipped.is_empty(),
        "requests that did not run: {skipped:?}\n{stdout}"
    );
    // The requests assert something: on average at least two things each.
    assert!(
        assertions["total"].as_u64().unwrap_or_default() >= 2 * expected.len() as u64,
        "{assertions}"
    );
    drop(launcher);
}
