//! `.env.example` lists every variable the services read: each `pub mod vars { … }`
//! block of a crate's configuration is checked against it.

use std::path::{Path, PathBuf};

fn config_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | "data" | "node_modules") {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") && path.to_string_lossy().contains("/src/") {
                found.push(path);
            }
        }
    }
    found
}

/// `"NAME"` values of the constants inside `pub mod vars { … }`.
fn declared_vars(source: &str) -> Vec<String> {
    let Some(start) = source.find("pub mod vars {") else {
        return Vec::new();
    };
    let block = &source[start..];
    let block = &block[..block.find("\n}").unwrap_or(block.len())];
    block
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect()
}

#[test]
fn every_configuration_variable_is_in_env_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join(".env.example")).expect(".env.example");
    let listed: Vec<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let mut checked = 0;
    let mut missing = Vec::new();
    for file in config_files(root) {
        let source = std::fs::read_to_string(&file).unwrap_or_default();
        for var in declared_vars(&source) {
            checked += 1;
            if !listed.contains(&var.as_str()) {
                missing.push(format!("{var} (from {})", file.display()));
            }
        }
    }
    assert!(
        checked >= 20,
        "found only {checked} variables: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "missing from .env.example: {missing:#?}"
    );
}
