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
        if is_numeric_matrix(&text) {
            bail!(
                "{}: holds rows of numbers, not a document; a time series goes in a `.1D` file \
                 (numpy.savetxt's whitespace-separated default: rename it), `.csv`, `.tsv` or \
                 `.npy`",
                path.display()
            );
        }
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

/// Whether a text is a matrix of numbers (as `numpy.savetxt` writes one): at least two lines,
/// each of numbers separated by whitespace or commas.
fn is_numeric_matrix(text: &str) -> bool {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.len() >= 2
        && lines.iter().all(|line| {
            line.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|cell| !cell.is_empty())
                .all(|cell| cell.parse::<f64>().is_ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numeric_matrix_is_not_a_document() {
        assert!(is_numeric_matrix("1.0e+00 2.5e-01\n3 4\n"));
        assert!(is_numeric_matrix("1,2\n3,4"));
        assert!(!is_numeric_matrix("the patient reports poor sleep\n3 4\n"));
        assert!(!is_numeric_matrix("42\n"));
        let dir = std::env::temp_dir().join(format!("swarm-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sub-1.txt");
        std::fs::write(&path, "1 2\n3 4\n5 6\n").unwrap();
        let labels = HashMap::from([("sub-1".to_owned(), "a".to_owned())]);
        let error = format!("{:#}", text_samples(&[&path], &labels).unwrap_err());
        assert!(
            error.contains("holds rows of numbers, not a document"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
