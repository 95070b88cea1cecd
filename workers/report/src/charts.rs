//! The report's charts: inline SVG drawn with plotters' SVG backend.
//!
//! Each function takes plain numbers and labels and returns one `<svg>` element ready to be
//! placed in the page, or `None` when there is nothing to draw. Plotters is built without its
//! `ttf` feature, so it reads no system font: text is written as SVG `<text>` elements that the
//! browser lays out, and plotters escapes it. The root element is rewritten so the chart scales
//! with the page (`viewBox`, no fixed size), carries an accessible `<title>`, and names no
//! namespace URL (inline SVG in HTML needs none, and the page carries no URL at all).
//!
//! Non-finite values are skipped, never drawn.

use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Why a chart could not be drawn (a defect of the chart code, never of the data).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the {chart} chart: {message}")]
pub struct ChartError {
    chart: &'static str,
    message: String,
}

/// The SVG of one chart.
pub type Svg = Result<String, ChartError>;

const ACCENT: RGBColor = RGBColor(37, 99, 235);
const ORANGE: RGBColor = RGBColor(217, 119, 6);
const GREY: RGBColor = RGBColor(120, 130, 140);
const RED: RGBColor = RGBColor(200, 40, 40);
const FONT: &str = "sans-serif";

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error + 'static>>;

/// Draws into a `width`×`height` SVG and rewrites its root element (see the module doc).
fn svg(
    chart: &'static str,
    title: &str,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Svg {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (width, height)).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(&root).map_err(|e| e.to_string()))
            .and_then(|()| root.present().map_err(|e| e.to_string()));
        if let Err(message) = drawn {
            return Err(ChartError { chart, message });
        }
    }
    let Some(end) = buf.find('>') else {
        return Err(ChartError {
            chart,
            message: "the backend wrote no <svg> element".to_owned(),
        });
    };
    let mut out = String::with_capacity(buf.len() + 200);
    out.push_str(&format!(
        "<svg class=\"chart\" data-chart=\"{chart}\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" preserveAspectRatio=\"xMidYMid meet\"><title>"
    ));
    out.push_str(&html_escape(title));
    out.push_str("</title>");
    out.push_str(&buf[end + 1..]);
    Ok(out)
}

/// HTML-escapes text outside the templates: a chart's `<title>`, and the note that replaces a
/// chart that could not be drawn ([`crate::render`]).
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// `lo..hi` covering `values` and `[floor, ceil]`, padded a little.
fn span(values: impl Iterator<Item = f64>, floor: f64, ceil: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (floor, ceil);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.04;
    (lo - if lo < floor { pad } else { 0.0 }, hi + pad)
}

/// Every chart's mesh: labels (`label_size` px) and axis descriptions (16 px) in [`FONT`], no
/// light grid lines.
trait HouseStyle {
    fn house_style(&mut self, label_size: u32) -> &mut Self;
}

impl<X: Ranged, Y: Ranged, DB: DrawingBackend> HouseStyle for MeshStyle<'_, '_, X, Y, DB> {
    fn house_style(&mut self, label_size: u32) -> &mut Self {
        self.label_style((FONT, label_size))
            .axis_desc_style((FONT, 16))
            .light_line_style(WHITE.mix(0.0))
    }
}

/// The bar of category `i` on a segmented x axis whose y axis starts at `lo`: from 0 (or `lo`
/// when the axis starts above 0) to `value`, `gap` px short of its neighbours on each side.
fn column(i: usize, value: f64, lo: f64, gap: u32) -> Rectangle<(SegmentValue<usize>, f64)> {
    let mut bar = Rectangle::new(
        [
            (SegmentValue::Exact(i), lo.max(0.0).min(value)),
            (SegmentValue::Exact(i + 1), value),
        ],
        ACCENT.filled(),
    );
    bar.set_margin(0, 0, gap, gap);
    bar
}

/// One bar per fold: a metric of each fold, with its mean as a dashed line.
pub fn fold_scores(metric: &str, folds: &[(u32, f64)]) -> Option<Svg> {
    if folds.iter().all(|(_, v)| !v.is_finite()) {
        return None;
    }
    let n = folds.len();
    let finite: Vec<f64> = folds
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .collect();
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    let (lo, hi) = span(finite.iter().copied(), 0.0, 1.0);
    let title = format!("{metric} of each of the {n} folds; dashed line: the mean");
    Some(svg("folds", &title, (640, 260), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d((0..n - 1).into_segmented(), lo..hi)?;
        let every = n.div_ceil(20).max(1);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(20))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if i % every == 0 => {
                    folds.get(*i).map(|f| f.0.to_string()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .x_desc("fold")
            .y_desc(metric)
            .house_style(16)
            .draw()?;
        chart.draw_series(
            folds
                .iter()
                .enumerate()
                .filter(|(_, (_, v))| v.is_finite())
                .map(|(i, (_, v))| column(i, *v, lo, 2)),
        )?;
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(SegmentValue::Exact(0), mean), (SegmentValue::Last, mean)],
            8,
            5,
            ORANGE.stroke_width(2),
        )))?;
        Ok(())
    }))
}

/// The confusion matrix as a heatmap: cells shaded by their share of the row (the true class),
/// labelled with the count.
pub fn confusion(classes: &[String], matrix: &[Vec<u64>]) -> Option<Svg> {
    let k = classes.len();
    if k == 0 || matrix.len() != k {
        return None;
    }
    let cell = if k <= 4 {
        110
    } else {
        (360 / k as u32).max(24)
    };
    let side = cell * k as u32;
    let title = format!("Confusion matrix of {k} classes: rows true, columns predicted");
    Some(svg("confusion", &title, (side + 150, side + 90), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(100)
            .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => {
                classes.get(*i).map(|c| shorten(c, 14)).unwrap_or_default()
            }
            _ => String::new(),
        };
        // Rows from the top: row i is drawn at y = k - 1 - i.
        let row_label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < k => classes
                .get(k - 1 - *i)
                .map(|c| shorten(c, 14))
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(k)
            .y_labels(k)
            .x_label_formatter(&label)
            .y_label_formatter(&row_label)
            .x_desc("predicted")
            .y_desc("true")
            .house_style(16)
            .draw()?;
        for (i, row) in matrix.iter().enumerate() {
            let total: u64 = row.iter().sum();
            let y = k - 1 - i;
            for (j, &count) in row.iter().enumerate().take(k) {
                let share = if total == 0 {
                    0.0
                } else {
                    count as f64 / total as f64
                };
                let color = ACCENT.mix(if count == 0 {
                    0.04
                } else {
                    0.12 + 0.83 * share
                });
                chart.draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(j), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(j + 1), SegmentValue::Exact(y + 1)),
                    ],
                    color.filled(),
                )))?;
                let ink = if share > 0.55 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, if k <= 6 { 16 } else { 11 }))
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart.draw_series(std::iter::once(Text::new(
                    count.to_string(),
                    (SegmentValue::CenterOf(j), SegmentValue::CenterOf(y)),
                    style,
                )))?;
            }
        }
        Ok(())
    }))
}

/// The ROC curve with the chance diagonal; the AUC is in the legend.
pub fn roc(fpr: &[f64], tpr: &[f64], auc: f64) -> Option<Svg> {
    let points: Vec<(f64, f64)> = fpr
        .iter()
        .zip(tpr)
        .map(|(x, y)| (*x, *y))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if points.len() < 2 {
        return None;
    }
    let title = format!("ROC curve, AUC {auc:.3}");
    Some(svg("roc", &title, (420, 400), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("false-positive rate")
            .y_desc("true-positive rate")
            .house_style(16)
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            GREY.stroke_width(1),
        )))?;
        chart
            .draw_series(LineSeries::new(points, ACCENT.stroke_width(2)))?
            .label(format!("AUC = {auc:.3}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ACCENT.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .label_font((FONT, 14))
            .draw()?;
        Ok(())
    }))
}

/// One bar per category (sites, candidates…): `values[i]` named `names[i]`.
pub fn bars(
    chart_name: &'static str,
    metric: &str,
    names: &[String],
    values: &[f64],
) -> Option<Svg> {
    let n = names.len().min(values.len());
    if n == 0 || values.iter().all(|v| !v.is_finite()) {
        return None;
    }
    let (lo, hi) = span(values.iter().copied(), 0.0, 1.0);
    let title = format!(
        "{metric} per {}",
        if chart_name == "sites" {
            "site"
        } else {
            "item"
        }
    );
    let width = (120 + 60 * n as u32).clamp(360, 720);
    Some(svg(chart_name, &title, (width, 280), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d((0..n - 1).into_segmented(), lo..hi)?;
        let max_chars = (90 / n).clamp(4, 18);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names
                    .get(*i)
                    .map(|s| shorten(s, max_chars))
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc(metric)
            .house_style(16)
            .draw()?;
        chart.draw_series(
            values
                .iter()
                .take(n)
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, v)| column(i, *v, lo, 6)),
        )?;
        Ok(())
    }))
}

/// The optimisation curve of a grid search: each candidate's mean score with ± sd whiskers, in
/// the order evaluated, the best one marked.
pub fn grid_curve(
    metric: &str,
    labels: &[String],
    means: &[f64],
    sds: &[f64],
    best: usize,
) -> Option<Svg> {
    let n = means.len();
    if n == 0 || means.iter().all(|v| !v.is_finite()) {
        return None;
    }
    let sd = |i: usize| sds.get(i).copied().filter(|s| s.is_finite()).unwrap_or(0.0);
    let (lo, hi) = span(
        means
            .iter()
            .enumerate()
            .flat_map(|(i, m)| [m - sd(i), m + sd(i)]),
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    let title = format!("Grid search: mean {metric} ± sd of each of the {n} candidates");
    Some(svg("grid", &title, (640, 300), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), lo..hi)?;
        let every = n.div_ceil(12).max(1);
        chart
            .configure_mesh()
            .x_labels(n.min(12))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() > 1e-6 || i < 0.0 || (i as usize) >= labels.len() {
                    return String::new();
                }
                let i = i as usize;
                if i % every == 0 {
                    i.to_string()
                } else {
                    String::new()
                }
            })
            .x_desc("candidate (# in the table)")
            .y_desc(metric)
            .house_style(15)
            .draw()?;
        let points: Vec<(f64, f64)> = means
            .iter()
            .enumerate()
            .filter(|(_, m)| m.is_finite())
            .map(|(i, m)| (i as f64, *m))
            .collect();
        chart.draw_series(points.iter().map(|&(x, m)| {
            let s = sd(x as usize);
            PathElement::new(vec![(x, m - s), (x, m + s)], GREY.stroke_width(1))
        }))?;
        chart.draw_series(LineSeries::new(points.clone(), ACCENT.stroke_width(2)))?;
        chart.draw_series(
            points
                .iter()
                .map(|&(x, m)| Circle::new((x, m), 3, ACCENT.filled())),
        )?;
        if let Some(m) = means.get(best).filter(|m| m.is_finite()) {
            chart.draw_series(std::iter::once(Circle::new(
                (best as f64, *m),
                7,
                ORANGE.stroke_width(3),
            )))?;
        }
        Ok(())
    }))
}

/// The permutation test: a histogram of the permuted scores and the observed score as a line.
pub fn permutation(metric: &str, scores: &[f64], observed: f64, p_value: f64) -> Option<Svg> {
    let finite: Vec<f64> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    let (mut lo, mut hi) = span(
        finite.iter().copied().chain([observed]),
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    if !observed.is_finite() {
        (lo, hi) = span(finite.iter().copied(), f64::INFINITY, f64::NEG_INFINITY);
    }
    let bins = ((finite.len() as f64).sqrt().ceil() as usize).clamp(5, 40);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    for v in &finite {
        let b = (((v - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let top = f64::from(counts.iter().copied().max().unwrap_or(1)) * 1.15;
    let title = format!(
        "{metric} of {} label permutations; orange line: the observed score {observed:.3} (p = {p_value:.4})",
        finite.len()
    );
    Some(svg("permutation", &title, (640, 280), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(lo..hi, 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(metric)
            .y_desc("permutations")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .house_style(16)
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(b, &c)| {
            let x0 = lo + width * b as f64;
            let mut bar = Rectangle::new(
                [(x0, 0.0), (x0 + width, f64::from(c))],
                GREY.mix(0.7).filled(),
            );
            bar.set_margin(0, 0, 1, 1);
            bar
        }))?;
        if observed.is_finite() {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(observed, 0.0), (observed, top)],
                ORANGE.stroke_width(3),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("observed {observed:.3}"),
                (observed, top * 0.97),
                TextStyle::from((FONT, 13))
                    .color(&ORANGE)
                    .pos(Pos::new(HPos::Right, VPos::Top)),
            )))?;
        }
        Ok(())
    }))
}

/// Horizontal bars of feature weights, largest |weight| at the top, signed.
pub fn features(kind: &str, names: &[String], values: &[f64]) -> Option<Svg> {
    let n = names.len().min(values.len());
    if n == 0 {
        return None;
    }
    let (lo, hi) = span(values.iter().copied().chain([0.0]), 0.0, 0.0);
    let (lo, hi) = if hi - lo < 1e-12 {
        (-1.0, 1.0)
    } else {
        (lo, hi)
    };
    let height = (60 + 22 * n as u32).max(160);
    let title = format!("The {n} largest feature {kind} by magnitude");
    Some(svg("features", &title, (680, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(240)
            .build_cartesian_2d(lo..hi, (0..n - 1).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                // The first feature at the top.
                SegmentValue::CenterOf(i) if *i < n => shorten(&names[n - 1 - *i], 34),
                _ => String::new(),
            })
            .x_desc(kind)
            .house_style(15)
            .draw()?;
        chart.draw_series(
            values
                .iter()
                .take(n)
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, v)| {
                    let y = n - 1 - i;
                    let color = if *v >= 0.0 { ACCENT } else { ORANGE };
                    let mut bar = Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(y)),
                            (*v, SegmentValue::Exact(y + 1)),
                        ],
                        color.filled(),
                    );
                    bar.set_margin(3, 3, 0, 0);
                    bar
                }),
        )?;
        Ok(())
    }))
}

/// A volcano plot: effect size against −log10(p) per feature, significant ones (after FDR) in
/// red, the others grey.
pub fn volcano(effect_label: &str, points: &[(f64, f64, bool)]) -> Option<Svg> {
    let pts: Vec<(f64, f64, bool)> = points
        .iter()
        .filter(|(e, p, _)| e.is_finite() && p.is_finite() && *p > 0.0)
        .map(|&(e, p, s)| (e, -p.log10(), s))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let (xlo, xhi) = span(pts.iter().map(|p| p.0), 0.0, 0.0);
    let (xlo, xhi) = (xlo.min(-xhi.abs()), xhi.max(xlo.abs()));
    let (_, yhi) = span(pts.iter().map(|p| p.1), 0.0, 1.0);
    let significant = pts.iter().filter(|p| p.2).count();
    let title = format!(
        "Volcano plot of {} features: {effect_label} against -log10(p); {significant} significant after FDR in red",
        pts.len()
    );
    Some(svg("volcano", &title, (600, 400), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(xlo..xhi, 0.0..yhi)?;
        chart
            .configure_mesh()
            .x_desc(effect_label)
            .y_desc("-log10(p)")
            .house_style(16)
            .draw()?;
        chart.draw_series(
            pts.iter()
                .filter(|p| !p.2)
                .map(|&(x, y, _)| Circle::new((x, y), 2, GREY.mix(0.6).filled())),
        )?;
        chart.draw_series(
            pts.iter()
                .filter(|p| p.2)
                .map(|&(x, y, _)| Circle::new((x, y), 3, RED.filled())),
        )?;
        Ok(())
    }))
}

/// A regression's fit: each out-of-fold prediction against its true value, with the identity
/// line (a perfect prediction lies on it).
pub fn predicted_vs_true(points: &[(f64, f64)]) -> Option<Svg> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, p)| t.is_finite() && p.is_finite())
        .collect();
    if pts.is_empty() {
        return None;
    }
    // One range for both axes, so the identity line is the diagonal.
    let (lo, hi) = span(
        pts.iter().flat_map(|&(t, p)| [t, p]),
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    let title = format!(
        "Predicted against true value of {} out-of-fold predictions; grey line: prediction = truth",
        pts.len()
    );
    Some(svg("scatter", &title, (460, 440), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(lo..hi, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("true value")
            .y_desc("predicted value")
            .house_style(15)
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(lo, lo), (hi, hi)],
            GREY.stroke_width(1),
        )))?;
        chart.draw_series(
            pts.iter()
                .map(|&(t, p)| Circle::new((t, p), 3, ACCENT.mix(0.7).filled())),
        )?;
        Ok(())
    }))
}

/// A regression's residuals: prediction − truth against the prediction, with the zero line (a
/// pattern around it is bias the model left).
pub fn residuals(points: &[(f64, f64)]) -> Option<Svg> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, p)| t.is_finite() && p.is_finite())
        .map(|(t, p)| (p, p - t))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let (xlo, xhi) = span(pts.iter().map(|p| p.0), f64::INFINITY, f64::NEG_INFINITY);
    let (ylo, yhi) = span(pts.iter().map(|p| p.1), 0.0, 0.0);
    let bound = ylo.abs().max(yhi.abs());
    let title = format!(
        "Residual (predicted − true) against the prediction of {} out-of-fold predictions",
        pts.len()
    );
    Some(svg("residuals", &title, (600, 300), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(xlo..xhi, -bound..bound)?;
        chart
            .configure_mesh()
            .x_desc("predicted value")
            .y_desc("residual")
            .house_style(15)
            .draw()?;
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(xlo, 0.0), (xhi, 0.0)],
            8,
            5,
            GREY.stroke_width(1),
        )))?;
        chart.draw_series(
            pts.iter()
                .map(|&(x, r)| Circle::new((x, r), 3, ORANGE.mix(0.7).filled())),
        )?;
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("<s{i}>")).collect()
    }

    #[test]
    fn every_chart_is_one_clean_svg_element() {
        let charts = [
            fold_scores("accuracy", &[(0, 0.7), (1, f64::NAN), (2, 0.9)]),
            confusion(&names(2), &[vec![5, 1], vec![2, 7]]),
            roc(&[0.0, 0.2, 1.0], &[0.0, 0.8, 1.0], 0.81),
            bars("sites", "accuracy", &names(3), &[0.5, 0.6, 0.7]),
            grid_curve(
                "accuracy",
                &names(3),
                &[0.5, 0.6, 0.55],
                &[0.1, 0.1, 0.1],
                1,
            ),
            permutation("accuracy", &[0.4, 0.5, 0.55, 0.45, 0.5, 0.6], 0.8, 0.01),
            features("coefficients", &names(4), &[1.0, -0.8, 0.5, -0.1]),
            volcano("Cohen's d", &[(0.5, 0.001, true), (-0.1, 0.5, false)]),
            predicted_vs_true(&[(1.0, 1.2), (2.0, 1.7), (3.0, f64::NAN)]),
            residuals(&[(1.0, 1.2), (2.0, 1.7)]),
        ];
        for chart in charts {
            let svg = chart.expect("something to draw").expect("drawn");
            assert!(svg.starts_with("<svg class=\"chart\""), "{svg}");
            assert_eq!(svg.matches("<svg").count(), 1);
            assert!(svg.trim_end().ends_with("</svg>"));
            assert!(!svg.contains("http"), "a URL in {svg}");
            assert!(!svg.contains("<s0>"), "unescaped text in {svg}");
            assert!(svg.contains("<text"), "no text in {svg}");
        }
    }

    #[test]
    fn nothing_to_draw_is_none() {
        assert!(fold_scores("accuracy", &[(0, f64::NAN)]).is_none());
        assert!(confusion(&[], &[]).is_none());
        assert!(roc(&[0.0], &[0.0], 0.5).is_none());
        assert!(bars("sites", "accuracy", &[], &[]).is_none());
        assert!(grid_curve("accuracy", &[], &[], &[], 0).is_none());
        assert!(permutation("accuracy", &[f64::NAN], 0.5, 1.0).is_none());
        assert!(features("coefficients", &[], &[]).is_none());
        assert!(volcano("d", &[(f64::NAN, 0.1, false)]).is_none());
        assert!(predicted_vs_true(&[(f64::NAN, 1.0)]).is_none());
        assert!(residuals(&[]).is_none());
    }

    #[test]
    fn long_labels_are_shortened() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
