//! Training-dynamics figures, each drawn once on a bitmap (PNG) and once as
//! SVG by the same code:
//!
//! - `fig1_loss_accuracy`: train/test loss and accuracy (2×2);
//! - `fig2_eigenvalues`: the top-k Hessian eigenvalues against 2/η, and the
//!   preconditioned sharpness of adaptive optimizers against 2(1+β₁)/((1−β₁)η);
//! - `fig3_displacement`: consecutive eigenvector displacement and its rate;
//! - `fig9_alignment`: gradient and update alignment with the top-k subspace.
//!
//! Seeds of one (optimizer, label) are averaged per step with a min–max band
//! by [`crate::data::aggregate`] (one lazy polars `group_by`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use polars::prelude::*;

use crate::axis::{fmt_plain, Axis, Scale};
use crate::data::{aggregate, Curve, Kind, Table, Tagged};
use crate::font::FAMILY;
use crate::palette::{
    band_outline, darker, is_sgd_family, optimizer_color, optimizer_rank, shade, BAND_ALPHA,
};
use crate::{ReportError, ReportInput};

const WIDTH: u32 = 2400;
const HEIGHT_2X2: u32 = 1800;
const HEIGHT_1X2: u32 = 1050;

const TITLE_PX: f64 = 46.0;
const AXIS_DESC_PX: f64 = 42.0;
const TICK_PX: f64 = 36.0;
const LEGEND_PX: f64 = 40.0;
const NOTE_PX: f64 = 34.0;

const LINE_W: u32 = 5;
const THIN_W: u32 = 2;
const REF_W: u32 = 4;
const GRID_MAJOR: RGBColor = RGBColor(0xD9, 0xD9, 0xD9);
const GRID_MINOR: RGBColor = RGBColor(0xF0, 0xF0, 0xF0);
const REF_GREY: RGBColor = RGBColor(0x70, 0x70, 0x70);
const INK: RGBColor = RGBColor(0x20, 0x20, 0x20);

/// Every fixed string the figures draw (for a glyph-coverage check).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const TEXTS: &[&str] = &[
    "(a) Train loss",
    "(b) Test loss",
    "(c) Train accuracy",
    "(d) Test accuracy",
    "cross-entropy loss",
    "accuracy",
    "(a) Top-k Hessian eigenvalues",
    "(b) Preconditioned sharpness (adaptive optimizers)",
    "eigenvalue λᵢ",
    "λ₁ of P⁻¹H",
    "no adaptive optimizer",
    "(a) Consecutive eigenvector displacement",
    "(b) Displacement rate per step",
    "mean over ranks of d(tₙ, tₙ₊₁)",
    "d(tₙ, tₙ₊₁) / (tₙ₊₁ − tₙ)",
    "(a) Gradient alignment",
    "(b) Update alignment",
    "‖Vₖᵀg‖² / ‖g‖²",
    "‖Vₖᵀu‖² / ‖u‖²",
    "λ₁ (thick)",
    "λ₂ … λ₉ (thin)",
    "2/η",
    "2/η, η = 0.05",
    "38/η",
    "38/η, η = 0.003",
    "2(1+β₁)/((1−β₁)η) = 12",
    "threshold = 4",
    "stability threshold (dashed)",
    "step + 1",
    "step",
    "tₙ + 1",
    "tₙ",
    "(diverged)",
    "line: mean over seeds · band: min–max",
    "no data",
];

fn io_err(file: &Path) -> impl Fn(PolarsError) -> ReportError + '_ {
    move |e| ReportError::Data {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}

/// The first value of an f64 column of a one-row summary frame.
fn first_f64(df: &DataFrame, name: &str, file: &Path) -> Result<Option<f64>, ReportError> {
    let c = df.column(name).map_err(io_err(file))?;
    Ok(c.f64().map_err(io_err(file))?.get(0))
}

/// What one run contributes, each frame reduced to `step` plus value columns.
struct RunData {
    /// `step`, `train_loss`, `test_loss`, `train_acc`, `test_acc`.
    train: DataFrame,
    diverged: bool,
    lr: Option<f64>,
    /// `step`, `rank`, `value`: Hessian eigenvalues (rank ≥ 0).
    hessian: DataFrame,
    /// The Hessian's stability threshold from spectrum.arrow (first finite).
    hessian_threshold: Option<f64>,
    /// `step`, `value`: λ₁ of the preconditioned operator.
    precond: DataFrame,
    precond_threshold: Option<f64>,
    /// `step` = t_w, `displacement`, `per_step`: means over ranks.
    displacement: DataFrame,
    /// `step`, `grad_alignment`, `update_alignment`.
    alignment: DataFrame,
}

fn sorted_by_step(lf: LazyFrame) -> LazyFrame {
    lf.sort(["step"], SortMultipleOptions::default())
}

fn load_run(run: &crate::RunInput) -> Result<RunData, ReportError> {
    // train.arrow
    let path = run.file("train.arrow")?;
    let t = Table::open(path)?;
    let mut cols = vec![t.col("step", Kind::Int)?.alias("step")];
    for name in ["train_loss", "test_loss", "train_acc", "test_acc"] {
        cols.push(t.col(name, Kind::Float)?.alias(name));
    }
    let train = t.query(|lf| sorted_by_step(lf.select(cols)))?;
    let diverged = if t.has("diverged") {
        t.col("diverged", Kind::Bool)?.any(true)
    } else {
        t.col("train_loss", Kind::Float)?
            .is_finite()
            .not()
            .any(true)
    };
    let mut summary = vec![diverged.cast(DataType::Float64).alias("diverged")];
    if t.has("lr") || is_sgd_family(&run.optimizer) {
        summary.push(t.col("lr", Kind::Float)?.first().alias("lr"));
    }
    let s = t.query(|lf| lf.select(summary))?;
    let diverged = first_f64(&s, "diverged", path)?.unwrap_or(0.0) > 0.5;
    let lr = if s.schema().contains("lr") {
        first_f64(&s, "lr", path)?
    } else {
        None
    };

    // metrics/spectrum.arrow
    let path = run.file("metrics/spectrum.arrow")?;
    let sp = Table::open(path)?;
    let (step, op, rank, ev, thr) = (
        sp.col("step", Kind::Int)?,
        sp.col("operator", Kind::Str)?,
        sp.col("rank", Kind::Int)?,
        sp.col("eigenvalue", Kind::Float)?,
        sp.col("threshold", Kind::Float)?,
    );
    let is_h = op.clone().eq(lit("hessian"));
    let is_p = op.eq(lit("preconditioned"));
    let hessian = sp.query(|lf| {
        sorted_by_step(
            lf.filter(is_h.clone().and(rank.clone().gt_eq(lit(0i64))))
                .select([
                    step.clone().alias("step"),
                    rank.clone().alias("rank"),
                    ev.clone().alias("value"),
                ]),
        )
    })?;
    let precond = sp.query(|lf| {
        sorted_by_step(
            lf.filter(is_p.clone().and(rank.clone().eq(lit(0i64))))
                .select([step.clone().alias("step"), ev.clone().alias("value")]),
        )
    })?;
    let finite_first = |sel: Expr| {
        thr.clone()
            .filter(
                sel.and(thr.clone().is_finite())
                    .and(thr.clone().gt(lit(0.0))),
            )
            .first()
    };
    let s = sp.query(|lf| {
        lf.select([
            finite_first(is_h.clone()).alias("h"),
            finite_first(is_p.clone()).alias("p"),
        ])
    })?;
    let hessian_threshold = first_f64(&s, "h", path)?;
    let precond_threshold = first_f64(&s, "p", path)?;

    // metrics/displacement.arrow: consecutive pairs, mean over ranks per t_w
    let path = run.file("metrics/displacement.arrow")?;
    let d = Table::open(path)?;
    let keep = d
        .col("consecutive", Kind::Bool)?
        .and(d.col("operator", Kind::Str)?.eq(lit("hessian")));
    let (t_w, disp, per_step) = (
        d.col("t_w", Kind::Int)?,
        d.col("matched_displacement", Kind::Float)?,
        d.col("per_step", Kind::Float)?,
    );
    let displacement = d.query(|lf| {
        sorted_by_step(
            lf.filter(keep)
                .select([
                    t_w.alias("step"),
                    disp.alias("displacement"),
                    per_step.alias("per_step"),
                ])
                .group_by([col("step")])
                .agg([col("displacement").mean(), col("per_step").mean()]),
        )
    })?;

    // metrics/alignment.arrow
    let path = run.file("metrics/alignment.arrow")?;
    let a = Table::open(path)?;
    let cols = vec![
        a.col("step", Kind::Int)?.alias("step"),
        a.col("grad_alignment", Kind::Float)?
            .alias("grad_alignment"),
        a.col("update_alignment", Kind::Float)?
            .alias("update_alignment"),
    ];
    let alignment = a.query(|lf| sorted_by_step(lf.select(cols)))?;

    Ok(RunData {
        train,
        diverged,
        lr,
        hessian,
        hessian_threshold,
        precond,
        precond_threshold,
        displacement,
        alignment,
    })
}

/// A group of runs drawn as one curve: same optimizer, same label.
struct Group {
    optimizer: String,
    label: String,
    color: RGBColor,
    runs: usize,
    lr: Option<f64>,
    hessian_threshold: Option<f64>,
    precond_threshold: Option<f64>,
}

struct Loaded {
    groups: Vec<Group>,
    frames: Vec<RunData>,
    /// Per run: the index of its group.
    group_of: Vec<usize>,
    optimizers: Vec<String>,
}

impl Loaded {
    fn load(input: &ReportInput) -> Result<Loaded, ReportError> {
        let frames = input
            .runs
            .iter()
            .map(load_run)
            .collect::<Result<Vec<_>, _>>()?;
        let mut groups: Vec<Group> = Vec::new();
        let mut raw_group = Vec::with_capacity(frames.len());
        for (run, f) in input.runs.iter().zip(&frames) {
            let label = if f.diverged {
                format!("{} (diverged)", run.label)
            } else {
                run.label.clone()
            };
            let i = match groups
                .iter()
                .position(|g| g.optimizer == run.optimizer && g.label == label)
            {
                Some(i) => i,
                None => {
                    groups.push(Group {
                        optimizer: run.optimizer.clone(),
                        label,
                        color: optimizer_color(&run.optimizer),
                        runs: 0,
                        lr: f.lr,
                        hessian_threshold: f.hessian_threshold,
                        precond_threshold: f.precond_threshold,
                    });
                    groups.len() - 1
                }
            };
            groups[i].runs += 1;
            raw_group.push(i);
        }
        // Legend order: palette order of the optimizer, then first appearance;
        // several groups of one optimizer get shades of its colour.
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&i| (optimizer_rank(&groups[i].optimizer), i));
        let mut new_index = vec![0; groups.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let mut slots: Vec<Option<Group>> = groups.into_iter().map(Some).collect();
        let mut groups: Vec<Group> = order.iter().filter_map(|&i| slots[i].take()).collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for g in &mut groups {
            let n = seen.entry(g.optimizer.clone()).or_insert(0);
            g.color = shade(g.color, *n);
            *n += 1;
        }
        let group_of = raw_group.iter().map(|&i| new_index[i]).collect();
        Ok(Loaded {
            groups,
            frames,
            group_of,
            optimizers: input.runs.iter().map(|r| r.optimizer.clone()).collect(),
        })
    }

    /// One curve per group (in group order) of `column` of the frame `pick`
    /// selects, averaged over seeds; `positive` drops values ≤ 0 (log axes).
    fn curves(
        &self,
        pick: fn(&RunData) -> &DataFrame,
        column: &str,
        positive: bool,
        only: impl Fn(&Group) -> bool,
    ) -> Result<Vec<Curve>, ReportError> {
        let tagged: Vec<Tagged<'_>> = self
            .frames
            .iter()
            .zip(&self.group_of)
            .zip(&self.optimizers)
            .filter(|((_, &g), _)| only(&self.groups[g]))
            .map(|((f, &g), opt)| Tagged {
                optimizer: opt,
                label: &self.groups[g].label,
                frame: pick(f),
            })
            .collect();
        let mut by_key = aggregate(&tagged, column, positive)?;
        Ok(self
            .groups
            .iter()
            .map(|g| {
                by_key
                    .remove(&(g.optimizer.clone(), g.label.clone()))
                    .unwrap_or_default()
            })
            .collect())
    }
}

/// A curve to draw: the mean line and, optionally, its min–max band.
struct Line {
    curve: Curve,
    color: RGBColor,
    width: u32,
    band: bool,
}

/// A horizontal reference line, labelled at its right end.
struct RefLine {
    value: f64,
    color: RGBColor,
    label: String,
}

struct Panel {
    title: String,
    x_desc: String,
    y_desc: String,
    x: Axis,
    y: Axis,
    lines: Vec<Line>,
    refs: Vec<RefLine>,
    /// Shown in the middle when there is nothing to draw.
    empty_note: &'static str,
}

fn finite_range(values: impl IntoIterator<Item = f64>, positive: bool) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite() && (!positive || *v > 0.0))
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
}

fn curve_values<'a>(curves: impl IntoIterator<Item = &'a Curve>) -> Vec<f64> {
    curves
        .into_iter()
        .flat_map(|c| c.mean.iter().chain(&c.lo).chain(&c.hi).copied())
        .collect()
}

fn y_axis(scale: Scale, values: Vec<f64>, default: (f64, f64)) -> Axis {
    let (lo, hi) = finite_range(values, scale != Scale::Linear).unwrap_or(default);
    Axis::fit(scale, lo, hi, 0.05)
}

/// Log when every value is positive and max/min exceeds `factor`.
fn auto_scale(values: &[f64], factor: f64) -> Scale {
    let positive = values.iter().filter(|v| v.is_finite()).all(|v| *v > 0.0);
    let spread = finite_range(values.iter().copied(), true)
        .map(|(lo, hi)| hi / lo)
        .unwrap_or(1.0);
    if positive && spread > factor {
        Scale::Log
    } else {
        Scale::Linear
    }
}

/// A step axis over the curves: log(step + 1) when it spans ≥ 100×.
fn step_axis<'a>(curves: impl IntoIterator<Item = &'a Curve>, t_n: bool) -> (Axis, String) {
    let (lo, hi) = finite_range(
        curves.into_iter().flat_map(|c| c.step.iter().copied()),
        false,
    )
    .unwrap_or((0.0, 1.0));
    let (lo, hi) = (lo.max(0.0), hi.max(0.0));
    let name = if t_n { "tₙ" } else { "step" };
    if (hi + 1.0) / (lo + 1.0) >= 100.0 {
        (
            Axis::fit(Scale::LogPlusOne, lo, hi, 0.02),
            format!("{name} + 1"),
        )
    } else {
        (Axis::fit(Scale::Linear, lo, hi, 0.02), name.to_string())
    }
}

fn unit_axis() -> Axis {
    let mut y = Axis::fixed(Scale::Linear, 0.0, 1.02);
    y.major = (0..=5).map(|i| f64::from(i) * 0.2).collect();
    y.minor = (0..5).map(|i| f64::from(i) * 0.2 + 0.1).collect();
    y
}

fn pe<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn text_style(px: f64, color: RGBColor) -> TextStyle<'static> {
    TextStyle {
        font: (FAMILY, px).into_font(),
        color: color.to_backend_color(),
        pos: Pos::new(HPos::Left, VPos::Top),
    }
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> Result<(), String> {
    let body = area
        .margin(14, 0, 0, 0)
        .titled(&p.title, text_style(TITLE_PX, INK))
        .map_err(pe)?;
    let mut chart = ChartBuilder::on(&body)
        .margin_top(28)
        .margin_bottom(12)
        .margin_left(16)
        .margin_right(56)
        .x_label_area_size(118)
        .y_label_area_size(170)
        .build_cartesian_2d(p.x.clone(), p.y.clone())
        .map_err(pe)?;
    let x_fmt = |u: &f64| p.x.label(*u);
    let y_fmt = |u: &f64| p.y.label(*u);
    chart
        .configure_mesh()
        .x_desc(p.x_desc.as_str())
        .y_desc(p.y_desc.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(text_style(TICK_PX, INK))
        .axis_desc_style(text_style(AXIS_DESC_PX, INK))
        .bold_line_style(GRID_MAJOR.stroke_width(2))
        .light_line_style(GRID_MINOR.stroke_width(2))
        .axis_style(INK.stroke_width(3))
        .set_all_tick_mark_size(12)
        .draw()
        .map_err(pe)?;

    let pts = |xs: &[f64], ys: &[f64]| -> Vec<(f64, f64)> {
        xs.iter()
            .zip(ys)
            .filter_map(|(&x, &y)| Some((p.x.t(x)?, p.y.t(y)?)))
            .collect()
    };
    for l in p.lines.iter().filter(|l| l.band && !l.curve.is_empty()) {
        if let Some(poly) = band_outline(
            pts(&l.curve.step, &l.curve.hi),
            pts(&l.curve.step, &l.curve.lo),
        ) {
            chart
                .draw_series(std::iter::once(Polygon::new(
                    poly,
                    l.color.mix(BAND_ALPHA).filled(),
                )))
                .map_err(pe)?;
        }
    }
    for r in &p.refs {
        let Some(y) = p.y.t(r.value) else { continue };
        let seg = vec![(p.x.lo, y), (p.x.hi, y)];
        chart
            .draw_series(DashedLineSeries::new(
                seg,
                26,
                14,
                r.color.stroke_width(REF_W),
            ))
            .map_err(pe)?;
    }
    // Thin lines first, so the thick ones stay on top.
    let mut order: Vec<&Line> = p.lines.iter().filter(|l| !l.curve.is_empty()).collect();
    order.sort_by_key(|l| l.width);
    for l in order {
        let line = pts(&l.curve.step, &l.curve.mean);
        chart
            .draw_series(LineSeries::new(line.clone(), l.color.stroke_width(l.width)))
            .map_err(pe)?;
        if l.width >= LINE_W && line.len() <= 60 {
            chart
                .draw_series(line.iter().map(|&c| Circle::new(c, 7, l.color.filled())))
                .map_err(pe)?;
        }
    }
    for r in &p.refs {
        let Some(y) = p.y.t(r.value) else { continue };
        if y < p.y.lo || y > p.y.hi {
            continue;
        }
        let anchor = (p.x.hi - 0.015 * (p.x.hi - p.x.lo), y);
        let style = text_style(TICK_PX, r.color).pos(Pos::new(HPos::Right, VPos::Bottom));
        let (w, h) = area.estimate_text_size(&r.label, &style).map_err(pe)?;
        let (w, h) = (w as i32, h as i32);
        let halo = Rectangle::new([(-w - 8, -h - 14), (6, -4)], WHITE.mix(0.85).filled());
        chart
            .draw_series(std::iter::once(
                EmptyElement::at(anchor) + halo + Text::new(r.label.clone(), (0, -8), style),
            ))
            .map_err(pe)?;
    }
    if p.lines.iter().all(|l| l.curve.is_empty()) {
        let mid = ((p.x.lo + p.x.hi) / 2.0, p.y.lo + 0.5 * (p.y.hi - p.y.lo));
        let style = text_style(AXIS_DESC_PX, REF_GREY).pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .draw_series(std::iter::once(Text::new(p.empty_note, mid, style)))
            .map_err(pe)?;
    }
    Ok(())
}

/// One legend entry: a line sample (or none) and its text.
struct Entry {
    color: RGBColor,
    width: u32,
    dashed: bool,
    sample: bool,
    text: String,
    px: f64,
    text_color: RGBColor,
}

impl Entry {
    fn line(color: RGBColor, width: u32, dashed: bool, text: String) -> Entry {
        Entry {
            color,
            width,
            dashed,
            sample: true,
            text,
            px: LEGEND_PX,
            text_color: INK,
        }
    }
}

const SAMPLE_W: i32 = 84;
const SAMPLE_GAP: i32 = 16;
const ENTRY_GAP: i32 = 64;
const LEGEND_ROW_H: i32 = 62;
const LEGEND_MARGIN: i32 = 40;

fn group_entries(groups: &[Group]) -> Vec<Entry> {
    groups
        .iter()
        .map(|g| Entry::line(g.color, LINE_W + 1, false, g.label.clone()))
        .collect()
}

fn seeds_note(groups: &[Group]) -> Option<Entry> {
    groups.iter().any(|g| g.runs > 1).then(|| Entry {
        color: REF_GREY,
        width: 0,
        dashed: false,
        sample: false,
        text: "line: mean over seeds · band: min–max".to_string(),
        px: NOTE_PX,
        text_color: REF_GREY,
    })
}

/// Per entry its row and x offset; per row its width (rows are centred).
type LegendLayout = (Vec<(usize, i32)>, Vec<i32>);

/// Lays the entries out in rows that fit the figure's width.
fn layout_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> Result<LegendLayout, String> {
    let max_w = WIDTH as i32 - 2 * LEGEND_MARGIN;
    let mut placed = Vec::with_capacity(entries.len());
    let mut rows: Vec<i32> = vec![0];
    for e in entries {
        let (tw, _) = root
            .estimate_text_size(&e.text, &text_style(e.px, e.text_color))
            .map_err(pe)?;
        let w = tw as i32 + if e.sample { SAMPLE_W + SAMPLE_GAP } else { 0 };
        let row = rows.len() - 1;
        let cur = rows[row];
        if cur > 0 && cur + ENTRY_GAP + w > max_w {
            rows.push(w);
            placed.push((row + 1, 0));
        } else {
            let x = if cur > 0 { cur + ENTRY_GAP } else { 0 };
            rows[row] = x + w;
            placed.push((row, x));
        }
    }
    Ok((placed, rows))
}

fn draw_figure<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    entries: &[Entry],
    panels: &[Panel],
    cols: usize,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(pe)?;
    let (placed, rows) = layout_legend(&root, entries)?;
    let legend_h = LEGEND_MARGIN + rows.len() as i32 * LEGEND_ROW_H;
    let (legend, body) = root.split_vertically(legend_h);
    for (e, &(row, x)) in entries.iter().zip(&placed) {
        let left = (WIDTH as i32 - rows[row]) / 2 + x;
        let y = LEGEND_MARGIN / 2 + row as i32 * LEGEND_ROW_H + LEGEND_ROW_H / 2;
        let mut tx = left;
        if e.sample {
            let seg = vec![(left, y), (left + SAMPLE_W, y)];
            let style = e.color.stroke_width(e.width);
            if e.dashed {
                legend
                    .draw(&DashedPathElement::new(seg, 22, 12, style))
                    .map_err(pe)?;
            } else {
                legend.draw(&PathElement::new(seg, style)).map_err(pe)?;
            }
            tx += SAMPLE_W + SAMPLE_GAP;
        }
        let style = text_style(e.px, e.text_color).pos(Pos::new(HPos::Left, VPos::Center));
        legend
            .draw(&Text::new(e.text.clone(), (tx, y), style))
            .map_err(pe)?;
    }
    let cells = body.split_evenly((panels.len().div_ceil(cols), cols));
    for (cell, panel) in cells.iter().zip(panels) {
        draw_panel(cell, panel)?;
    }
    root.present().map_err(pe)?;
    Ok(())
}

/// Writes `<name>.png` and `<name>.svg`; returns both names.
fn write_figure(
    out_dir: &Path,
    name: &str,
    entries: &[Entry],
    panels: &[Panel],
    cols: usize,
) -> Result<Vec<String>, ReportError> {
    let height = if panels.len() > cols {
        HEIGHT_2X2
    } else {
        HEIGHT_1X2
    };
    let png = format!("{name}.png");
    let svg = format!("{name}.svg");
    let plot_err = |file: PathBuf| move |message| ReportError::Plot { file, message };
    let png_path = out_dir.join(&png);
    draw_figure(
        BitMapBackend::new(&png_path, (WIDTH, height)).into_drawing_area(),
        entries,
        panels,
        cols,
    )
    .map_err(plot_err(png_path.clone()))?;
    let svg_path = out_dir.join(&svg);
    draw_figure(
        SVGBackend::new(&svg_path, (WIDTH, height)).into_drawing_area(),
        entries,
        panels,
        cols,
    )
    .map_err(plot_err(svg_path.clone()))?;
    Ok(vec![png, svg])
}

fn lines(groups: &[Group], curves: Vec<Curve>) -> Vec<Line> {
    curves
        .into_iter()
        .zip(groups)
        .map(|(curve, g)| Line {
            curve,
            color: g.color,
            width: LINE_W,
            band: g.runs > 1,
        })
        .collect()
}

fn fig1(d: &Loaded, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    let all = |_: &Group| true;
    let train: fn(&RunData) -> &DataFrame = |f| &f.train;
    let tl = d.curves(train, "train_loss", true, all)?;
    let vl = d.curves(train, "test_loss", true, all)?;
    let ta = d.curves(train, "train_acc", false, all)?;
    let va = d.curves(train, "test_acc", false, all)?;
    let (x, x_desc) = step_axis(tl.iter().chain(&vl).chain(&ta).chain(&va), false);
    let loss_y = y_axis(Scale::Log, curve_values(tl.iter().chain(&vl)), (0.1, 10.0));
    let acc_vals = curve_values(ta.iter().chain(&va));
    let acc_y = match finite_range(acc_vals, false) {
        Some((lo, hi)) if lo >= 0.0 && hi <= 1.0 => {
            let lo = (lo * 10.0).floor() / 10.0;
            let mut a = Axis::fixed(Scale::Linear, lo - 0.02, 1.02);
            a.major.retain(|&v| v <= 1.0 + 1e-9);
            a
        }
        Some((lo, hi)) => Axis::fit(Scale::Linear, lo, hi, 0.05),
        None => unit_axis(),
    };
    let panel = |title: &str, y_desc: &str, y: &Axis, curves: Vec<Curve>| Panel {
        title: title.to_string(),
        x_desc: x_desc.clone(),
        y_desc: y_desc.to_string(),
        x: x.clone(),
        y: y.clone(),
        lines: lines(&d.groups, curves),
        refs: vec![],
        empty_note: "no data",
    };
    let panels = [
        panel("(a) Train loss", "cross-entropy loss", &loss_y, tl),
        panel("(b) Test loss", "cross-entropy loss", &loss_y, vl),
        panel("(c) Train accuracy", "accuracy", &acc_y, ta),
        panel("(d) Test accuracy", "accuracy", &acc_y, va),
    ];
    let mut entries = group_entries(&d.groups);
    entries.extend(seeds_note(&d.groups));
    write_figure(out_dir, "fig1_loss_accuracy", &entries, &panels, 2)
}

fn subscript(n: i64) -> String {
    const SUB: [char; 10] = ['₀', '₁', '₂', '₃', '₄', '₅', '₆', '₇', '₈', '₉'];
    n.to_string()
        .chars()
        .map(|c| SUB[c.to_digit(10).unwrap_or(0) as usize])
        .collect()
}

/// Lighter: towards white, for the thin lines of ranks ≥ 1.
fn lighter(c: RGBColor) -> RGBColor {
    let mix = |v: u8| (f64::from(v) * 0.55 + 255.0 * 0.45).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// Reference lines, one per distinct threshold value over the groups.
fn threshold_refs(
    groups: &[Group],
    value: impl Fn(&Group) -> Option<(f64, String, String)>,
) -> Vec<RefLine> {
    let mut found: Vec<(f64, String, String, RGBColor)> = Vec::new();
    for g in groups {
        if let Some((v, short, long)) = value(g) {
            if v.is_finite() && v > 0.0 && !found.iter().any(|f| (f.0 / v - 1.0).abs() < 1e-9) {
                found.push((v, short, long, darker(g.color)));
            }
        }
    }
    let several = found.len() > 1;
    found
        .into_iter()
        .map(|(value, short, long, color)| RefLine {
            value,
            color,
            label: if several { long } else { short },
        })
        .collect()
}

fn fig2(d: &Loaded, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    // Highest rank present in any run.
    let mut k = 0i64;
    for f in &d.frames {
        if let Some(m) = f
            .hessian
            .column("rank")
            .ok()
            .and_then(|c| c.i64().ok()?.max())
        {
            k = k.max(m);
        }
    }
    let mut per_rank: Vec<(i64, Vec<Curve>)> = Vec::new();
    for r in 0..=k {
        let frames: Vec<DataFrame> = d
            .frames
            .iter()
            .map(|f| {
                f.hessian
                    .clone()
                    .lazy()
                    .filter(col("rank").eq(lit(r)))
                    .select([col("step"), col("value")])
                    .collect()
                    .map_err(|e| ReportError::Data {
                        file: PathBuf::from("metrics/spectrum.arrow"),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let tagged: Vec<Tagged<'_>> = frames
            .iter()
            .zip(&d.group_of)
            .zip(&d.optimizers)
            .map(|((frame, &g), opt)| Tagged {
                optimizer: opt,
                label: &d.groups[g].label,
                frame,
            })
            .collect();
        let mut by_key = aggregate(&tagged, "value", false)?;
        let curves = d
            .groups
            .iter()
            .map(|g| {
                by_key
                    .remove(&(g.optimizer.clone(), g.label.clone()))
                    .unwrap_or_default()
            })
            .collect();
        per_rank.push((r, curves));
    }

    // (a) Hessian top-k against 2/η of the SGD-family runs.
    let h_refs = threshold_refs(&d.groups, |g| {
        if !is_sgd_family(&g.optimizer) {
            return None;
        }
        let two_over = g.lr.filter(|l| *l > 0.0).map(|l| 2.0 / l);
        let v = g.hessian_threshold.or(two_over)?;
        let eta = g.lr.map(fmt_plain).unwrap_or_default();
        match two_over {
            Some(t) if (v / t - 1.0).abs() < 1e-6 => {
                Some((v, "2/η".to_string(), format!("2/η, η = {eta}")))
            }
            _ => Some((
                v,
                format!("threshold = {}", fmt_plain(v)),
                format!("threshold = {}", fmt_plain(v)),
            )),
        }
    });
    let mut a_lines = Vec::new();
    for (r, curves) in &per_rank {
        for (curve, g) in curves.iter().zip(&d.groups) {
            a_lines.push(Line {
                curve: curve.clone(),
                color: if *r == 0 { g.color } else { lighter(g.color) },
                width: if *r == 0 { LINE_W } else { THIN_W },
                band: *r == 0 && g.runs > 1,
            });
        }
    }
    let mut values = curve_values(a_lines.iter().map(|l| &l.curve));
    values.extend(h_refs.iter().map(|r| r.value));
    let scale = auto_scale(&values, 30.0);

    // (b) preconditioned λ₁ of the adaptive runs against 2(1+β₁)/((1−β₁)η).
    let pre = d.curves(
        |f| &f.precond,
        "value",
        false,
        |g| !is_sgd_family(&g.optimizer),
    )?;
    let p_refs = threshold_refs(&d.groups, |g| {
        let v = g.precond_threshold?;
        let eta = g.lr.filter(|l| *l > 0.0);
        match eta {
            Some(l) if (v * l / 38.0 - 1.0).abs() < 1e-6 => {
                Some((v, "38/η".to_string(), format!("38/η, η = {}", fmt_plain(l))))
            }
            _ => Some((
                v,
                format!("2(1+β₁)/((1−β₁)η) = {}", fmt_plain(v)),
                format!("2(1+β₁)/((1−β₁)η) = {}", fmt_plain(v)),
            )),
        }
    });
    let mut p_values = curve_values(&pre);
    p_values.extend(p_refs.iter().map(|r| r.value));
    let p_scale = auto_scale(&p_values, 30.0);
    let any_pre = pre.iter().any(|c| !c.is_empty());

    let all_curves: Vec<&Curve> = a_lines.iter().map(|l| &l.curve).chain(&pre).collect();
    let (x, x_desc) = step_axis(all_curves, false);
    let a = Panel {
        title: "(a) Top-k Hessian eigenvalues".into(),
        x_desc: x_desc.clone(),
        y_desc: "eigenvalue λᵢ".into(),
        x: x.clone(),
        y: y_axis(scale, values, (0.1, 10.0)),
        lines: a_lines,
        refs: h_refs,
        empty_note: "no data",
    };
    let b = Panel {
        title: "(b) Preconditioned sharpness (adaptive optimizers)".into(),
        x_desc,
        y_desc: "λ₁ of P⁻¹H".into(),
        x,
        y: y_axis(p_scale, p_values, (0.1, 10.0)),
        lines: if any_pre {
            lines(&d.groups, pre)
        } else {
            vec![]
        },
        refs: if any_pre { p_refs } else { vec![] },
        empty_note: "no adaptive optimizer",
    };
    let mut entries = group_entries(&d.groups);
    entries.push(Entry::line(INK, LINE_W + 1, false, "λ₁ (thick)".into()));
    if k >= 1 {
        entries.push(Entry::line(
            lighter(INK),
            THIN_W + 1,
            false,
            format!("λ₂ … λ{} (thin)", subscript(k + 1)),
        ));
    }
    entries.push(Entry::line(
        REF_GREY,
        REF_W,
        true,
        "stability threshold (dashed)".into(),
    ));
    entries.extend(seeds_note(&d.groups));
    write_figure(out_dir, "fig2_eigenvalues", &entries, &[a, b], 2)
}

fn fig3(d: &Loaded, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    let all = |_: &Group| true;
    let disp = d.curves(|f| &f.displacement, "displacement", true, all)?;
    let rate = d.curves(|f| &f.displacement, "per_step", true, all)?;
    let (x, x_desc) = step_axis(disp.iter().chain(&rate), true);
    let dy = y_axis(Scale::Log, curve_values(&disp), (1e-3, 1.0));
    let ry = y_axis(Scale::Log, curve_values(&rate), (1e-4, 1.0));
    let panels = [
        Panel {
            title: "(a) Consecutive eigenvector displacement".into(),
            x_desc: x_desc.clone(),
            y_desc: "mean over ranks of d(tₙ, tₙ₊₁)".into(),
            x: x.clone(),
            y: dy,
            lines: lines(&d.groups, disp),
            refs: vec![],
            empty_note: "no data",
        },
        Panel {
            title: "(b) Displacement rate per step".into(),
            x_desc,
            y_desc: "d(tₙ, tₙ₊₁) / (tₙ₊₁ − tₙ)".into(),
            x,
            y: ry,
            lines: lines(&d.groups, rate),
            refs: vec![],
            empty_note: "no data",
        },
    ];
    let mut entries = group_entries(&d.groups);
    entries.extend(seeds_note(&d.groups));
    write_figure(out_dir, "fig3_displacement", &entries, &panels, 2)
}

fn fig9(d: &Loaded, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    let all = |_: &Group| true;
    let grad = d.curves(|f| &f.alignment, "grad_alignment", false, all)?;
    let update = d.curves(|f| &f.alignment, "update_alignment", false, all)?;
    let (x, x_desc) = step_axis(grad.iter().chain(&update), false);
    // Fractions in [0, 1]: a linear unit axis unless they span decades.
    let y = |curves: &[Curve]| {
        let values = curve_values(curves);
        match (auto_scale(&values, 30.0), finite_range(values, true)) {
            (Scale::Log, Some((lo, _))) => Axis::fit(Scale::Log, lo.min(0.5), 1.0, 0.03),
            _ => unit_axis(),
        }
    };
    let (gy, uy) = (y(&grad), y(&update));
    let panels = [
        Panel {
            title: "(a) Gradient alignment".into(),
            x_desc: x_desc.clone(),
            y_desc: "‖Vₖᵀg‖² / ‖g‖²".into(),
            x: x.clone(),
            y: gy,
            lines: lines(&d.groups, grad),
            refs: vec![],
            empty_note: "no data",
        },
        Panel {
            title: "(b) Update alignment".into(),
            x_desc,
            y_desc: "‖Vₖᵀu‖² / ‖u‖²".into(),
            x,
            y: uy,
            lines: lines(&d.groups, update),
            refs: vec![],
            empty_note: "no data",
        },
    ];
    let mut entries = group_entries(&d.groups);
    entries.extend(seeds_note(&d.groups));
    write_figure(out_dir, "fig9_alignment", &entries, &panels, 2)
}

/// Writes the figures into out_dir, returns the relative file names written (PNG and SVG each).
pub fn render(input: &ReportInput, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    if input.runs.is_empty() {
        return Err(ReportError::NoRuns {
            experiment: input.experiment.clone(),
        });
    }
    crate::font::ensure_registered()?;
    let d = Loaded::load(input)?;
    let mut out = fig1(&d, out_dir)?;
    out.extend(fig2(&d, out_dir)?);
    out.extend(fig3(&d, out_dir)?);
    out.extend(fig9(&d, out_dir)?);
    Ok(out)
}
