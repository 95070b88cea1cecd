//! Plain feature tables: a header `subject,label,<feature>…`, one subject per row.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use broker_schemas::limits::MAX_VALUES_PER_SAMPLE;
use broker_schemas::Sample;

use super::neurolearn::{is_neurolearn, read_neurolearn_table};
use super::{check_subject_and_label, delimited_reader, delimiter, line_of, parse_value};

/// Reads a feature table: a header `subject,label,<feature>…` (names compared ignoring case),
/// then one row per subject with at least one numeric feature column, into
/// [`SampleKind::Vector`] samples in file order.
///
/// `path` names the file in errors and picks the delimiter (tab for `.tsv`, comma otherwise);
/// the content is read from `reader`. Errors name the file, line and column for a missing
/// `subject`/`label`/feature column, a duplicated feature name, a value that is not a finite
/// number, a row of the wrong width, a repeated subject, an empty subject or label, and a table
/// with no rows.
///
/// A table in the NEURO-LEARN layout (first column `ID`, then `LABEL_*` columns) is read as
/// [`read_neurolearn_table`] reads it, with `LABEL_GROUP` as the label.
pub fn read_feature_table<R: Read>(path: &Path, mut reader: R) -> anyhow::Result<Vec<Sample>> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .with_context(|| format!("Failed to read {}", path.display()))?;
    if is_neurolearn(path, &bytes) {
        return Ok(read_neurolearn_table(path, &bytes[..], None)?.0);
    }
    let reader = &bytes[..];
    let file = path.display();
    let mut rows = delimited_reader(path, reader);
    let mut records = rows.records();

    let header = match records.next() {
        None => bail!("{file}: the file is empty; expected a header `subject,label,<features>…`"),
        Some(header) => header.with_context(|| format!("{file}: cannot read the header"))?,
    };
    let line = line_of(&header);
    if header.len() == 1 {
        let expected = if delimiter(path) == b'\t' {
            "tab"
        } else {
            "comma"
        };
        for (found, name) in [('\t', "tab"), (',', "comma"), (';', "semicolon")] {
            if header[0].contains(found) {
                bail!(
                    "{file} line {line}: the header is one column holding {name}s, but this file \
                     is read as {expected}-separated (tab for `.tsv`, comma otherwise)"
                );
            }
        }
    }
    for (column, expected) in ["subject", "label"].into_iter().enumerate() {
        match header.get(column) {
            Some(name) if name.eq_ignore_ascii_case(expected) => {}
            Some(name) => bail!(
                "{file} line {line}, column {}: expected the column `{expected}`, found `{name}`; \
                 the header must start with `subject,label`",
                column + 1
            ),
            None => bail!(
                "{file} line {line}: missing the column `{expected}`; \
                 the header must be `subject,label,<features>…`"
            ),
        }
    }
    let width = header.len();
    if width < 3 {
        bail!("{file} line {line}: no feature columns after `subject,label`");
    }
    if width - 2 > MAX_VALUES_PER_SAMPLE {
        bail!(
            "{file} line {line}: {} feature columns, more than the limit of \
             {MAX_VALUES_PER_SAMPLE}",
            width - 2
        );
    }
    let mut feature_columns: HashMap<&str, usize> = HashMap::new();
    for (column, name) in header.iter().enumerate().skip(2) {
        if name.is_empty() {
            bail!(
                "{file} line {line}, column {}: the feature column has no name",
                column + 1
            );
        }
        if let Some(first) = feature_columns.insert(name, column) {
            bail!(
                "{file} line {line}, column {}: the feature `{name}` repeats column {}",
                column + 1,
                first + 1
            );
        }
    }

    let mut samples = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in records {
        let record = record.with_context(|| format!("{file}: cannot read a row"))?;
        let line = line_of(&record);
        if record.len() != width {
            bail!(
                "{file} line {line}: {} columns, but the header has {width}",
                record.len()
            );
        }
        let subject = &record[0];
        let label = &record[1];
        check_subject_and_label(subject, label, &format!("{file} line {line}"))?;
        if let Some(first) = seen.insert(subject.to_owned(), line) {
            bail!("{file} line {line}: the subject `{subject}` repeats line {first}");
        }
        let values = record
            .iter()
            .enumerate()
            .skip(2)
            .map(|(column, cell)| {
                parse_value(cell).map_err(|why| {
                    anyhow!(
                        "{file} line {line}, column {} (`{}`): {why}",
                        column + 1,
                        &header[column]
                    )
                })
            })
            .collect::<anyhow::Result<Vec<f32>>>()?;
        samples.push(Sample::vector(subject.to_owned(), label.to_owned(), values));
    }
    if samples.is_empty() {
        bail!("{file}: no rows after the header");
    }
    Ok(samples)
}

/// Reads a feature table, plain or NEURO-LEARN, the way `swarm publish` is asked to: `label` picks
/// a NEURO-LEARN table's label column (e.g. `LABEL_SCORE` for a regression target), and
/// `covariates` names the columns kept as each subject's covariates rather than as features (for
/// a NEURO-LEARN table, among its other numeric `LABEL_*` columns, named without the prefix in
/// lower case; empty keeps them all).
///
/// Returns the samples and their features' names, in column order: a plain table's header after
/// `subject,label` (without the covariates), or a NEURO-LEARN table's columns after its
/// `LABEL_*` ones.
pub fn read_table_with(
    path: &Path,
    bytes: &[u8],
    label: Option<&str>,
    covariates: &[String],
) -> anyhow::Result<(Vec<Sample>, Vec<String>)> {
    let samples = read_samples_with(path, bytes, label, covariates)?;
    check_numeric_labels(path, &samples)?;
    let names = feature_names(path, bytes, covariates)?;
    Ok((samples, names))
}

/// Labels that are all numbers are a regression target: each must then be finite (`NaN` in a
/// score column would fail the run later, without naming the subject).
fn check_numeric_labels(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let numbers: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.label.parse().ok())
        .collect();
    if numbers.len() < samples.len() {
        return Ok(());
    }
    if let Some(sample) = samples
        .iter()
        .find(|s| !s.label.parse::<f64>().is_ok_and(f64::is_finite))
    {
        bail!(
            "{}: the label `{}` of subject `{}` is not a finite number; a regression target \
             needs one for every subject (leave the subject out, or give its value)",
            path.display(),
            sample.label,
            sample.subject
        );
    }
    Ok(())
}

/// The names of a table's feature columns, without the covariates.
fn feature_names(path: &Path, bytes: &[u8], covariates: &[String]) -> anyhow::Result<Vec<String>> {
    let header = delimited_reader(path, bytes)
        .records()
        .next()
        .transpose()?
        .with_context(|| format!("{}: no header", path.display()))?;
    let names = header.iter().map(|h| h.trim_start_matches('\u{feff}'));
    Ok(if is_neurolearn(path, bytes) {
        names
            .skip(1)
            .skip_while(|h| h.starts_with("LABEL_"))
            .map(str::to_owned)
            .collect()
    } else {
        names
            .skip(2)
            .filter(|h| !covariates.iter().any(|c| c == h))
            .map(str::to_owned)
            .collect()
    })
}

fn read_samples_with(
    path: &Path,
    bytes: &[u8],
    label: Option<&str>,
    covariates: &[String],
) -> anyhow::Result<Vec<Sample>> {
    let file = path.display();
    if is_neurolearn(path, bytes) {
        let (mut samples, found) = read_neurolearn_table(path, bytes, label)?;
        for name in covariates {
            if !found.iter().any(|c| c.contains_key(name)) {
                bail!("{file}: no numeric `LABEL_*` column gives a covariate `{name}`");
            }
        }
        for (sample, mut values) in samples.iter_mut().zip(found) {
            if !covariates.is_empty() {
                values.retain(|name, _| covariates.contains(name));
            }
            sample.covariates = values;
        }
        return Ok(samples);
    }
    if let Some(label) = label {
        bail!(
            "{file}: --label {label} picks a column of a NEURO-LEARN table (`ID`, `LABEL_*`, features); \
             this table's label is its `label` column"
        );
    }
    let mut samples = read_feature_table(path, bytes)?;
    if covariates.is_empty() {
        return Ok(samples);
    }
    let mut rows = delimited_reader(path, bytes);
    let header = rows
        .records()
        .next()
        .transpose()?
        .with_context(|| format!("{file}: no header"))?;
    let features: Vec<&str> = header.iter().skip(2).collect();
    let mut columns = Vec::with_capacity(covariates.len());
    for name in covariates {
        let Some(i) = features.iter().position(|f| f == name) else {
            bail!(
                "{file}: no column `{name}` for --covariates; the columns are {}",
                features.join(", ")
            );
        };
        columns.push((i, name.clone()));
    }
    if columns.len() >= features.len() {
        bail!("{file}: every feature column is a covariate; no features are left");
    }
    columns.sort_by_key(|c| std::cmp::Reverse(c.0));
    for sample in &mut samples {
        for (i, name) in &columns {
            let value = sample.values.remove(*i);
            sample.covariates.insert(name.clone(), f64::from(value));
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::test_support::*;
    use crate::load::*;

    fn table(name: &str, content: &str) -> anyhow::Result<Vec<Sample>> {
        read_feature_table(Path::new(name), content.as_bytes())
    }

    #[test]
    fn feature_names_come_from_the_header() {
        let plain = "subject,label,age,score,thickness\ns1,a,30,1.5,2\n";
        let (samples, names) =
            read_table_with(Path::new("t.csv"), plain.as_bytes(), None, &[]).unwrap();
        assert_eq!(names, ["age", "score", "thickness"]);
        assert_eq!(samples[0].values.len(), names.len());
        let (samples, names) =
            read_table_with(Path::new("t.csv"), plain.as_bytes(), None, &["age".into()]).unwrap();
        assert_eq!(
            names,
            ["score", "thickness"],
            "a covariate is not a feature"
        );
        assert_eq!(samples[0].values, [1.5, 2.0]);
        let neurolearn = "\u{feff}ID,LABEL_GROUP,LABEL_AGE,ALFF_1,ReHo_1\ns1,HC,30,0.5,1\n";
        let (_, names) =
            read_table_with(Path::new("n.csv"), neurolearn.as_bytes(), None, &[]).unwrap();
        assert_eq!(names, ["ALFF_1", "ReHo_1"]);
    }

    #[test]
    fn a_non_finite_regression_label_names_its_subject() {
        let table = "ID,LABEL_GROUP,LABEL_SCORE,ALFF_1\ns1,HC,12.5,0.5\ns2,PT,NaN,1\n";
        let error = format!(
            "{:#}",
            read_table_with(
                Path::new("n.csv"),
                table.as_bytes(),
                Some("LABEL_SCORE"),
                &[]
            )
            .unwrap_err()
        );
        assert!(
            error.contains("the label `NaN` of subject `s2` is not a finite number"),
            "{error}"
        );
        // Class labels are not numbers: nothing to check.
        assert!(read_table_with(Path::new("n.csv"), table.as_bytes(), None, &[]).is_ok());
    }

    #[test]
    fn reads_a_csv_feature_table() {
        let samples = table(
            "t.csv",
            "subject,label,f1,f2,f3\ns1,patient,1,2.5,-3e-2\ns2 , control , 0,0, 1\n",
        )
        .unwrap();
        assert_eq!(
            samples,
            vec![
                Sample::vector("s1", "patient", vec![1.0, 2.5, -0.03]),
                Sample::vector("s2", "control", vec![0.0, 0.0, 1.0]),
            ]
        );
    }

    #[test]
    fn reads_a_feature_table_with_a_byte_order_mark() {
        // Spreadsheets write one at the start of a UTF-8 CSV.
        let samples = table("t.csv", "\u{feff}subject,label,f1\ns1,a,1\n").unwrap();
        assert_eq!(samples[0].subject, "s1");
    }

    #[test]
    fn reads_a_tsv_feature_table_by_extension() {
        let samples = table("t.TSV", "Subject\tLabel\ta\tb\ns1\tx\t1\t2\n").unwrap();
        assert_eq!(samples[0].values, vec![1.0, 2.0]);
        // The same content as `.csv` is one column wide: say why.
        let error = error_of(table("t.csv", "Subject\tLabel\ta\tb\ns1\tx\t1\t2\n"));
        assert!(
            error.contains("one column holding tabs, but this file is read as comma-separated"),
            "{error}"
        );
        let error = error_of(table("t.csv", "subject;label;a\ns1;x;1\n"));
        assert!(error.contains("holding semicolons"), "{error}");
    }

    #[test]
    fn feature_table_errors_name_file_line_and_column() {
        let cases = [
            ("", "t.csv: the file is empty"),
            ("subject\n", "t.csv line 1: missing the column `label`"),
            (
                "id,label,f1\n",
                "t.csv line 1, column 1: expected the column `subject`, found `id`",
            ),
            (
                "subject,group,f1\n",
                "t.csv line 1, column 2: expected the column `label`, found `group`",
            ),
            ("subject,label\ns1,a\n", "t.csv line 1: no feature columns"),
            (
                "subject,label,f1,f1\n",
                "column 4: the feature `f1` repeats column 3",
            ),
            (
                "subject,label,f1,\n",
                "column 4: the feature column has no name",
            ),
            ("subject,label,f1\n", "t.csv: no rows after the header"),
            (
                "subject,label,f1,f2\ns1,a,1,2\ns2,b,1,x\n",
                "t.csv line 3, column 4 (`f2`): `x` is not a number",
            ),
            (
                "subject,label,f1,f2\ns1,a,NaN,2\n",
                "t.csv line 2, column 3 (`f1`): `NaN` is a missing value; fill it in, or leave \
                 the subject out (missing values are not imputed)",
            ),
            (
                "subject,label,f1,f2\ns1,a,1,inf\n",
                "t.csv line 2, column 4 (`f2`): `inf` is not a finite number",
            ),
            (
                "subject,label,f1,f2\ns1,a,1,1e39\n",
                "column 4 (`f2`): `1e39` is not a finite number",
            ),
            (
                "subject,label,f1,f2\ns1,a,1,\n",
                "t.csv line 2, column 4 (`f2`): is empty",
            ),
            (
                "subject,label,f1,f2\ns1,a,1,2\ns2,b,1\n",
                "t.csv line 3: 3 columns, but the header has 4",
            ),
            (
                "subject,label,f1,f2\ns1,a,1,2,3\n",
                "t.csv line 2: 5 columns, but the header has 4",
            ),
            (
                "subject,label,f1\ns1,a,1\ns2,a,1\ns1,b,2\n",
                "t.csv line 4: the subject `s1` repeats line 2",
            ),
            (
                "subject,label,f1\n,a,1\n",
                "t.csv line 2: the subject is empty",
            ),
            (
                "subject,label,f1\ns1, ,1\n",
                "t.csv line 2: the label of subject `s1` is empty",
            ),
        ];
        for (content, expected) in cases {
            let error = error_of(table("t.csv", content));
            assert!(
                error.contains(expected),
                "for {content:?}: expected {expected:?} in {error:?}"
            );
        }
    }

    #[test]
    fn feature_table_rejects_names_beyond_the_limits() {
        let long_subject = "s".repeat(MAX_SUBJECT_LEN + 1);
        let error = error_of(table(
            "t.csv",
            &format!("subject,label,f\n{long_subject},a,1\n"),
        ));
        assert!(error.contains("longer than 128 characters"), "{error}");
        let long_label = "l".repeat(MAX_NAME_LEN + 1);
        let error = error_of(table(
            "t.csv",
            &format!("subject,label,f\ns1,{long_label},1\n"),
        ));
        assert!(error.contains("longer than 64 characters"), "{error}");
    }
}
