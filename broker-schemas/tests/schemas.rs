//! The checked-in JSON Schemas and example messages stay true to the Rust types.
//!
//! - `schemas/<type>.json` must equal [`broker_schemas::all_schemas`]; run
//!   `UPDATE_SCHEMAS=1 cargo test -p broker-schemas` to rewrite them after changing a type.
//! - Every `examples/<type>[.<variant>].json` deserialises into its type, re-serialises to the
//!   same JSON (no unknown or misspelt fields, which would be silently ignored), and round-trips
//!   through [`broker_schemas::encode`]/[`broker_schemas::decode`] unchanged. Every type has at
//!   least one example. Example floats are exactly representable as `f32` (0.5, -1.25, …) so the
//!   JSON comparison is exact.

use std::fs;
use std::path::{Path, PathBuf};

use broker_schemas::{
    decode, encode, FeaturesV1, IngestV1, Message, ReportV1, StatsV1, TrainRequest, TrainUnitV1,
    TrainV1,
};
use serde_json::Value;

const UPDATE_HINT: &str =
    "run `UPDATE_SCHEMAS=1 cargo test -p broker-schemas` and commit the result";

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema_path(message_type: &str) -> PathBuf {
    crate_dir()
        .join("schemas")
        .join(format!("{message_type}.json"))
}

/// A path of this crate as a reader finds it in the repository: `broker-schemas/schemas/…`.
fn shown(path: &Path) -> String {
    match path.strip_prefix(crate_dir()) {
        Ok(relative) => format!("broker-schemas/{}", relative.display()),
        Err(_) => path.display().to_string(),
    }
}

/// The `.json` files in a directory of this crate, sorted.
fn json_files(dir: &str) -> Vec<PathBuf> {
    let dir = crate_dir().join(dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn checked_in_schemas_match_the_types() {
    let schemas = broker_schemas::all_schemas();
    let expected: Vec<PathBuf> = schemas.iter().map(|(t, _)| schema_path(t)).collect();

    if std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1") {
        fs::create_dir_all(crate_dir().join("schemas")).expect("create schemas/");
        for (message_type, schema) in &schemas {
            let path = schema_path(message_type);
            fs::write(&path, schema).unwrap_or_else(|e| panic!("write {}: {e}", shown(&path)));
        }
        for stale in json_files("schemas")
            .into_iter()
            .filter(|p| !expected.contains(p))
        {
            fs::remove_file(&stale).unwrap_or_else(|e| panic!("remove {}: {e}", shown(&stale)));
        }
        return;
    }

    let mut problems = Vec::new();
    for (message_type, schema) in &schemas {
        let path = schema_path(message_type);
        match fs::read_to_string(&path) {
            Ok(checked_in) if checked_in == *schema => {}
            Ok(_) => problems.push(format!(
                "{} differs from the schema of the `{message_type}` type",
                shown(&path)
            )),
            Err(e) => problems.push(format!("{} cannot be read: {e}", shown(&path))),
        }
    }
    for stale in json_files("schemas")
        .into_iter()
        .filter(|p| !expected.contains(p))
    {
        problems.push(format!(
            "{} is not the schema of any message type",
            shown(&stale)
        ));
    }
    assert!(
        problems.is_empty(),
        "the checked-in JSON Schemas drifted from broker-schemas' types:\n  {}\nTo update them, \
         {UPDATE_HINT}.",
        problems.join("\n  ")
    );
}

/// Checks one example: JSON → type → JSON is the identity, and MessagePack round-trips.
fn check_example<M: Message + PartialEq + std::fmt::Debug>(path: &Path) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", shown(path)));
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", shown(path)));
    let message: M = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{} is not a valid {}: {e}", shown(path), M::TYPE));
    let again = serde_json::to_value(&message).expect("a message serialises to JSON");
    assert_eq!(
        again,
        json,
        "{} changes when read as {} and written back: a misspelt or unknown field, a default \
         left out, or a float that f32 cannot hold exactly",
        shown(path),
        M::TYPE
    );
    let decoded: M = decode(&encode(&message))
        .unwrap_or_else(|e| panic!("{} does not round-trip: {e}", shown(path)));
    assert_eq!(
        decoded,
        message,
        "{} changes through MessagePack",
        shown(path)
    );
}

#[test]
fn examples_are_valid_messages() {
    let examples = json_files("examples");
    assert!(!examples.is_empty(), "no examples under examples/");
    for (message_type, _) in broker_schemas::all_schemas() {
        let prefix = format!("{message_type}.");
        assert!(
            examples.iter().any(|p| p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))),
            "no example of {message_type} under examples/ (expected {message_type}.json or \
             {message_type}.<variant>.json)"
        );
    }
    for path in &examples {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 name");
        let is = |t: &str| name.starts_with(&format!("{t}."));
        if is(IngestV1::TYPE) {
            check_example::<IngestV1>(path);
        } else if is(FeaturesV1::TYPE) {
            check_example::<FeaturesV1>(path);
        } else if is(TrainV1::TYPE) {
            check_example::<TrainRequest>(path);
        } else if is(ReportV1::TYPE) {
            check_example::<ReportV1>(path);
        } else if is(StatsV1::TYPE) {
            check_example::<StatsV1>(path);
        } else if is(TrainUnitV1::TYPE) {
            check_example::<TrainUnitV1>(path);
        } else {
            panic!(
                "{} is not named after a message type (`<type>.json` or `<type>.<variant>.json`)",
                shown(path)
            );
        }
    }
}

/// A body as another language would write it: doubles and an integer where Rust has `f32`, and an
/// unknown field. It must decode.
#[test]
fn decodes_a_foreign_producers_body() {
    let json: Value = serde_json::from_str(
        &fs::read_to_string(crate_dir().join("examples/ingest.v1.timeseries.json"))
            .expect("the time-series example"),
    )
    .expect("JSON");
    let mut expected: IngestV1 = serde_json::from_value(json.clone()).expect("an ingest.v1");
    expected.samples[0].values[0] = 2.0;
    let mut foreign = json;
    foreign["comment"] = Value::from("ignored by consumers");
    foreign["samples"][0]["values"][0] = Value::from(2);
    // serde_json keeps numbers as f64/i64: rmp-serde writes them as MessagePack float 64 / int.
    let body = rmp_serde::to_vec_named(&foreign).expect("MessagePack");
    let decoded: IngestV1 = decode(&body).expect("a foreign body decodes");
    assert_eq!(decoded, expected);
}
