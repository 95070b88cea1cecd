//! ARCHITECTURE.md's invariants that the sources alone can show, checked without any service:
//! only `workers/runtime` depends on lapin (the CLI publishes through the runtime's `Client`).

use std::path::{Path, PathBuf};

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's member directories, from the root Cargo.toml.
fn members() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").expect("a members list") + "members = [".len();
    let list = &manifest[start..start + manifest[start..].find(']').unwrap()];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

/// The crate names in the `[dependencies]` table of a manifest (not dev- or build-dependencies).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_table = false;
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == "[dependencies]";
        } else if in_table && !line.is_empty() && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once(['=', '.']) {
                names.push(name.trim().to_owned());
            }
        }
    }
    names
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Where `lapin` is used outside the runtime: crates depending on it, and source files naming it.
fn lapin_outside_the_runtime() -> Vec<String> {
    let mut found = Vec::new();
    for member in members() {
        if member == "workers/runtime" {
            continue;
        }
        let dir = if member == "." {
            root()
        } else {
            root().join(&member)
        };
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        if dependencies(&manifest).iter().any(|d| d == "lapin") {
            found.push(format!("{member}/Cargo.toml depends on lapin"));
        }
        for file in rust_files(&dir.join("src")) {
            if std::fs::read_to_string(&file).unwrap().contains("lapin") {
                let file = file.strip_prefix(root()).unwrap_or(&file).to_owned();
                found.push(format!("{} names lapin", file.display()));
            }
        }
    }
    found
}

#[test]
fn only_the_runtime_talks_to_lapin() {
    let found = lapin_outside_the_runtime();
    assert!(
        found.is_empty(),
        "only workers/runtime may use lapin (publish through swarm_runtime::Client): {found:#?}"
    );
}

/// The manifest reader sees a dependency in every form a manifest writes it, and only in
/// `[dependencies]`.
#[test]
fn the_dependency_reader_finds_every_form() {
    let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nlapin.workspace = true\n\
                    tokio = { version = \"1\" }\n# serde = \"1\"\nuuid = \"1\"\n\n\
                    [dev-dependencies]\naxum.workspace = true\n";
    assert_eq!(dependencies(manifest), ["lapin", "tokio", "uuid"]);
}
