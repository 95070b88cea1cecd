//! ARCHITECTURE.md against the sources, without any service: its code map names every source
//! file of every crate and nothing that is not there, its bird's-eye view names every message type
//! and table, the documents it cites exist, and its invariant that only `workers/runtime` depends
//! on lapin holds (the CLI publishes through the runtime's `Client`).

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

fn architecture() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap()
}

/// The code spans (`…`) of a Markdown text.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The code map's crate sections: a `### `<dir>/src/`` heading and the text up to the next heading.
fn code_map_sections(doc: &str) -> Vec<(String, String)> {
    let mut sections = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        if line.starts_with("#") {
            sections.extend(current.take());
            let heading = code_spans(line);
            if line.starts_with("### ") {
                if let Some(dir) = heading.first().filter(|d| d.ends_with("src/")) {
                    current = Some((dir.to_string(), String::new()));
                }
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections.extend(current);
    sections
}

/// What the code map names that is not there, and the source files it does not name.
fn code_map_problems(doc: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let sections = code_map_sections(doc);
    for member in members() {
        let dir = if member == "." {
            "src/".to_owned()
        } else {
            format!("{member}/src/")
        };
        if !sections.iter().any(|(d, _)| *d == dir) {
            problems.push(format!("no code map section for {dir}"));
        }
    }
    for (dir, body) in &sections {
        let named: Vec<String> = code_spans(body)
            .into_iter()
            .filter(|t| t.ends_with(".rs") && !t.contains(['-', ' ']) && !t.starts_with("tests/"))
            .map(|t| format!("{dir}{t}"))
            .collect();
        for path in &named {
            if !root().join(path).is_file() {
                problems.push(format!("the code map names {path}, which does not exist"));
            }
        }
        let on_disk = root().join(dir);
        if !on_disk.is_dir() {
            problems.push(format!(
                "the code map has a section for {dir}, which does not exist"
            ));
            continue;
        }
        for file in rust_files(&on_disk) {
            let path = file
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !named.contains(&path) {
                problems.push(format!("{path} is not in the code map"));
            }
        }
    }
    problems
}

#[test]
fn the_code_map_names_every_source_file_and_only_those() {
    let problems = code_map_problems(&architecture());
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md's code map: {problems:#?}"
    );
}

/// The check sees a missing file, a stale name and a missing section.
#[test]
fn the_code_map_check_can_fail() {
    let doc = architecture();
    let without_client = doc.replace("`client.rs`", "`the client`");
    assert!(code_map_problems(&without_client)
        .contains(&"workers/runtime/src/client.rs is not in the code map".to_owned()));
    let stale = doc.replace("`client.rs`", "`customer.rs`");
    assert!(code_map_problems(&stale).contains(
        &"the code map names workers/runtime/src/customer.rs, which does not exist".to_owned()
    ));
    let no_section = doc.replace("### `workers/ingest/src/`", "### Ingest");
    assert!(code_map_problems(&no_section)
        .contains(&"no code map section for workers/ingest/src/".to_owned()));
}

#[test]
fn the_birds_eye_view_names_every_message_type_and_table() {
    let doc = architecture();
    let spans = code_spans(&doc);
    let schemas = std::fs::read_to_string(root().join("broker-schemas/src/lib.rs")).unwrap();
    let types: Vec<&str> = schemas
        .split("const TYPE: &'static str = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(types.contains(&"ingest.v1"), "{types:?}");
    let mut relations: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(root().join("migrations")).unwrap() {
        let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for marker in ["CREATE TABLE ", "CREATE VIEW ", "CREATE OR REPLACE VIEW "] {
            for rest in sql.split(marker).skip(1) {
                let rest = rest.trim_start_matches("IF NOT EXISTS ");
                let name = rest.split([' ', '(', ';', '\n']).next().unwrap();
                if !relations.iter().any(|r| r == name) {
                    relations.push(name.to_owned());
                }
            }
        }
    }
    assert!(relations.iter().any(|r| r == "samples"), "{relations:?}");
    let missing: Vec<&str> = types
        .iter()
        .copied()
        .chain(relations.iter().map(String::as_str))
        .filter(|name| !spans.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name {missing:?}"
    );
}

/// Every file in the repository, relative to its root (not the build or the virtualenv).
fn repository_files() -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                if !["target", ".git", ".venv"].contains(&relative.as_str()) {
                    dirs.push(path);
                }
            } else {
                files.push(relative);
            }
        }
    }
    files
}

/// The documents (`*.md`) ARCHITECTURE.md names are in the repository: by their path, or by their
/// name where the text says which directory holds them.
#[test]
fn the_documents_it_cites_are_in_the_repository() {
    let doc = architecture();
    let files = repository_files();
    let missing: Vec<&str> = code_spans(&doc)
        .into_iter()
        .filter(|t| t.ends_with(".md"))
        .filter(|t| {
            !files
                .iter()
                .any(|f| f == t || f.ends_with(&format!("/{t}")))
        })
        .collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md cites {missing:?}");
}
