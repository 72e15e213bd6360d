//! The optimizer-comparison figure: four panels and a shared legend, drawn
//! once on a bitmap (PNG) and once as SVG by the same code.

use std::path::Path;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::axis::{fmt_plain, Axis, Scale};
use crate::data::{aggregate, load_run, Curve, RunFrames, Tagged};
use crate::error::ReportError;
use crate::font::FAMILY;
use crate::palette::{
    band_outline, darker, is_sgd_family, optimizer_color, optimizer_rank, shade, shade_indices,
    BAND_ALPHA,
};
use crate::ReportInput;

/// Pixel size of the figure (a 2×2 panel figure for a full paper width).
pub(crate) const WIDTH: u32 = 2400;
pub(crate) const HEIGHT: u32 = 1800;

/// Font sizes in pixels at [`WIDTH`]: readable when the figure is printed
/// at a column's width.
const TITLE_PX: f64 = 48.0;
const AXIS_DESC_PX: f64 = 42.0;
const TICK_PX: f64 = 36.0;
const LEGEND_PX: f64 = 40.0;
const NOTE_PX: f64 = 34.0;

const LINE_W: u32 = 5;
const REF_W: u32 = 4;
const GRID_MAJOR: RGBColor = RGBColor(0xD9, 0xD9, 0xD9);
const GRID_MINOR: RGBColor = RGBColor(0xF0, 0xF0, 0xF0);
const REF_GREY: RGBColor = RGBColor(0x70, 0x70, 0x70);
const INK: RGBColor = RGBColor(0x20, 0x20, 0x20);

/// Every fixed string the figure draws (the font test checks its glyphs).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const TEXTS: &[&str] = &[
    "(a) Loss",
    "(b) Sharpness: top Hessian eigenvalue λ₁",
    "(c) Localization of the top eigenvector v₁",
    "(d) Consecutive subspace overlap",
    "cross-entropy loss",
    "λ₁",
    "P·IPR(v₁)",
    "q(tₙ, tₙ₊₁)",
    "step + 1",
    "step",
    "tₙ + 1",
    "tₙ",
    "2/η",
    "2/η, η = 0.05",
    "random vector (3)",
    "train",
    "test",
    "line: mean over seeds · band: min–max",
    "no data",
    "10⁻¹²³⁴⁵⁶⁷⁸⁹ 2×10⁰ −1",
];

/// A group of runs drawn as one curve: same optimizer, same label.
struct Group {
    optimizer: String,
    label: String,
    color: RGBColor,
    runs: usize,
    lr: Option<f64>,
}

/// Everything the figure draws, aggregated.
pub(crate) struct FigureData {
    groups: Vec<Group>,
    train_loss: Vec<Curve>,
    test_loss: Vec<Curve>,
    sharpness: Vec<Curve>,
    localization: Vec<Curve>,
    overlap: Vec<Curve>,
}

impl FigureData {
    /// Loads every run and aggregates the seeds of each group.
    pub(crate) fn load(input: &ReportInput) -> Result<FigureData, ReportError> {
        let mut frames: Vec<RunFrames> = Vec::with_capacity(input.runs.len());
        for run in &input.runs {
            frames.push(load_run(
                &run.train,
                &run.values,
                &run.localization,
                &run.overlap,
                is_sgd_family(&run.optimizer),
            )?);
        }

        // Group identity: (optimizer, label), where a diverged run's label
        // says so, which keeps it apart from the seeds that did not diverge.
        let labels: Vec<String> = input
            .runs
            .iter()
            .zip(&frames)
            .map(|(run, f)| {
                if f.diverged {
                    format!("{} (diverged)", run.label)
                } else {
                    run.label.clone()
                }
            })
            .collect();
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of = Vec::with_capacity(input.runs.len());
        for ((run, f), label) in input.runs.iter().zip(&frames).zip(&labels) {
            let i = match groups
                .iter()
                .position(|g| g.optimizer == run.optimizer && &g.label == label)
            {
                Some(i) => i,
                None => {
                    groups.push(Group {
                        optimizer: run.optimizer.clone(),
                        label: label.clone(),
                        color: optimizer_color(&run.optimizer),
                        runs: 0,
                        lr: f.lr,
                    });
                    groups.len() - 1
                }
            };
            groups[i].runs += 1;
            group_of.push(i);
        }
        // Legend order: palette order of the optimizer, then first appearance.
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&i| (optimizer_rank(&groups[i].optimizer), i));
        let mut sorted: Vec<Group> = Vec::with_capacity(groups.len());
        for &i in &order {
            let g = &groups[i];
            sorted.push(Group {
                optimizer: g.optimizer.clone(),
                label: g.label.clone(),
                color: g.color,
                runs: g.runs,
                lr: g.lr,
            });
        }
        // Several groups of one optimizer (learning rates, diverged seeds):
        // shades of its colour.
        let shades = shade_indices(sorted.iter().map(|g| g.optimizer.as_str()));
        for (g, n) in sorted.iter_mut().zip(shades) {
            g.color = shade(g.color, n);
        }

        let tag = |pick: fn(&RunFrames) -> &polars::prelude::DataFrame| -> Vec<Tagged<'_>> {
            input
                .runs
                .iter()
                .zip(&frames)
                .zip(&labels)
                .map(|((run, f), label)| Tagged {
                    optimizer: &run.optimizer,
                    label,
                    frame: pick(f),
                })
                .collect()
        };
        let in_order = |mut curves: std::collections::HashMap<(String, String), Curve>| {
            sorted
                .iter()
                .map(|g| {
                    curves
                        .remove(&(g.optimizer.clone(), g.label.clone()))
                        .unwrap_or_default()
                })
                .collect::<Vec<Curve>>()
        };
        let loss = tag(|f| &f.loss);
        let train_loss = in_order(aggregate(&loss, "train_loss", true)?);
        let test_loss = in_order(aggregate(&loss, "test_loss", true)?);
        let sharpness = in_order(aggregate(&tag(|f| &f.sharpness), "value", false)?);
        let localization = in_order(aggregate(&tag(|f| &f.localization), "value", true)?);
        let overlap = in_order(aggregate(&tag(|f| &f.overlap), "value", false)?);
        Ok(FigureData {
            groups: sorted,
            train_loss,
            test_loss,
            sharpness,
            localization,
            overlap,
        })
    }
}

/// A curve to draw: the group's mean line and its min–max band.
struct Line<'a> {
    curve: &'a Curve,
    color: RGBColor,
    dashed: bool,
    band: bool,
}

/// A horizontal reference line with a label at its right end.
struct RefLine {
    value: f64,
    color: RGBColor,
    dashed: bool,
    label: String,
}

struct Panel<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    x: Axis,
    y: Axis,
    lines: Vec<Line<'a>>,
    refs: Vec<RefLine>,
    markers: bool,
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

/// A y axis fitted to the curves and the reference values.
fn y_axis(scale: Scale, values: Vec<f64>, default: (f64, f64)) -> Axis {
    let positive = scale != Scale::Linear;
    let (lo, hi) = finite_range(values, positive).unwrap_or(default);
    Axis::fit(scale, lo, hi, 0.05)
}

impl FigureData {
    fn panels(&self) -> [Panel<'_>; 4] {
        let all = [
            &self.train_loss,
            &self.test_loss,
            &self.sharpness,
            &self.localization,
            &self.overlap,
        ];
        let steps = finite_range(
            all.iter()
                .flat_map(|cs| cs.iter().flat_map(|c| c.step.iter().copied())),
            false,
        )
        .unwrap_or((0.0, 1.0));
        let (min_step, max_step) = (steps.0.max(0.0), steps.1.max(0.0));
        let log_x = (max_step + 1.0) / (min_step + 1.0) >= 100.0;
        let x = if log_x {
            Axis::fit(Scale::LogPlusOne, min_step, max_step, 0.02)
        } else {
            Axis::fit(Scale::Linear, min_step, max_step, 0.02)
        };
        let (x_step, x_tn) = if log_x {
            ("step + 1", "tₙ + 1")
        } else {
            ("step", "tₙ")
        };
        let several = |i: usize| self.groups[i].runs > 1;

        // (a) loss
        let mut lines = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            for (curve, dashed) in [(&self.train_loss[i], false), (&self.test_loss[i], true)] {
                lines.push(Line {
                    curve,
                    color: g.color,
                    dashed,
                    band: several(i),
                });
            }
        }
        let a = Panel {
            title: "(a) Loss",
            x_desc: x_step,
            y_desc: "cross-entropy loss",
            x: x.clone(),
            y: y_axis(
                Scale::Log,
                curve_values(self.train_loss.iter().chain(&self.test_loss)),
                (0.1, 10.0),
            ),
            lines,
            refs: vec![],
            markers: false,
        };

        // (b) sharpness against 2/η of the SGD-family runs
        let mut etas: Vec<(f64, RGBColor)> = Vec::new();
        for g in &self.groups {
            if let (true, Some(lr)) = (is_sgd_family(&g.optimizer), g.lr) {
                if lr > 0.0 && lr.is_finite() && !etas.iter().any(|(e, _)| *e == lr) {
                    etas.push((lr, g.color));
                }
            }
        }
        let refs: Vec<RefLine> = etas
            .iter()
            .map(|&(eta, color)| RefLine {
                value: 2.0 / eta,
                color: darker(color),
                dashed: true,
                label: if etas.len() == 1 {
                    "2/η".to_string()
                } else {
                    format!("2/η, η = {}", fmt_plain(eta))
                },
            })
            .collect();
        let mut values = curve_values(&self.sharpness);
        values.extend(refs.iter().map(|r| r.value));
        let positive = values.iter().filter(|v| v.is_finite()).all(|v| *v > 0.0);
        let spread = finite_range(values.iter().copied(), true)
            .map(|(lo, hi)| hi / lo)
            .unwrap_or(1.0);
        let b_scale = if positive && spread > 30.0 {
            Scale::Log
        } else {
            Scale::Linear
        };
        let b = Panel {
            title: "(b) Sharpness: top Hessian eigenvalue λ₁",
            x_desc: x_step,
            y_desc: "λ₁",
            x: x.clone(),
            y: y_axis(b_scale, values, (0.0, 1.0)),
            lines: self
                .sharpness
                .iter()
                .enumerate()
                .map(|(i, curve)| Line {
                    curve,
                    color: self.groups[i].color,
                    dashed: false,
                    band: several(i),
                })
                .collect(),
            refs,
            markers: true,
        };

        // (c) localization, against a random vector's P·IPR = 3
        let mut values = curve_values(&self.localization);
        values.push(3.0);
        let c = Panel {
            title: "(c) Localization of the top eigenvector v₁",
            x_desc: x_step,
            y_desc: "P·IPR(v₁)",
            x: x.clone(),
            y: y_axis(Scale::Log, values, (1.0, 10.0)),
            lines: self
                .localization
                .iter()
                .enumerate()
                .map(|(i, curve)| Line {
                    curve,
                    color: self.groups[i].color,
                    dashed: false,
                    band: several(i),
                })
                .collect(),
            refs: vec![RefLine {
                value: 3.0,
                color: REF_GREY,
                dashed: false,
                label: "random vector (3)".to_string(),
            }],
            markers: true,
        };

        // (d) consecutive subspace overlap, in [0, 1]
        let mut y = Axis::fixed(Scale::Linear, 0.0, 1.02);
        y.major = (0..=5).map(|i| f64::from(i) * 0.2).collect();
        y.minor = (0..5).map(|i| f64::from(i) * 0.2 + 0.1).collect();
        let d = Panel {
            title: "(d) Consecutive subspace overlap",
            x_desc: x_tn,
            y_desc: "q(tₙ, tₙ₊₁)",
            x,
            y,
            lines: self
                .overlap
                .iter()
                .enumerate()
                .map(|(i, curve)| Line {
                    curve,
                    color: self.groups[i].color,
                    dashed: false,
                    band: several(i),
                })
                .collect(),
            refs: vec![],
            markers: true,
        };
        [a, b, c, d]
    }
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

/// Draws one panel into `area`.
fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> Result<(), String> {
    // The title, then room for the top tick label's upper half.
    let body = area
        .margin(14, 0, 0, 0)
        .titled(p.title, text_style(TITLE_PX, INK))
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
        .x_desc(p.x_desc)
        .y_desc(p.y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(text_style(TICK_PX, INK))
        .axis_desc_style(text_style(AXIS_DESC_PX, INK))
        .bold_line_style(GRID_MAJOR.stroke_width(2))
        .light_line_style(GRID_MINOR.stroke_width(2))
        .axis_style(INK.stroke_width(3))
        .set_all_tick_mark_size(12)
        .x_label_offset(0)
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

    // Mean lines.
    for l in p.lines.iter().filter(|l| !l.curve.is_empty()) {
        let line = pts(&l.curve.step, &l.curve.mean);
        let style = l.color.stroke_width(LINE_W);
        if l.dashed {
            chart
                .draw_series(DashedLineSeries::new(line.clone(), 22, 12, style))
                .map_err(pe)?;
        } else {
            chart
                .draw_series(LineSeries::new(line.clone(), style))
                .map_err(pe)?;
        }
        if p.markers && line.len() <= 60 {
            chart
                .draw_series(line.iter().map(|&c| Circle::new(c, 7, l.color.filled())))
                .map_err(pe)?;
        }
    }

    // Reference-line labels last, on a white halo so curves never hide them.
    for r in &p.refs {
        let Some(y) = p.y.t(r.value) else { continue };
        let anchor = (p.x.hi - 0.015 * (p.x.hi - p.x.lo), y);
        let label_style = text_style(TICK_PX, r.color).pos(Pos::new(HPos::Right, VPos::Bottom));
        let (w, h) = area
            .estimate_text_size(&r.label, &label_style)
            .map_err(pe)?;
        let (w, h) = (w as i32, h as i32);
        let halo = Rectangle::new([(-w - 8, -h - 14), (6, -4)], WHITE.mix(0.85).filled());
        chart
            .draw_series(std::iter::once(
                EmptyElement::at(anchor) + halo + Text::new(r.label.clone(), (0, -8), label_style),
            ))
            .map_err(pe)?;
    }

    if p.lines.iter().all(|l| l.curve.is_empty()) {
        // Above the middle, where a lone reference line does not run.
        let mid = ((p.x.lo + p.x.hi) / 2.0, p.y.lo + 0.72 * (p.y.hi - p.y.lo));
        let style = text_style(AXIS_DESC_PX, REF_GREY).pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .draw_series(std::iter::once(Text::new("no data", mid, style)))
            .map_err(pe)?;
    }
    Ok(())
}

/// One legend entry: a line sample (or none) and its text.
struct Entry {
    color: RGBColor,
    dashed: bool,
    sample: bool,
    text: String,
    px: f64,
    text_color: RGBColor,
}

const SAMPLE_W: i32 = 84;
const SAMPLE_GAP: i32 = 16;
const ENTRY_GAP: i32 = 64;
const LEGEND_ROW_H: i32 = 62;
const LEGEND_MARGIN: i32 = 40;

fn legend_entries(fig: &FigureData) -> Vec<Entry> {
    let mut entries: Vec<Entry> = fig
        .groups
        .iter()
        .map(|g| Entry {
            color: g.color,
            dashed: false,
            sample: true,
            text: g.label.clone(),
            px: LEGEND_PX,
            text_color: INK,
        })
        .collect();
    for (text, dashed) in [("train", false), ("test", true)] {
        entries.push(Entry {
            color: INK,
            dashed,
            sample: true,
            text: text.to_string(),
            px: LEGEND_PX,
            text_color: INK,
        });
    }
    if fig.groups.iter().any(|g| g.runs > 1) {
        entries.push(Entry {
            color: REF_GREY,
            dashed: false,
            sample: false,
            text: "line: mean over seeds · band: min–max".to_string(),
            px: NOTE_PX,
            text_color: REF_GREY,
        });
    }
    entries
}

/// Where the legend entries go: per entry its row and x offset in the row,
/// and the width of each row (rows are centred).
struct LegendLayout {
    placed: Vec<(usize, i32)>,
    rows: Vec<i32>,
}

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
        let (row, x) = if cur > 0 && cur + ENTRY_GAP + w > max_w {
            rows.push(w);
            (row + 1, 0)
        } else {
            let x = if cur > 0 { cur + ENTRY_GAP } else { 0 };
            rows[row] = x + w;
            (row, x)
        };
        placed.push((row, x));
    }
    Ok(LegendLayout { placed, rows })
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
    layout: &LegendLayout,
) -> Result<(), String> {
    for (e, &(row, x)) in entries.iter().zip(&layout.placed) {
        let left = (WIDTH as i32 - layout.rows[row]) / 2 + x;
        let y = LEGEND_MARGIN / 2 + row as i32 * LEGEND_ROW_H + LEGEND_ROW_H / 2;
        let mut tx = left;
        if e.sample {
            let seg = vec![(left, y), (left + SAMPLE_W, y)];
            let style = e.color.stroke_width(LINE_W + 1);
            if e.dashed {
                area.draw(&DashedPathElement::new(seg, 22, 12, style))
                    .map_err(pe)?;
            } else {
                area.draw(&PathElement::new(seg, style)).map_err(pe)?;
            }
            tx += SAMPLE_W + SAMPLE_GAP;
        }
        let style = text_style(e.px, e.text_color).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(e.text.clone(), (tx, y), style))
            .map_err(pe)?;
    }
    Ok(())
}

/// Draws the whole figure on any backend.
fn draw_figure<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    fig: &FigureData,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(pe)?;
    let entries = legend_entries(fig);
    let layout = layout_legend(&root, &entries)?;
    let legend_h = LEGEND_MARGIN + layout.rows.len() as i32 * LEGEND_ROW_H;
    let (legend, body) = root.split_vertically(legend_h);
    draw_legend(&legend, &entries, &layout)?;
    let cells = body.split_evenly((2, 2));
    for (cell, panel) in cells.iter().zip(fig.panels().iter()) {
        draw_panel(cell, panel)?;
    }
    root.present().map_err(pe)?;
    Ok(())
}

/// Renders `optimizer_comparison.png` and `.svg` into `out_dir`.
pub(crate) fn optimizer_comparison(
    fig: &FigureData,
    out_dir: &Path,
) -> Result<Vec<String>, ReportError> {
    let png = "optimizer_comparison.png";
    let svg = "optimizer_comparison.svg";
    let png_path = out_dir.join(png);
    let svg_path = out_dir.join(svg);
    draw_figure(
        BitMapBackend::new(&png_path, (WIDTH, HEIGHT)).into_drawing_area(),
        fig,
    )
    .map_err(|message| ReportError::Plot {
        file: png_path.clone(),
        message,
    })?;
    draw_figure(
        SVGBackend::new(&svg_path, (WIDTH, HEIGHT)).into_drawing_area(),
        fig,
    )
    .map_err(|message| ReportError::Plot {
        file: svg_path.clone(),
        message,
    })?;
    Ok(vec![png.to_string(), svg.to_string()])
}
