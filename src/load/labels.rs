//! The labels file (`subject,label`) and the subject a file stands for.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, bail, Context};

use super::{check_subject_and_label, delimited_reader, line_of};

/// Extensions stripped from a time-series file name to get its subject, repeatedly and ignoring
/// case: `sub-01.txt.1D` → `sub-01`.
const TIMESERIES_EXTENSIONS: [&str; 5] = ["1d", "tsv", "csv", "txt", "npy"];

/// Reads a labels file: CSV (TSV when it ends in `.tsv`) with a header naming the columns
/// `subject` and `label` (ignoring case; other columns are allowed and ignored), then one row per
/// subject. Errors name the file and line for missing columns, an empty subject or label, and a
/// repeated subject.
pub fn read_labels(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let file = path.display();
    let opened = File::open(path).with_context(|| format!("Failed to open {file}"))?;
    let mut rows = delimited_reader(path, opened);
    let mut records = rows.records();
    let header = match records.next() {
        None => bail!("{file}: the file is empty; expected a header `subject,label`"),
        Some(header) => header.with_context(|| format!("{file}: cannot read the header"))?,
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                anyhow!(
                    "{file} line {}: missing the column `{name}`; expected a header \
                     `subject,label`",
                    line_of(&header)
                )
            })
    };
    let (subject_column, label_column) = (column("subject")?, column("label")?);

    let mut labels = HashMap::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in records {
        let record = record.with_context(|| format!("{file}: cannot read a row"))?;
        let line = line_of(&record);
        let (Some(subject), Some(label)) = (record.get(subject_column), record.get(label_column))
        else {
            bail!(
                "{file} line {line}: {} columns, too few for `subject` (column {}) and `label` \
                 (column {})",
                record.len(),
                subject_column + 1,
                label_column + 1
            );
        };
        check_subject_and_label(subject, label, &format!("{file} line {line}"))?;
        if let Some(first) = seen.insert(subject.to_owned(), line) {
            bail!("{file} line {line}: the subject `{subject}` repeats line {first}");
        }
        labels.insert(subject.to_owned(), label.to_owned());
    }
    Ok(labels)
}

/// A time-series file's subject: its name without the extensions `.1D`, `.tsv`, `.csv` and `.txt`
/// (ignoring case, repeatedly): `data/sub-01.1D` → `sub-01`, `sub-02_rois.txt.1D` → `sub-02_rois`.
pub fn subject_of(path: &Path) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{}: the file name is not UTF-8 text", path.display()))?;
    let mut subject = name;
    while let Some((stem, ext)) = subject.rsplit_once('.') {
        if stem.is_empty()
            || !TIMESERIES_EXTENSIONS
                .iter()
                .any(|known| ext.eq_ignore_ascii_case(known))
        {
            break;
        }
        subject = stem;
    }
    Ok(subject.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::test_support::*;

    #[test]
    fn reads_labels() {
        let dir = TempDir::new();
        let path = dir.write(
            "labels.csv",
            "age,Subject,LABEL\n30,s1,patient\n41, s2 ,control\n",
        );
        let labels = read_labels(&path).unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["s1"], "patient");
        assert_eq!(labels["s2"], "control");
        let path = dir.write("labels.tsv", "subject\tlabel\ns1\ta\n");
        assert_eq!(read_labels(&path).unwrap()["s1"], "a");
    }

    #[test]
    fn label_errors_name_file_and_line() {
        let dir = TempDir::new();
        let cases = [
            ("", "the file is empty"),
            (
                "subject,group\ns1,a\n",
                "line 1: missing the column `label`",
            ),
            ("id,label\ns1,a\n", "line 1: missing the column `subject`"),
            ("subject,label\ns1\n", "line 2: 1 columns, too few"),
            (
                "subject,label\ns1,a\ns1,b\n",
                "line 3: the subject `s1` repeats line 2",
            ),
            ("subject,label\n,a\n", "line 2: the subject is empty"),
            (
                "subject,label\ns1,\n",
                "line 2: the label of subject `s1` is empty",
            ),
        ];
        for (content, expected) in cases {
            let path = dir.write("labels.csv", content);
            let error = error_of(read_labels(&path));
            assert!(
                error.contains("labels.csv") && error.contains(expected),
                "for {content:?}: expected {expected:?} in {error:?}"
            );
        }
    }

    #[test]
    fn subjects_are_file_names_without_known_extensions() {
        let cases = [
            ("data/sub-01.1D", "sub-01"),
            ("sub-02_rois.txt.1D", "sub-02_rois"),
            ("sub-03.TSV", "sub-03"),
            ("sub.04.csv", "sub.04"),
            ("sub-05.nii.1D", "sub-05.nii"),
            (".1D", ".1D"),
        ];
        for (path, subject) in cases {
            assert_eq!(subject_of(Path::new(path)).unwrap(), subject, "{path}");
        }
    }
}
