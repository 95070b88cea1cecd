//! Reading a site's files into samples and cutting them into `ingest.v1` batches, one module per
//! format:
//!
//! - [`table`]: a **feature table**, CSV (TSV when the file name ends in `.tsv`) with the header
//!   `subject,label,<feature>,<feature>…` and one subject per row → vector samples
//!   ([`read_feature_table`], [`read_table_with`]);
//! - [`neurolearn`]: the same in NEURO-LEARN's layout, `ID`, `LABEL_*` columns, then features;
//! - [`timeseries`]: **time-series matrices**, one subject per file, T rows (timepoints) by R
//!   columns (regions): `.csv`, `.tsv`, AFNI `.1D` (whitespace separated, `#` comment lines) or
//!   [`npy`]; their subject is the file stem and their label comes from a **labels file**
//!   ([`labels`], CSV with the header `subject,label`), joined by [`timeseries_samples`];
//! - [`text`]: text documents, one per `.txt` file, labelled the same way;
//! - [`batch`]: splits samples into messages within [`broker_schemas::limits`].
//!
//! Every error names the file and, where there is one, the line and column (both 1-based), so a
//! site can fix its export without guessing. Everything is checked before anything is published:
//! finite numbers, one width per file, unique subjects, non-empty subjects and labels, and the
//! limits on names and sample sizes.

pub mod batch;
pub mod labels;
pub mod neurolearn;
pub mod npy;
pub mod table;
pub mod text;
pub mod timeseries;

pub use batch::{batches, estimated_bytes};
pub use labels::{read_labels, subject_of};
pub use neurolearn::{read_neurolearn_table, Covariates};
pub use npy::read_npy;
pub use table::{read_feature_table, read_table_with};
pub use text::text_samples;
pub use timeseries::{read_timeseries, region_names, timeseries_samples, Timeseries};

use std::io::Read;
use std::path::Path;

use anyhow::bail;
use broker_schemas::limits::{MAX_NAME_LEN, MAX_SUBJECT_LEN};

/// The field delimiter of a delimited text file: tab for `.tsv`, comma otherwise.
fn delimiter(path: &Path) -> u8 {
    if has_extension(path, "tsv") {
        b'\t'
    } else {
        b','
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// A CSV/TSV reader that leaves header handling, width checks and trimming to us, so the errors
/// can name lines and columns.
fn delimited_reader<R: Read>(path: &Path, reader: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter(path))
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader)
}

/// The 1-based line a record starts on.
fn line_of(record: &csv::StringRecord) -> u64 {
    record.position().map_or(0, |p| p.line())
}

/// Parses one cell as a finite `f32`.
fn parse_value(cell: &str) -> Result<f32, String> {
    // Missing values are not imputed: say so, and what to do, rather than guess.
    const MISSING: &str = "fill it in, or leave the subject out (missing values are not imputed)";
    if cell.is_empty() {
        return Err(format!(
            "is empty, expected a number: a missing value; {MISSING}"
        ));
    }
    if ["NA", "N/A", "nan", "NaN"].contains(&cell) {
        return Err(format!("`{cell}` is a missing value; {MISSING}"));
    }
    match cell.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!(
            "`{cell}` is not a finite number (NaN, infinite or beyond the range of f32)"
        )),
        Err(_) => Err(format!("`{cell}` is not a number")),
    }
}

/// Checks a subject id and label, naming where they came from in the error.
fn check_subject_and_label(subject: &str, label: &str, at: &str) -> anyhow::Result<()> {
    if subject.is_empty() {
        bail!("{at}: the subject is empty");
    }
    if subject.chars().count() > MAX_SUBJECT_LEN {
        bail!("{at}: the subject `{subject}` is longer than {MAX_SUBJECT_LEN} characters");
    }
    if label.is_empty() {
        bail!("{at}: the label of subject `{subject}` is empty");
    }
    if label.chars().count() > MAX_NAME_LEN {
        bail!(
            "{at}: the label `{label}` of subject `{subject}` is longer than {MAX_NAME_LEN} \
             characters"
        );
    }
    Ok(())
}

#[cfg(test)]
mod test_support {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system's temp dir, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "swarm-load-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub fn write(&self, name: &str, content: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The error's full text (with its causes).
    pub fn error_of<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
        format!("{:#}", result.expect_err("expected an error"))
    }
}
