//! Time-series matrices (T timepoints × R regions), one subject per file: `.csv`, `.tsv`, AFNI
//! `.1D` and `.npy`.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use broker_schemas::limits::MAX_VALUES_PER_SAMPLE;
use broker_schemas::{Sample, SampleKind};

use super::{
    check_subject_and_label, delimited_reader, has_extension, line_of, parse_value, read_npy,
    subject_of,
};

/// A time-series matrix: `(T, R, values)`, T timepoints (rows) by R regions (columns), the
/// values row-major (timepoint by timepoint).
pub type Timeseries = (usize, usize, Vec<f32>);

/// Reads one subject's time-series matrix from a `.csv`, `.tsv` or AFNI `.1D` file (extensions
/// compared ignoring case).
///
/// - `.csv` / `.tsv`: comma / tab separated numbers; the first row may instead be a header of
///   region names (every cell not a number), which is skipped; blank lines are skipped.
/// - `.1D`: numbers separated by spaces or tabs; blank lines and lines starting with `#` are
///   skipped.
///
/// Every row must have the same width and every value must be a finite number; errors name the
/// file, line and column. At most [`MAX_VALUES_PER_SAMPLE`] values, and T must fit a `u32`.
pub fn read_timeseries(path: &Path) -> anyhow::Result<Timeseries> {
    let file = path.display();
    let opened = File::open(path).with_context(|| format!("Failed to open {file}"))?;
    if has_extension(path, "npy") {
        return read_npy(path);
    }
    let rows = if has_extension(path, "1d") {
        afni_rows(path, opened)?
    } else if has_extension(path, "csv") || has_extension(path, "tsv") {
        delimited_rows(path, opened)?
    } else {
        bail!(
            "{file}: unknown time-series format; expected a `.csv`, `.tsv`, `.1D` or `.npy` file"
        );
    };

    let mut rows = rows.into_iter();
    let Some((first_line, first)) = rows.next() else {
        bail!("{file}: no rows of numbers");
    };
    let regions = first.len();
    let mut values = Vec::with_capacity(regions * 256);
    let mut timepoints = 0usize;
    for (line, cells) in std::iter::once((first_line, first)).chain(rows) {
        if cells.len() != regions {
            bail!(
                "{file} line {line}: {} columns, but line {first_line} has {regions}",
                cells.len()
            );
        }
        for (column, cell) in cells.iter().enumerate() {
            let value = parse_value(cell)
                .map_err(|why| anyhow!("{file} line {line}, column {}: {why}", column + 1))?;
            values.push(value);
        }
        timepoints += 1;
        if values.len() > MAX_VALUES_PER_SAMPLE {
            bail!(
                "{file}: more than {MAX_VALUES_PER_SAMPLE} values (the limit per sample) by line \
                 {line}"
            );
        }
    }
    if u32::try_from(timepoints).is_err() {
        bail!("{file}: {timepoints} timepoints do not fit a u32");
    }
    Ok((timepoints, regions, values))
}

/// The fewest timepoints (rows) a time series may have; the ingest worker refuses fewer.
pub const MIN_TIMEPOINTS: usize = 3;

/// The region names the files' header rows give (`.csv`/`.tsv` files whose first row holds no
/// number), or `None` when none has one. Files that name their regions must name them alike.
pub fn region_names<P: AsRef<Path>>(files: &[P]) -> anyhow::Result<Option<Vec<String>>> {
    let mut named: Option<(&Path, Vec<String>)> = None;
    for path in files {
        let path = path.as_ref();
        if !(has_extension(path, "csv") || has_extension(path, "tsv")) {
            continue;
        }
        let opened =
            File::open(path).with_context(|| format!("Failed to open {}", path.display()))?;
        let Some(first) = delimited_reader(path, opened)
            .records()
            .next()
            .transpose()?
        else {
            continue;
        };
        if !first.iter().all(|cell| parse_value(cell).is_err()) {
            continue;
        }
        let names: Vec<String> = first
            .iter()
            .map(|c| c.trim_start_matches('\u{feff}').to_owned())
            .collect();
        match &named {
            None => named = Some((path, names)),
            Some((other, first_names)) if *first_names != names => bail!(
                "{} and {} name their regions differently ({} and {}); name them alike, or \
                 publish them separately",
                other.display(),
                path.display(),
                first_names.join(","),
                names.join(",")
            ),
            Some(_) => {}
        }
    }
    Ok(named.map(|(_, names)| names))
}

/// The data rows of a `.csv`/`.tsv` time series, `(line, cells)`, without its optional header.
fn delimited_rows(path: &Path, reader: File) -> anyhow::Result<Vec<(u64, Vec<String>)>> {
    let file = path.display();
    let mut rows = Vec::new();
    for (index, record) in delimited_reader(path, reader).records().enumerate() {
        let record = record.with_context(|| format!("{file}: cannot read a row"))?;
        let is_header = index == 0 && record.iter().all(|cell| parse_value(cell).is_err());
        if !is_header {
            rows.push((line_of(&record), record.iter().map(str::to_owned).collect()));
        }
    }
    Ok(rows)
}

/// The data rows of an AFNI `.1D` file, `(line, cells)`: whitespace separated, `#` comments.
fn afni_rows(path: &Path, mut reader: File) -> anyhow::Result<Vec<(u64, Vec<String>)>> {
    let file = path.display();
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .with_context(|| format!("Failed to read {file} as UTF-8 text"))?;
    Ok(text
        .strip_prefix('\u{feff}')
        .unwrap_or(&text)
        .lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let line_text = line.trim();
            if line_text.is_empty() || line_text.starts_with('#') {
                return None;
            }
            let cells = line_text.split_whitespace().map(str::to_owned).collect();
            Some((index as u64 + 1, cells))
        })
        .collect())
}

/// Reads time-series files, one subject each (see [`read_timeseries`], [`subject_of`]), into
/// [`SampleKind::Timeseries`] samples labelled from `labels` (see [`read_labels`]), in the order
/// of `files`.
///
/// Errors: a file that cannot be read, a subject given by two files, subjects missing from
/// `labels` (all of them are named), and files with different region counts R.
pub fn timeseries_samples<P: AsRef<Path>>(
    files: &[P],
    labels: &HashMap<String, String>,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::with_capacity(files.len());
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut unlabelled = Vec::new();
    let mut first_shape: Option<(PathBuf, usize)> = None;
    for path in files {
        let path = path.as_ref();
        let subject = subject_of(path)?;
        if let Some(other) = seen.insert(subject.clone(), path.to_owned()) {
            bail!(
                "the subject `{subject}` is given by two files: {} and {}",
                other.display(),
                path.display()
            );
        }
        let Some(label) = labels.get(&subject) else {
            unlabelled.push(format!("`{subject}` ({})", path.display()));
            continue;
        };
        let (timepoints, regions, values) = read_timeseries(path)?;
        check_subject_and_label(&subject, label, &path.display().to_string())?;
        // Connectivity needs variance over time and a pair of regions.
        if timepoints < MIN_TIMEPOINTS {
            bail!(
                "{}: {timepoints} timepoint(s) (rows); a time series needs at least \
                 {MIN_TIMEPOINTS}",
                path.display()
            );
        }
        if regions < 2 {
            bail!(
                "{}: 1 region (column); a time series needs at least 2",
                path.display()
            );
        }
        match &first_shape {
            None => first_shape = Some((path.to_owned(), regions)),
            Some((first, r)) if *r != regions => bail!(
                "{} has {regions} regions (columns) but {} has {r}; every subject of a project \
                 needs the same regions",
                path.display(),
                first.display()
            ),
            Some(_) => {}
        }
        samples.push(Sample {
            subject,
            label: label.clone(),
            kind: SampleKind::Timeseries,
            values,
            timepoints: Some(u32::try_from(timepoints).expect("checked by read_timeseries")),
            covariates: Default::default(),
            text: None,
        });
    }
    if !unlabelled.is_empty() {
        bail!(
            "no label for {} subject(s) in the labels file: {}",
            unlabelled.len(),
            unlabelled.join(", ")
        );
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::test_support::*;

    #[test]
    fn reads_timeseries_in_each_format() {
        let dir = TempDir::new();
        let expected = (3, 2, vec![1.0, 2.0, 3.0, 4.0, -5.0, 0.5]);
        let cases = [
            ("a.csv", "1,2\n3,4\n-5,0.5\n"),
            ("b.csv", "roi_1,\"Left, Hippocampus\"\n1,2\n3,4\n\n-5,0.5\n"),
            ("c.tsv", "r1\tr2\n1\t2\n3\t4\n-5\t0.5\n"),
            ("d.tsv", "1\t2\n3\t4\n-5\t0.5\n"),
            ("e.1D", "# AFNI 1D\n 1  2\n3\t4\n\n  # comment\n-5 0.5\n"),
            ("f.1d", "1 2\n3 4\n-5 0.5"),
            ("g.1D", "\u{feff}1 2\n3 4\n-5 0.5\n"),
            ("h.csv", "\u{feff}r1,r2\n1,2\n3,4\n-5,0.5\n"),
        ];
        for (name, content) in cases {
            let path = dir.write(name, content);
            assert_eq!(read_timeseries(&path).unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn timeseries_errors_name_file_line_and_column() {
        let dir = TempDir::new();
        let cases = [
            ("a.csv", "", "a.csv: no rows of numbers"),
            ("b.csv", "r1,r2\n", "b.csv: no rows of numbers"),
            ("c.1D", "# only a comment\n", "c.1D: no rows of numbers"),
            (
                "d.csv",
                "1,2\n3\n",
                "d.csv line 2: 1 columns, but line 1 has 2",
            ),
            (
                "e.1D",
                "# header\n1 2 3\n4 5\n",
                "e.1D line 3: 2 columns, but line 2 has 3",
            ),
            (
                "f.csv",
                "1,2\n3,x\n",
                "f.csv line 2, column 2: `x` is not a number",
            ),
            (
                "g.tsv",
                "r1\tr2\n1\tnan\n",
                "g.tsv line 2, column 2: `nan` is a missing value; fill it in",
            ),
            // A header is only a header on the first row, and only when it has no number.
            (
                "h.csv",
                "1,2\nr1,r2\n",
                "h.csv line 2, column 1: `r1` is not a number",
            ),
            (
                "i.csv",
                "r1,2\n3,4\n",
                "i.csv line 1, column 1: `r1` is not a number",
            ),
            (
                "j.1D",
                "r1 r2\n1 2\n",
                "j.1D line 1, column 1: `r1` is not a number",
            ),
            ("k.txt", "1 2\n", "k.txt: unknown time-series format"),
        ];
        for (name, content, expected) in cases {
            let path = dir.write(name, content);
            let error = error_of(read_timeseries(&path));
            assert!(
                error.contains(expected),
                "for {name}: expected {expected:?} in {error:?}"
            );
        }
        let missing = dir.0.join("missing.csv");
        assert!(error_of(read_timeseries(&missing)).contains("Failed to open"));
    }

    #[test]
    fn timeseries_beyond_the_value_limit_is_an_error() {
        let dir = TempDir::new();
        let row = vec!["0"; 1000].join(",") + "\n";
        let rows = MAX_VALUES_PER_SAMPLE / 1000 + 1;
        let path = dir.write("big.csv", &row.repeat(rows));
        let error = error_of(read_timeseries(&path));
        assert!(error.contains("more than 480000 values"), "{error}");
    }

    #[test]
    fn timeseries_samples_join_files_and_labels() {
        let dir = TempDir::new();
        let a = dir.write("sub-a.1D", "1 2 3\n4 5 6\n7 8 9\n");
        let b = dir.write("sub-b.csv", "r1,r2,r3\n0,0,1\n1,0,0\n0,1,0\n");
        let labels = HashMap::from([
            ("sub-a".to_owned(), "patient".to_owned()),
            ("sub-b".to_owned(), "control".to_owned()),
            ("sub-c".to_owned(), "control".to_owned()),
        ]);
        let samples = timeseries_samples(&[&a, &b], &labels).unwrap();
        assert_eq!(
            samples,
            vec![
                Sample {
                    subject: "sub-a".into(),
                    label: "patient".into(),
                    kind: SampleKind::Timeseries,
                    values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
                    timepoints: Some(3),
                    covariates: Default::default(),
                    text: None,
                },
                Sample {
                    subject: "sub-b".into(),
                    label: "control".into(),
                    kind: SampleKind::Timeseries,
                    values: vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                    timepoints: Some(3),
                    covariates: Default::default(),
                    text: None,
                },
            ]
        );
        assert_eq!(
            region_names(&[&a, &b]).unwrap(),
            Some(vec!["r1".to_owned(), "r2".into(), "r3".into()]),
            "the header row of sub-b.csv names the regions"
        );
        assert_eq!(region_names(&[&a]).unwrap(), None);
        let other = dir.write("sub-d.tsv", "x\ty\tz\n1\t2\t3\n");
        assert!(error_of(region_names(&[&b, &other])).contains("name their regions differently"));
    }

    #[test]
    fn timeseries_samples_errors() {
        let dir = TempDir::new();
        let rows = "1 2\n3 4\n5 7\n";
        let a = dir.write("sub-a.1D", rows);
        let b = dir.write("sub-b.1D", rows);
        let c = dir.write("sub-c.1D", rows);
        let wide = dir.write("sub-w.1D", "1 2 3\n4 5 6\n7 8 9\n");
        let one_row = dir.write("sub-r.1D", "1 2\n");
        let one_region = dir.write("sub-o.1D", "1\n2\n3\n");
        let sub = dir.0.join("other");
        std::fs::create_dir_all(&sub).unwrap();
        let a_again = sub.join("sub-a.csv");
        std::fs::write(&a_again, "1,2\n3,4\n5,6\n").unwrap();
        let labels: HashMap<String, String> = ["sub-a", "sub-w", "sub-r", "sub-o"]
            .into_iter()
            .map(|s| (s.to_owned(), "x".to_owned()))
            .collect();

        let error = error_of(timeseries_samples(&[&a, &b, &c], &labels));
        assert!(
            error.contains("no label for 2 subject(s)")
                && error.contains("`sub-b`")
                && error.contains("`sub-c`")
                && error.contains("sub-c.1D"),
            "{error}"
        );
        let error = error_of(timeseries_samples(&[&a, &a_again], &labels));
        assert!(error.contains("`sub-a` is given by two files"), "{error}");
        let error = error_of(timeseries_samples(&[&a, &wide], &labels));
        assert!(error.contains("has 3 regions (columns) but"), "{error}");
        let error = error_of(timeseries_samples(&[&one_row], &labels));
        assert!(
            error.contains("sub-r.1D: 1 timepoint(s) (rows); a time series needs at least 3"),
            "{error}"
        );
        let error = error_of(timeseries_samples(&[&one_region], &labels));
        assert!(error.contains("sub-o.1D: 1 region (column)"), "{error}");
    }
}
