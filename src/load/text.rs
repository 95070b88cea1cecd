//! Text documents, one subject per `.txt` file.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use broker_schemas::{Sample, SampleKind};

use super::subject_of;

/// Text documents, one subject per file (subject = file name without extension), labelled from
/// `labels`.
pub fn text_samples<P: AsRef<Path>>(
    files: &[P],
    labels: &HashMap<String, String>,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::with_capacity(files.len());
    let mut unlabelled = Vec::new();
    for path in files {
        let path = path.as_ref();
        let subject = subject_of(path)?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read {} as UTF-8 text", path.display()))?;
        match labels.get(&subject) {
            Some(label) => samples.push(Sample {
                subject,
                label: label.clone(),
                kind: SampleKind::Text,
                values: Vec::new(),
                timepoints: None,
                covariates: Default::default(),
                text: Some(text),
            }),
            None => unlabelled.push(subject),
        }
    }
    if !unlabelled.is_empty() {
        bail!(
            "no label for subjects {}: add them to the --labels file",
            unlabelled.join(", ")
        );
    }
    Ok(samples)
}
