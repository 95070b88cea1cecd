//! Reading a site's files into [`Sample`]s and cutting them into `ingest.v1` batches.
//!
//! What `swarm publish` reads:
//!
//! - a **feature table** ([`read_feature_table`]): CSV, or TSV when the file name ends in `.tsv`,
//!   with the header `subject,label,<feature>,<feature>…` and one subject per row →
//!   [`SampleKind::Vector`] samples;
//! - **time-series matrices** ([`read_timeseries`]), one subject per file, T rows (timepoints) by R
//!   columns (regions): `.csv`, `.tsv`, or AFNI `.1D` (whitespace separated, `#` comment lines);
//!   their subject is the file stem and their label comes from a **labels file**
//!   ([`read_labels`], CSV with the header `subject,label`), joined by [`timeseries_samples`];
//! - [`batches`] splits samples into messages within [`broker_schemas::limits`].
//!
//! Every error names the file and, where there is one, the line and column (both 1-based), so a
//! site can fix its export without guessing. Everything is checked before anything is published:
//! finite numbers, one width per file, unique subjects, non-empty subjects and labels, and the
//! limits on names and sample sizes.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use broker_schemas::limits::{
    MAX_MESSAGE_BYTES, MAX_NAME_LEN, MAX_SAMPLES_PER_BATCH, MAX_SUBJECT_LEN, MAX_VALUES_PER_SAMPLE,
};
use broker_schemas::{Sample, SampleKind};

/// Extensions stripped from a time-series file name to get its subject, repeatedly and ignoring
/// case: `sub-01.txt.1D` → `sub-01`.
const TIMESERIES_EXTENSIONS: [&str; 5] = ["1d", "tsv", "csv", "txt", "npy"];

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
    if cell.is_empty() {
        return Err("is empty, expected a number".to_owned());
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
pub fn read_table_with(
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

/// Whether a table's header starts with NEURO-LEARN's `ID` column followed by a `LABEL_*` one.
fn is_neurolearn(path: &Path, bytes: &[u8]) -> bool {
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
/// `LABEL_` prefix, lower case: `LABEL_AGE` → `age`).
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
    let covariates = raw_covariates
        .iter()
        .map(|row| {
            row.iter()
                .filter(|(c, _)| numeric.contains(c))
                .map(|(c, v)| {
                    let name = names[*c].trim_start_matches("LABEL_").to_lowercase();
                    (name, v.parse::<f64>().unwrap_or(f64::NAN))
                })
                .collect()
        })
        .collect();
    Ok((samples, covariates))
}

/// Reads a NumPy `.npy` file holding a 2-D array (T × R, C order; little-endian `f8`, `f4`, `i8`
/// or `i4`): a time series without a text round trip.
pub fn read_npy(path: &Path) -> anyhow::Result<Timeseries> {
    let file = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("Failed to read {file}"))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{file}: not a .npy file (no \\x93NUMPY magic)");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!("{file}: unsupported .npy version {v}"),
    };
    let header = std::str::from_utf8(bytes.get(start..start + header_len).unwrap_or_default())
        .with_context(|| format!("{file}: the .npy header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))?;
        let rest = header[at + key.len() + 2..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| anyhow!("{file}: the .npy header has no dtype"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        bail!("{file}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
    }
    let shape: Vec<usize> = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .map(|r| {
            r.split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| v.parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("{file}: the .npy header has no shape"))?;
    let [timepoints, regions] = shape[..] else {
        bail!("{file}: expected a 2-D array (timepoints × regions), found shape {shape:?}");
    };
    let data = &bytes[start + header_len..];
    let n = timepoints * regions;
    if n > MAX_VALUES_PER_SAMPLE {
        bail!("{file}: {n} values, more than the limit of {MAX_VALUES_PER_SAMPLE} per sample");
    }
    let width = match descr {
        "<f8" | "<i8" => 8,
        "<f4" | "<i4" => 4,
        other => bail!("{file}: unsupported dtype `{other}`; expected <f8, <f4, <i8 or <i4"),
    };
    if data.len() < n * width {
        bail!("{file}: the data is shorter than its shape {timepoints} × {regions}");
    }
    let mut values = Vec::with_capacity(n);
    for (i, chunk) in data[..n * width].chunks_exact(width).enumerate() {
        let v = match descr {
            "<f8" => f64::from_le_bytes(chunk.try_into().unwrap_or_default()) as f32,
            "<i8" => i64::from_le_bytes(chunk.try_into().unwrap_or_default()) as f32,
            "<f4" => f32::from_le_bytes(chunk.try_into().unwrap_or_default()),
            _ => i32::from_le_bytes(chunk.try_into().unwrap_or_default()) as f32,
        };
        if !v.is_finite() {
            bail!(
                "{file}: row {}, column {} is not a finite number",
                i / regions + 1,
                i % regions + 1
            );
        }
        values.push(v);
    }
    Ok((timepoints, regions, values))
}

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

/// Bytes of an `ingest.v1` message besides its samples (field names, project, site, map and array
/// headers), an over-estimate.
const BATCH_OVERHEAD_BYTES: usize = 64 + 2 * MAX_NAME_LEN * 4;

/// An upper estimate of a sample's size in MessagePack: 5 bytes per `f32`, its strings, and the
/// field names and headers.
pub fn estimated_bytes(sample: &Sample) -> usize {
    // Field names (`subject`, `label`, `kind`, `values`, `timepoints`) with their headers, the
    // kind, the timepoints, and the string and array headers.
    const FIXED: usize = 96;
    // A covariate: its name, a map key header and an f64 (9 bytes); text: its bytes and header.
    let covariates: usize = sample.covariates.keys().map(|k| k.len() + 12).sum();
    let text = sample.text.as_ref().map_or(0, |t| t.len() + 16);
    FIXED + sample.subject.len() + sample.label.len() + 5 * sample.values.len() + covariates + text
}

/// Splits samples into batches, in order, of at most `max_per_batch` samples and at most about
/// `max_bytes_estimate` bytes each (by [`estimated_bytes`], plus room for the project and site),
/// never above [`MAX_SAMPLES_PER_BATCH`] and [`MAX_MESSAGE_BYTES`] whatever is asked.
///
/// A sample too big for a batch on its own still gets a batch of its own (the ingest worker
/// rejects it with a clear error); no sample is dropped. No samples give no batches.
pub fn batches(
    samples: Vec<Sample>,
    max_per_batch: usize,
    max_bytes_estimate: usize,
) -> Vec<Vec<Sample>> {
    let max_count = max_per_batch.clamp(1, MAX_SAMPLES_PER_BATCH);
    let max_bytes = max_bytes_estimate
        .min(MAX_MESSAGE_BYTES)
        .saturating_sub(BATCH_OVERHEAD_BYTES);
    let mut batches = Vec::new();
    let mut batch: Vec<Sample> = Vec::new();
    let mut bytes = 0;
    for sample in samples {
        let size = estimated_bytes(&sample);
        if !batch.is_empty() && (batch.len() == max_count || bytes + size > max_bytes) {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.push(sample);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "swarm-load-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, content: &str) -> PathBuf {
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

    /// A `.npy` file as NumPy writes it (version 1.0, header padded to 64 bytes).
    fn npy(descr: &str, shape: (usize, usize), payload: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}), }}",
            shape.0, shape.1
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn reads_npy_time_series() {
        let dir = TempDir::new();
        let values = [1.0f64, 2.0, 3.5, -4.0, 5.0, 6.25];
        let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let path = dir.0.join("sub-07.npy");
        std::fs::write(&path, npy("<f8", (3, 2), &payload)).unwrap();
        let (t, r, got) = read_timeseries(&path).unwrap();
        assert_eq!((t, r), (3, 2));
        assert_eq!(got, vec![1.0, 2.0, 3.5, -4.0, 5.0, 6.25]);
        assert_eq!(subject_of(&path).unwrap(), "sub-07");
        let ints: Vec<u8> = [7i32, 8].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, npy("<i4", (1, 2), &ints)).unwrap();
        assert_eq!(read_timeseries(&path).unwrap(), (1, 2, vec![7.0, 8.0]));
        std::fs::write(&path, npy("<f8", (3, 2), &payload[..16])).unwrap();
        assert!(read_timeseries(&path)
            .unwrap_err()
            .to_string()
            .contains("shorter"));
        std::fs::write(&path, npy("<c16", (1, 1), &payload)).unwrap();
        assert!(read_timeseries(&path)
            .unwrap_err()
            .to_string()
            .contains("dtype"));
        std::fs::write(&path, b"not numpy").unwrap();
        assert!(read_timeseries(&path).is_err());
    }

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
        assert!(
            !covariates[1].contains_key("group"),
            "a text column is not a covariate"
        );
        let err = read_neurolearn_table(path, table.as_bytes(), Some("LABEL_SEX")).unwrap_err();
        assert!(
            err.to_string().contains("no label column `LABEL_SEX`"),
            "{err}"
        );
    }

    fn table(name: &str, content: &str) -> anyhow::Result<Vec<Sample>> {
        read_feature_table(Path::new(name), content.as_bytes())
    }

    /// The error's full text (with its causes).
    fn error_of<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
        format!("{:#}", result.expect_err("expected an error"))
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
                "t.csv line 2, column 3 (`f1`): `NaN` is not a finite number",
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
                "g.tsv line 2, column 2: `nan` is not a finite number",
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

    #[test]
    fn timeseries_samples_join_files_and_labels() {
        let dir = TempDir::new();
        let a = dir.write("sub-a.1D", "1 2 3\n4 5 6\n");
        let b = dir.write("sub-b.csv", "r1,r2,r3\n0,0,1\n");
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
                    values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                    timepoints: Some(2),
                    covariates: Default::default(),
                    text: None,
                },
                Sample {
                    subject: "sub-b".into(),
                    label: "control".into(),
                    kind: SampleKind::Timeseries,
                    values: vec![0.0, 0.0, 1.0],
                    timepoints: Some(1),
                    covariates: Default::default(),
                    text: None,
                },
            ]
        );
    }

    #[test]
    fn timeseries_samples_errors() {
        let dir = TempDir::new();
        let a = dir.write("sub-a.1D", "1 2\n");
        let b = dir.write("sub-b.1D", "1 2\n");
        let c = dir.write("sub-c.1D", "1 2\n");
        let wide = dir.write("sub-w.1D", "1 2 3\n");
        let sub = dir.0.join("other");
        std::fs::create_dir_all(&sub).unwrap();
        let a_again = sub.join("sub-a.csv");
        std::fs::write(&a_again, "1,2\n").unwrap();
        let labels: HashMap<String, String> = ["sub-a", "sub-w"]
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
    }

    fn sample(values: usize) -> Sample {
        Sample::vector("subject-0001", "patient", vec![0.1; values])
    }

    fn sizes(batches: &[Vec<Sample>]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn batches_respect_the_count() {
        assert!(batches(Vec::new(), 10, MAX_MESSAGE_BYTES).is_empty());
        let samples = vec![sample(3); 25];
        assert_eq!(
            sizes(&batches(samples.clone(), 10, MAX_MESSAGE_BYTES)),
            [10, 10, 5]
        );
        // Zero means one per batch; more than the limit means the limit.
        assert_eq!(
            sizes(&batches(samples[..3].to_vec(), 0, MAX_MESSAGE_BYTES)),
            [1, 1, 1]
        );
        let many = vec![sample(1); MAX_SAMPLES_PER_BATCH + 1];
        assert_eq!(
            sizes(&batches(many, usize::MAX, usize::MAX)),
            [MAX_SAMPLES_PER_BATCH, 1]
        );
    }

    #[test]
    fn batches_respect_the_bytes_and_keep_order() {
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                subject: format!("s{i}"),
                ..sample(1000)
            })
            .collect();
        let per_sample = estimated_bytes(&samples[0]);
        let max_bytes = BATCH_OVERHEAD_BYTES + 3 * per_sample;
        let split = batches(samples.clone(), 100, max_bytes);
        assert_eq!(sizes(&split), [3, 3, 3, 1]);
        assert_eq!(split.concat(), samples);
        // A sample bigger than the budget still goes, alone.
        assert_eq!(sizes(&batches(samples, 100, 10)), [1; 10]);
        // The message limit caps any budget: two samples of 60 % of it cannot share a batch.
        let big = sample(MAX_MESSAGE_BYTES * 6 / 10 / 5);
        assert_eq!(
            sizes(&batches(vec![big.clone(), big], 100, usize::MAX)),
            [1, 1]
        );
    }

    #[test]
    fn the_estimate_bounds_the_encoded_message() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| Sample {
                subject: format!("site-a-subject-{i:04}"),
                label: if i % 2 == 0 { "patient" } else { "control" }.into(),
                kind: SampleKind::Timeseries,
                values: (0..200).map(|v| v as f32 * 0.37).collect(),
                timepoints: Some(20),
                covariates: Default::default(),
                text: None,
            })
            .collect();
        let max_bytes = 20_000;
        for batch in batches(samples, 1000, max_bytes) {
            let message = broker_schemas::IngestV1 {
                project: "p".repeat(MAX_NAME_LEN),
                site: "s".repeat(MAX_NAME_LEN),
                samples: batch,
            };
            let encoded = broker_schemas::encode(&message).len();
            assert!(encoded <= max_bytes, "{encoded} > {max_bytes}");
        }
    }
}
