//! Tables in NEURO-LEARN's layout: `ID`, `LABEL_*` columns (label and covariates), then features.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use broker_schemas::Sample;

use super::{check_subject_and_label, delimited_reader, line_of, parse_value};

/// Whether a table's header starts with NEURO-LEARN's `ID` column followed by a `LABEL_*` one.
pub(super) fn is_neurolearn(path: &Path, bytes: &[u8]) -> bool {
    let mut rows = delimited_reader(path, bytes);
    match rows.records().next() {
        Some(Ok(header)) => {
            header
                .get(0)
                .is_some_and(|h| h.trim_start_matches('\u{feff}') == "ID")
                && header.get(1).is_some_and(|h| h.starts_with("LABEL_"))
        }
        _ => false,
    }
}

/// A subject's covariates: name → value.
pub type Covariates = std::collections::BTreeMap<String, f64>;

/// Reads a table in NEURO-LEARN's layout, as its users export it: `ID`, then `LABEL_*` columns
/// (`LABEL_GROUP`, `LABEL_SCORE`, `LABEL_AGE`, …), then the features. The label is the column
/// `label` (default `LABEL_GROUP`, else the first `LABEL_*` column); the other `LABEL_*` columns
/// that hold numbers on every row are returned as each subject's covariates (named without the
/// `LABEL_` prefix, lower case: `LABEL_AGE` → `age`), and so are text columns of two values,
/// coded 0 and 1 in sorted order (`F` 0, `M` 1); a note on stderr says how each text column was
/// taken.
pub fn read_neurolearn_table<R: Read>(
    path: &Path,
    reader: R,
    label: Option<&str>,
) -> anyhow::Result<(Vec<Sample>, Vec<Covariates>)> {
    let file = path.display();
    let mut rows = delimited_reader(path, reader);
    let mut records = rows.records();
    let header = match records.next() {
        None => bail!("{file}: the file is empty"),
        Some(h) => h.with_context(|| format!("{file}: cannot read the header"))?,
    };
    let line = line_of(&header);
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_owned())
        .collect();
    let label_columns: Vec<usize> = (1..names.len())
        .take_while(|&c| names[c].starts_with("LABEL_"))
        .collect();
    let first_feature = 1 + label_columns.len();
    if first_feature >= names.len() {
        bail!("{file} line {line}: no feature columns after the `LABEL_*` columns");
    }
    let wanted = label.unwrap_or("LABEL_GROUP");
    let label_column = label_columns
        .iter()
        .copied()
        .find(|&c| names[c] == wanted)
        .or_else(|| label.is_none().then(|| label_columns[0]))
        .ok_or_else(|| {
            anyhow!(
                "{file} line {line}: no label column `{wanted}`; the table has {}",
                label_columns
                    .iter()
                    .map(|&c| format!("`{}`", names[c]))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let mut samples = Vec::new();
    let mut raw_covariates: Vec<Vec<(usize, String)>> = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in records {
        let record = record.with_context(|| format!("{file}: cannot read a row"))?;
        let line = line_of(&record);
        if record.len() != names.len() {
            bail!(
                "{file} line {line}: {} columns, but the header has {}",
                record.len(),
                names.len()
            );
        }
        let (subject, label) = (&record[0], &record[label_column]);
        check_subject_and_label(subject, label, &format!("{file} line {line}"))?;
        if let Some(first) = seen.insert(subject.to_owned(), line) {
            bail!("{file} line {line}: the subject `{subject}` repeats line {first}");
        }
        let values = (first_feature..names.len())
            .map(|c| {
                parse_value(&record[c]).map_err(|why| {
                    anyhow!(
                        "{file} line {line}, column {} (`{}`): {why}",
                        c + 1,
                        names[c]
                    )
                })
            })
            .collect::<anyhow::Result<Vec<f32>>>()?;
        raw_covariates.push(
            label_columns
                .iter()
                .filter(|&&c| c != label_column)
                .map(|&c| (c, record[c].to_owned()))
                .collect(),
        );
        samples.push(Sample::vector(subject.to_owned(), label.to_owned(), values));
    }
    if samples.is_empty() {
        bail!("{file}: no rows after the header");
    }
    // A covariate is a LABEL_* column that is numeric on every row.
    let numeric: Vec<usize> = label_columns
        .iter()
        .copied()
        .filter(|&c| c != label_column)
        .filter(|&c| {
            raw_covariates.iter().all(|row| {
                row.iter()
                    .any(|(col, v)| *col == c && v.parse::<f64>().is_ok_and(f64::is_finite))
            })
        })
        .collect();
    // A text column of two values (`M`/`F`) is coded 0/1 in sorted order, and said so; any other
    // text column is left out, and said so.
    let mut coded: Vec<(usize, [String; 2])> = Vec::new();
    for &c in label_columns.iter().filter(|&&c| c != label_column) {
        if numeric.contains(&c) {
            continue;
        }
        let values: std::collections::BTreeSet<&str> = raw_covariates
            .iter()
            .flat_map(|row| row.iter().filter(|(col, _)| *col == c))
            .map(|(_, v)| v.trim())
            .collect();
        let name = names[c].trim_start_matches("LABEL_").to_lowercase();
        match values.iter().collect::<Vec<_>>().as_slice() {
            [a, b] if !a.is_empty() => {
                eprintln!(
                    "note: {file}: {} is text with two values: covariate {name} = 0 for {a:?}, 1 for {b:?}",
                    names[c]
                );
                coded.push((c, [a.to_string(), b.to_string()]));
            }
            _ => eprintln!(
                "note: {file}: {} is not a covariate: it holds {} distinct text values (code it as \
                 numbers to use it)",
                names[c],
                values.len()
            ),
        }
    }
    let covariates = raw_covariates
        .iter()
        .map(|row| {
            row.iter()
                .filter_map(|(c, v)| {
                    let name = names[*c].trim_start_matches("LABEL_").to_lowercase();
                    if numeric.contains(c) {
                        return Some((name, v.parse::<f64>().unwrap_or(f64::NAN)));
                    }
                    let (_, levels) = coded.iter().find(|(col, _)| col == c)?;
                    Some((name, f64::from(u8::from(v.trim() == levels[1]))))
                })
                .collect()
        })
        .collect();
    Ok((samples, covariates))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::*;

    #[test]
    fn reads_the_neurolearn_layout_as_is() {
        let table = "ID,LABEL_GROUP,LABEL_SCORE,LABEL_AGE,ALFF_1,ReHo_1\n\
                     s1,patient,12.5,31,0.5,1.5\n\
                     s2,control,3,45,0.25,2\n";
        let path = Path::new("study.csv");
        let samples = read_feature_table(path, table.as_bytes()).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(
            (samples[0].subject.as_str(), samples[0].label.as_str()),
            ("s1", "patient")
        );
        assert_eq!(samples[1].values, vec![0.25, 2.0]);
        let (scored, covariates) =
            read_neurolearn_table(path, table.as_bytes(), Some("LABEL_SCORE")).unwrap();
        assert_eq!(scored[0].label, "12.5");
        assert_eq!(covariates[1].get("age"), Some(&45.0));
        // A text column of two values is coded 0/1 in sorted order: control 0, patient 1.
        assert_eq!(covariates[0].get("group"), Some(&1.0));
        assert_eq!(covariates[1].get("group"), Some(&0.0));
        let three = "ID,LABEL_GROUP,LABEL_SITE,F1\ns1,a,x,1\ns2,b,y,2\ns3,a,z,3\n";
        let (_, covariates) = read_neurolearn_table(path, three.as_bytes(), None).unwrap();
        assert!(
            !covariates[0].contains_key("site"),
            "a text column of three values is not a covariate"
        );
        let err = read_neurolearn_table(path, table.as_bytes(), Some("LABEL_SEX")).unwrap_err();
        assert!(
            err.to_string().contains("no label column `LABEL_SEX`"),
            "{err}"
        );
    }
}
