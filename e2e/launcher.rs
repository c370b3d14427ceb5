//! `vitrine up` as a supervisor: a port in use is refused before anything starts, naming
//! the variable to change; every child's lines carry its name; a child that dies is
//! restarted (and the launcher says so); Ctrl-C stops every child.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const SERVICES: [&str; 6] = [
    "audit",
    "storage",
    "app",
    "import-api",
    "import-worker",
    "web",
];

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits (up to 90 s) for `done` to hold of the launcher's log.
async fn wait_for_log(
    launcher: &mut Launcher,
    log: &Path,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = log_text(log);
        if done(&text) {
            return;
        }
        if let Ok(Some(status)) = launcher.child.try_wait() {
            panic!("vitrine exited with {status} before {what}; output:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no {what} after 90 s; output:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 60 s) for the launcher to exit.
async fn wait_exit(launcher: &mut Launcher, log: &Path, when: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = launcher.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "vitrine kept running {when}; output:\n{}",
            log_text(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The process ids of `vitrine serve <name>` children of `parent`.
fn children(parent: u32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Some((_, ppid)) = state_and_ppid(pid) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let serves = args
            .windows(2)
            .any(|w| w[0] == b"serve" && w[1] == name.as_bytes());
        if ppid == parent && serves {
            found.push(pid);
        }
    }
    found
}

/// A process's state letter and parent pid, from `/proc/<pid>/stat`
/// (`pid (comm) state ppid …`: the fields after the last `)`).
fn state_and_ppid(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.to_owned();
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only a process still running counts.
    state_and_ppid(pid).is_some_and(|(state, _)| state != "Z")
}

#[tokio::test]
async fn a_port_in_use_is_refused_naming_its_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let data = tempfile::tempdir().expect("tempdir");

    let (mut launcher, _binds, log) =
        Launcher::start(&["up"], data.path(), &[("APP_BIND", &addr)], &[]);

    let status = wait_exit(&mut launcher, &log, "with its port taken").await;
    let text = log_text(&log);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("cannot use {addr} for app")),
        "{text}"
    );
    assert!(
        text.contains("set APP_BIND=127.0.0.1:<free port>"),
        "{text}"
    );
    // Refused before anything started: no service was launched.
    assert!(!text.contains("] "), "a service started: {text}");
    drop(taken);
}

#[tokio::test]
async fn children_are_named_restarted_when_they_die_and_stopped_by_ctrl_c() {
    let data = tempfile::tempdir().expect("tempdir");
    let (mut launcher, binds, log) =
        Launcher::start(&["up"], data.path(), &[("RUST_LOG", "info")], &[]);
    let parent = launcher.child.id();
    wait_for_log(&mut launcher, &log, "the banner", |t| {
        t.contains("Press Ctrl-C to stop.")
    })
    .await;

    // Every child's lines carry its name.
    let text = log_text(&log);
    for name in SERVICES {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("[{name}] "))),
            "no line from {name}:\n{text}"
        );
    }

    // Import workers run on the system allocator, the others on mimalloc
    // (`service_kit::allocator`).
    let allocator_of = |pid: u32| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
        environ
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(b"VITRINE_ALLOCATOR="))
            .map(|value| String::from_utf8_lossy(value).into_owned())
    };
    let (workers, apps) = (children(parent, "import-worker"), children(parent, "app"));
    assert!(
        !workers.is_empty() && !apps.is_empty(),
        "{workers:?} {apps:?}"
    );
    for worker in workers {
        assert_eq!(allocator_of(worker).as_deref(), Some("system"));
    }
    for app in apps {
        assert_eq!(allocator_of(app), None);
    }

    // Kill the app: the launcher says so, starts it again, and it serves again.
    let app = children(parent, "app");
    assert_eq!(app.len(), 1, "one app child: {app:?}");
    // SAFETY: signalling a process this test's launcher started.
    unsafe {
        libc::kill(app[0] as libc::pid_t, libc::SIGKILL);
    }
    wait_for_log(&mut launcher, &log, "the restart message", |t| {
        t.lines()
            .any(|l| l.starts_with("[app] exited") && l.contains("restarting in"))
    })
    .await;
    let client = http_client();
    let ready = format!("http://{}/readyz", binds["APP_BIND"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = client
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not come back; output:\n{}",
            log_text(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = children(parent, "app");
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again, app, "a new app process");

    // Ctrl-C: every child stops, then the launcher, successfully.
    let all: Vec<u32> = SERVICES
        .iter()
        .flat_map(|name| children(parent, name))
        .collect();
    assert_eq!(all.len(), SERVICES.len(), "{all:?}");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(parent as libc::pid_t, libc::SIGINT);
    }
    let status = wait_exit(&mut launcher, &log, "after Ctrl-C").await;
    assert!(status.success(), "{status}; output:\n{}", log_text(&log));
    assert!(log_text(&log).contains("vitrine: all services stopped"));
    let left: Vec<u32> = all.into_iter().filter(|pid| alive(*pid)).collect();
    assert!(left.is_empty(), "children still running: {left:?}");
    for (var, bind) in &binds {
        if *var != "DEMO_PROVIDERS_BIND" {
            std::net::TcpListener::bind(bind.as_str())
                .unwrap_or_else(|e| panic!("{var}={bind} still taken: {e}"));
        }
    }
}
