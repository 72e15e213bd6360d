//! Line-panel figures: panels of mean curves with min–max bands and labelled
//! reference lines, under one centred legend, drawn once on a bitmap (PNG)
//! and once as SVG by the same code. The overview (`figures`) and the
//! training-dynamics figures (`fig_dynamics`) are built from these pieces;
//! `fig_structure` shares the small helpers.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::axis::{Axis, Scale};
use crate::data::Curve;
use crate::font::FAMILY;
use crate::legend::{Entry, Layout};
use crate::palette::{band_outline, BAND_ALPHA};
use crate::ReportError;

/// Pixel width of every figure (a full paper width at print resolution).
pub(crate) const WIDTH: u32 = 2400;
/// Heights of a 2×2 and of a 1×2 panel figure.
pub(crate) const HEIGHT_2X2: u32 = 1800;
pub(crate) const HEIGHT_1X2: u32 = 1050;

/// Font sizes in pixels at [`WIDTH`], the one set every figure uses:
/// readable when the figure is printed at a column's width.
pub(crate) const TITLE_PX: f64 = 46.0;
pub(crate) const AXIS_DESC_PX: f64 = 42.0;
pub(crate) const TICK_PX: f64 = 36.0;
pub(crate) const LEGEND_PX: f64 = 40.0;
pub(crate) const NOTE_PX: f64 = 34.0;

pub(crate) const LINE_W: u32 = 5;
pub(crate) const REF_W: u32 = 4;
pub(crate) const GRID_MAJOR: RGBColor = RGBColor(0xD9, 0xD9, 0xD9);
pub(crate) const GRID_MINOR: RGBColor = RGBColor(0xF0, 0xF0, 0xF0);
pub(crate) const REF_GREY: RGBColor = RGBColor(0x70, 0x70, 0x70);
pub(crate) const INK: RGBColor = RGBColor(0x20, 0x20, 0x20);

/// The legend note of a figure with any point built on an untrusted pair.
pub(crate) const UNTRUSTED_NOTE: &str =
    "hollow: untrusted pair (unconverged or below the rounding level)";
/// The note instead, when no point of the figure is trusted: said in words,
/// not left to the reader to notice that every marker is hollow.
pub(crate) const NONE_TRUSTED_NOTE: &str =
    "hollow: untrusted pair · no point of this figure is trusted (unconverged or below the rounding level)";

/// The untrusted-points note: none when every point is trusted.
pub(crate) fn untrusted_text(any: bool, all: bool) -> Option<&'static str> {
    match (any, all) {
        (_, true) => Some(NONE_TRUSTED_NOTE),
        (true, false) => Some(UNTRUSTED_NOTE),
        (false, false) => None,
    }
}

/// Whether any, and whether every, point of these curves is untrusted
/// (curves without trust flags, such as thresholds, are left out).
pub(crate) fn trust_of<'a>(curves: impl IntoIterator<Item = &'a Curve>) -> (bool, bool) {
    let flags: Vec<bool> = curves
        .into_iter()
        .flat_map(|c| c.trusted.iter().copied())
        .collect();
    let any = flags.iter().any(|t| !t);
    (any, !flags.is_empty() && flags.iter().all(|t| !t))
}

/// The empty note of a panel of pairs of checkpoints (overlaps,
/// displacements): why it is empty, when the reason is that the runs have
/// at most one checkpoint.
pub(crate) fn pairs_note(checkpoints: usize) -> &'static str {
    if checkpoints == 1 {
        "one checkpoint: no pairs"
    } else {
        "no data"
    }
}

/// The number of distinct steps of a frame's `step` column (0 without one).
pub(crate) fn distinct_steps(df: &polars::prelude::DataFrame) -> usize {
    df.column("step")
        .ok()
        .and_then(|c| c.n_unique().ok())
        .unwrap_or(0)
}

/// A marker's radius, and the stroke of a hollow (untrusted) one.
pub(crate) const MARKER_R: i32 = 7;
pub(crate) const HOLLOW_W: u32 = 3;

/// A hollow marker: a white disc under a ring of `color`, so that the line
/// through it does not fill it (drawn at every untrusted point).
pub(crate) fn hollow_marker<C: Clone>(
    at: C,
    r: i32,
    color: RGBColor,
) -> impl IntoIterator<Item = Circle<C, i32>> {
    [
        Circle::new(at.clone(), r, WHITE.filled()),
        Circle::new(at, r, color.stroke_width(HOLLOW_W)),
    ]
}

pub(crate) fn pe<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

pub(crate) fn text_style(px: f64, color: RGBColor) -> TextStyle<'static> {
    TextStyle {
        font: (FAMILY, px).into_font(),
        color: color.to_backend_color(),
        pos: Pos::new(HPos::Left, VPos::Top),
    }
}

/// The smallest and largest finite values (positive ones only if asked).
pub(crate) fn finite_range(
    values: impl IntoIterator<Item = f64>,
    positive: bool,
) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite() && (!positive || *v > 0.0))
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
}

/// Every value a curve draws: its mean and its band.
pub(crate) fn curve_values<'a>(curves: impl IntoIterator<Item = &'a Curve>) -> Vec<f64> {
    curves
        .into_iter()
        .flat_map(|c| c.mean.iter().chain(&c.lo).chain(&c.hi).copied())
        .collect()
}

/// A y axis fitted to the values (curves and reference values).
pub(crate) fn y_axis(scale: Scale, values: Vec<f64>, default: (f64, f64)) -> Axis {
    let (lo, hi) = finite_range(values, scale != Scale::Linear).unwrap_or(default);
    Axis::fit(scale, lo, hi, 0.05)
}

/// Log when every value is positive and max/min exceeds `factor`.
pub(crate) fn auto_scale(values: &[f64], factor: f64) -> Scale {
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

/// A step axis over the curves, log(step + 1) when it spans ≥ 100×, and its
/// description (of tₙ when `t_n`).
pub(crate) fn step_axis<'a>(
    curves: impl IntoIterator<Item = &'a Curve>,
    t_n: bool,
) -> (Axis, String) {
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

/// Which x axis a figure with a loss-axis variant is drawn against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum XAxis {
    Step,
    /// The train loss at the point's step (`Curve::against_loss`).
    Loss,
}

/// The x axis of a loss-axis variant: the train loss, log scale, drawn
/// right to left so that training proceeds to the right, over the curves'
/// x values (each from [`Curve::against_loss`]); and its description.
pub(crate) fn loss_axis<'a>(curves: impl IntoIterator<Item = &'a Curve>) -> (Axis, String) {
    let (lo, hi) = finite_range(
        curves.into_iter().flat_map(|c| c.step.iter().copied()),
        true,
    )
    .unwrap_or((1e-3, 1.0));
    (
        Axis::fit(Scale::Log, lo, hi, 0.02).reversed(),
        LOSS_X_DESC.to_string(),
    )
}

/// The widest span of a loss axis: runs whose loss falls to 1e-20 would
/// otherwise squeeze the falling phase, the part of training the variant
/// is for, into a sliver.
pub(crate) const LOSS_SPAN: f64 = 1e6;

/// Where a loss axis over these x values is cut: the largest loss / 10⁶,
/// when they span more than that (None: everything is shown).
pub(crate) fn loss_floor(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (lo, hi) = finite_range(xs, true)?;
    (hi / lo > LOSS_SPAN).then_some(hi / LOSS_SPAN)
}

/// The legend note on a cut loss axis.
pub(crate) fn loss_cut_note(floor: f64) -> String {
    format!(
        "losses below {} (10⁻⁶ of the largest) are not shown here: see the step figure",
        crate::axis::fmt_plain_or_sci(floor)
    )
}

/// The x-axis title of every loss-axis variant.
pub(crate) const LOSS_X_DESC: &str = "train loss (decreasing →)";

/// The legend note of a loss-axis variant: what x is, and, with several
/// seeds, how they are combined.
pub(crate) fn loss_note(several_seeds: bool) -> String {
    if several_seeds {
        "x: train loss at the checkpoint (log-interpolated on the logged curve; geometric mean over seeds)".into()
    } else {
        "x: train loss at the checkpoint (log-interpolated on the logged curve)".into()
    }
}

/// An axis in [0, 1] with ticks every 0.2.
pub(crate) fn unit_axis() -> Axis {
    let mut y = Axis::fixed(Scale::Linear, 0.0, 1.02);
    y.major = (0..=5).map(|i| f64::from(i) * 0.2).collect();
    y.minor = (0..5).map(|i| f64::from(i) * 0.2 + 0.1).collect();
    y
}

/// A curve to draw: the mean line and, optionally, its min–max band.
pub(crate) struct Line {
    pub curve: Curve,
    pub color: RGBColor,
    pub width: u32,
    pub dashed: bool,
    pub band: bool,
    /// Dots at the points, when there are at most 60 of them. Points built
    /// on untrusted pairs get a hollow marker whatever this says.
    pub markers: bool,
}

impl Line {
    /// A solid line of the standard width, with markers.
    pub fn new(curve: Curve, color: RGBColor, band: bool) -> Line {
        Line {
            curve,
            color,
            width: LINE_W,
            dashed: false,
            band,
            markers: true,
        }
    }
}

/// A horizontal reference line, labelled at its right end.
pub(crate) struct RefLine {
    pub value: f64,
    pub color: RGBColor,
    pub dashed: bool,
    pub label: String,
}

pub(crate) struct Panel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x: Axis,
    pub y: Axis,
    pub lines: Vec<Line>,
    pub refs: Vec<RefLine>,
    /// Shown when there is nothing to draw.
    pub empty_note: &'static str,
}

/// What differs between the figures drawn by this module.
#[derive(Clone, Copy)]
pub(crate) struct Look {
    /// Where the empty note goes, as a fraction of the y range.
    pub empty_at: f64,
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
    look: Look,
) -> Result<(), String> {
    // The title, then room for the top tick label's upper half.
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
    // Bands below every line.
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
    // Reference lines, under the data; their labels come last.
    for r in &p.refs {
        let Some(y) = p.y.t(r.value) else { continue };
        let seg = vec![(p.x.lo, y), (p.x.hi, y)];
        let style = r.color.stroke_width(REF_W);
        if r.dashed {
            chart
                .draw_series(DashedLineSeries::new(seg, 26, 14, style))
                .map_err(pe)?;
        } else {
            chart.draw_series(LineSeries::new(seg, style)).map_err(pe)?;
        }
    }
    // Mean lines, thin ones first so that the thick ones stay on top.
    let mut order: Vec<&Line> = p.lines.iter().filter(|l| !l.curve.is_empty()).collect();
    order.sort_by_key(|l| l.width);
    for l in order {
        let line = pts(&l.curve.step, &l.curve.mean);
        let style = l.color.stroke_width(l.width);
        if l.dashed {
            chart
                .draw_series(DashedLineSeries::new(line.clone(), 22, 12, style))
                .map_err(pe)?;
        } else {
            chart
                .draw_series(LineSeries::new(line.clone(), style))
                .map_err(pe)?;
        }
        // The points kept (on the axes), each with its trust.
        let marked: Vec<((f64, f64), bool)> = l
            .curve
            .step
            .iter()
            .zip(&l.curve.mean)
            .enumerate()
            .filter_map(|(i, (&x, &y))| Some(((p.x.t(x)?, p.y.t(y)?), l.curve.is_trusted(i))))
            .collect();
        if l.markers && line.len() <= 60 {
            chart
                .draw_series(
                    marked
                        .iter()
                        .filter(|(_, t)| *t)
                        .map(|&(c, _)| Circle::new(c, MARKER_R, l.color.filled())),
                )
                .map_err(pe)?;
        }
        // A little larger than a filled marker, so that the ring reads.
        let r = if l.width < LINE_W {
            MARKER_R - 1
        } else {
            MARKER_R + 2
        };
        chart
            .draw_series(
                marked
                    .iter()
                    .filter(|(_, t)| !*t)
                    .flat_map(|&(c, _)| hollow_marker(c, r, l.color)),
            )
            .map_err(pe)?;
    }
    // Reference-line labels last, on a white halo so curves never hide them.
    // Each sits just above its line; one that would overprint the label
    // above it goes below its line, and further down if need be.
    let mut placed: Vec<(f64, &RefLine)> = p
        .refs
        .iter()
        .filter_map(|r| Some((p.y.t(r.value)?, r)))
        .filter(|(y, _)| *y >= p.y.lo && *y <= p.y.hi)
        .collect();
    placed.sort_by(|a, b| b.0.total_cmp(&a.0)); // top of the panel first
    let mut bottom_of_previous = i32::MIN;
    for (y, r) in placed {
        let anchor = (p.x.at_frac(0.985), y);
        let style = text_style(TICK_PX, r.color).pos(Pos::new(HPos::Right, VPos::Top));
        let (w, h) = area.estimate_text_size(&r.label, &style).map_err(pe)?;
        let (w, h) = (w as i32, h as i32);
        let line_y = chart.backend_coord(&anchor).1;
        // The label box's top edge, relative to the line: above it, else below.
        let mut top = -h - 12;
        if line_y + top < bottom_of_previous + 2 {
            top = 6;
        }
        if line_y + top < bottom_of_previous + 2 {
            top = bottom_of_previous + 2 - line_y;
        }
        bottom_of_previous = line_y + top + h + 8;
        let halo = Rectangle::new(
            [(-w - 8, top - 2), (6, top + h + 6)],
            WHITE.mix(0.85).filled(),
        );
        chart
            .draw_series(std::iter::once(
                EmptyElement::at(anchor) + halo + Text::new(r.label.clone(), (0, top + 2), style),
            ))
            .map_err(pe)?;
    }
    if p.lines.iter().all(|l| l.curve.is_empty()) {
        let mid = (
            (p.x.lo + p.x.hi) / 2.0,
            p.y.lo + look.empty_at * (p.y.hi - p.y.lo),
        );
        let style = text_style(AXIS_DESC_PX, REF_GREY).pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .draw_series(std::iter::once(Text::new(p.empty_note, mid, style)))
            .map_err(pe)?;
    }
    Ok(())
}

fn draw_figure<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    look: Look,
    entries: &[&Entry],
    panels: &[Panel],
    cols: usize,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(pe)?;
    let legend = Layout::new(entries.iter().copied(), WIDTH);
    let (legend_area, body) = root.split_vertically(legend.height());
    legend.draw(&legend_area, entries.iter().copied())?;
    let cells = body.split_evenly((panels.len().div_ceil(cols), cols));
    for (cell, panel) in cells.iter().zip(panels) {
        draw_panel(cell, panel, look)?;
    }
    root.present().map_err(pe)?;
    Ok(())
}

/// Writes `<name>.png` and `<name>.svg` (1×2 or 2×2 panels under the
/// legend); returns both names. When any point drawn is built on an
/// untrusted pair, the legend ends with [`UNTRUSTED_NOTE`].
pub(crate) fn write_figure(
    out_dir: &Path,
    name: &str,
    look: Look,
    entries: &[Entry],
    panels: &[Panel],
    cols: usize,
) -> Result<Vec<String>, ReportError> {
    let (any, all) = trust_of(panels.iter().flat_map(|p| &p.lines).map(|l| &l.curve));
    let mut all_entries: Vec<&Entry> = entries.iter().collect();
    let note = Entry::untrusted_note(any, all);
    all_entries.extend(note.as_ref());
    let entries = &all_entries[..];
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
        look,
        entries,
        panels,
        cols,
    )
    .map_err(plot_err(png_path.clone()))?;
    let svg_path = out_dir.join(&svg);
    draw_figure(
        SVGBackend::new(&svg_path, (WIDTH, height)).into_drawing_area(),
        look,
        entries,
        panels,
        cols,
    )
    .map_err(plot_err(svg_path.clone()))?;
    let pdf = crate::pdf::from_svg(out_dir, name)?;
    Ok(vec![png, svg, pdf])
}
