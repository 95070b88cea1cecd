//! Formatting helpers shared by the run and statistics reports: numbers, durations, labels,
//! Markdown escaping, CSV fields and downloads.

use base64::Engine as _;
use serde::Serialize;

use crate::model::RunData;

/// How text reports mark things up: as Markdown (escaped, `**strong**`), or as plain text for a
/// terminal (no escapes, no markup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// Markdown: producer text is backslash-escaped.
    Markdown,
    /// Plain text: producer text is printed as it is, line breaks flattened.
    Plain,
}

impl Flavour {
    /// Producer text made safe for this flavour.
    pub(crate) fn escape(self, text: &str) -> String {
        match self {
            Flavour::Markdown => md_escape(text),
            Flavour::Plain => text.replace(['\n', '\r'], " "),
        }
    }

    /// Emphasised text: `**text**` in Markdown, the text itself in plain text.
    pub(crate) fn strong(self, text: &str) -> String {
        match self {
            Flavour::Markdown => format!("**{}**", md_escape(text)),
            Flavour::Plain => self.escape(text),
        }
    }

    /// A link: `[text](<href>)` in Markdown, `text (href)` in plain text.
    pub(crate) fn link(self, text: &str, href: Option<&str>) -> String {
        match (self, href) {
            (_, None) => self.escape(text),
            (Flavour::Markdown, Some(href)) => format!("[{}](<{href}>)", md_escape(text)),
            (Flavour::Plain, Some(href)) => format!("{} ({href})", self.escape(text)),
        }
    }
}

/// `accuracy` → `Accuracy`, `balanced_accuracy` → `Balanced accuracy`, `roc_auc` → `ROC AUC`.
pub(crate) fn metric_label(name: &str) -> String {
    match name {
        "accuracy" => "Accuracy".to_owned(),
        "balanced_accuracy" => "Balanced accuracy".to_owned(),
        "precision_macro" => "Precision (macro)".to_owned(),
        "recall_macro" => "Recall (macro)".to_owned(),
        "f1_macro" => "F1 (macro)".to_owned(),
        "roc_auc" => "ROC AUC".to_owned(),
        "r2" => "R²".to_owned(),
        "mae" => "MAE".to_owned(),
        "rmse" => "RMSE".to_owned(),
        "pearson_r" => "Pearson r".to_owned(),
        other => {
            let spaced = other.replace('_', " ");
            let mut chars = spaced.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        }
    }
}

/// Parameters whose values are whole numbers (counts and limits); the train worker stores every
/// number as a float.
const WHOLE_PARAMS: &[&str] = &[
    "max_depth",
    "max_features",
    "max_iter",
    "min_samples_leaf",
    "min_samples_split",
    "n_estimators",
    "n_neighbors",
];
/// Limits that may be unlimited: stored as `None` (scikit-learn's spelling), or as 0 by older
/// runs.
const LIMITS: &[&str] = &["max_depth"];

/// A parameter's value as its kind reads: `n_neighbors` `5.0` → `5`, `max_depth` `0` or `None`
/// → `None (unlimited)`; anything else as stored.
pub(crate) fn param_value(name: &str, value: &str) -> String {
    let number = value.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    let limit = LIMITS.contains(&name);
    match number {
        Some(v) if v == 0.0 && limit => "None (unlimited)".to_owned(),
        None if limit && value == "None" => "None (unlimited)".to_owned(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 && WHOLE_PARAMS.contains(&name) => {
            format!("{}", v as i64)
        }
        _ => value.to_owned(),
    }
}

/// `mean ± sd` of a metric, or `n/a`.
pub(crate) fn metric_text(run: &RunData, name: &str) -> String {
    match run.metric(name) {
        Some(m) if m.mean.is_finite() && m.sd.is_finite() => {
            format!("{} ± {}", num(m.mean), num(m.sd))
        }
        Some(m) => num(m.mean),
        None => "n/a".to_owned(),
    }
}

/// A number with three decimals, or `n/a` when it is not finite.
pub(crate) fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "n/a".to_owned()
    }
}

/// `1234` → `1.2 s`, `125000` → `2 min 5 s`.
pub(crate) fn duration(ms: i64) -> String {
    if ms < 0 {
        return "n/a".to_owned();
    }
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s < 3600 {
        return format!("{} min {} s", s / 60, s % 60);
    }
    format!("{} h {} min", s / 3600, (s % 3600) / 60)
}

/// `1 site`, `3 sites`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A p-value: 4 decimals, or scientific below 0.0001.
pub(crate) fn pvalue(p: f64) -> String {
    if !p.is_finite() {
        "n/a".to_owned()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// Backslash-escapes what would start Markdown markup (or inline HTML) or end a table cell, and
/// flattens line breaks.
pub(crate) fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One CSV text field: quoted when it holds a comma, quote or line break; a leading `=`, `+`,
/// `-`, `@` or tab is prefixed with `'` so a spreadsheet does not run it as a formula.
pub(crate) fn csv_field(text: &str) -> String {
    let mut value = String::with_capacity(text.len() + 2);
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        value.push('\'');
    }
    value.push_str(text);
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The `data:` link that downloads `csv` from the page; empty for the text reports, which carry
/// the CSV itself.
pub(crate) fn csv_href(csv: &str, html: bool) -> String {
    if !html {
        return String::new();
    }
    let mut href = String::from("data:text/csv;charset=utf-8;base64,");
    base64::engine::general_purpose::STANDARD.encode_string(csv.as_bytes(), &mut href);
    href
}

/// The size of a CSV download in KiB, one decimal.
pub(crate) fn csv_kib(csv: &str) -> String {
    format!("{:.1}", csv.len() as f64 / 1024.0)
}

/// Serialises a document; never panics.
pub(crate) fn to_json<T: Serialize>(document: &T) -> serde_json::Value {
    match serde_json::to_value(document) {
        Ok(value) => value,
        // Unreachable: every map has string keys. Still no panic.
        Err(error) => serde_json::Value::from(format!("cannot serialise the report: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields() {
        for (input, want) in [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("=1+1", "'=1+1"),
            ("-x", "'-x"),
            ("@a,b", "\"'@a,b\""),
        ] {
            assert_eq!(csv_field(input), want);
        }
    }

    #[test]
    fn markdown_escaping() {
        for (input, want) in [
            ("plain name", "plain name"),
            ("a|b", r"a\|b"),
            ("<x>&", r"\<x\>\&"),
            ("line\nbreak", "line break"),
            ("*_`[]", r"\*\_\`\[\]"),
            (r"back\slash", r"back\\slash"),
        ] {
            assert_eq!(md_escape(input), want, "md_escape({input:?})");
        }
    }

    #[test]
    fn flavours_mark_up_or_not() {
        assert_eq!(Flavour::Markdown.strong("max_iter"), r"**max\_iter**");
        assert_eq!(Flavour::Plain.strong("max_iter"), "max_iter");
        assert_eq!(Flavour::Plain.escape("a\nb"), "a b");
        assert_eq!(
            Flavour::Markdown.link("t_1", Some("http://j")),
            r"[t\_1](<http://j>)"
        );
        assert_eq!(
            Flavour::Plain.link("t_1", Some("http://j")),
            "t_1 (http://j)"
        );
        assert_eq!(Flavour::Plain.link("t_1", None), "t_1");
    }

    #[test]
    fn parameters_read_as_their_kind() {
        for (name, value, want) in [
            ("n_neighbors", "5.0", "5"),
            ("n_estimators", "100", "100"),
            ("max_depth", "0.0", "None (unlimited)"),
            ("max_depth", "None", "None (unlimited)"),
            ("max_depth", "4.0", "4"),
            ("max_features", "sqrt", "sqrt"),
            ("C", "1.0", "1.0"),
            ("tol", "0.0001", "0.0001"),
            ("n_neighbors", "2.5", "2.5"),
        ] {
            assert_eq!(param_value(name, value), want, "{name}={value}");
        }
    }

    #[test]
    fn labels_and_numbers() {
        for (name, want) in [
            ("accuracy", "Accuracy"),
            ("balanced_accuracy", "Balanced accuracy"),
            ("roc_auc", "ROC AUC"),
            ("some_new_metric", "Some new metric"),
            ("", ""),
        ] {
            assert_eq!(metric_label(name), want);
        }
        for (ms, want) in [
            (-1, "n/a"),
            (15, "15 ms"),
            (1234, "1.2 s"),
            (125_000, "2 min 5 s"),
            (7_500_000, "2 h 5 min"),
        ] {
            assert_eq!(duration(ms), want);
        }
        assert_eq!(pvalue(0.012345), "0.0123");
        assert_eq!(pvalue(0.00001), "1.0e-5");
        assert_eq!(pvalue(f64::NAN), "n/a");
    }
}
