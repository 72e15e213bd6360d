//! Structure figures: aging of the top-k subspace (fig 4), two-time overlap
//! heatmaps (fig 5), localization against the null model (fig 6), the
//! per-layer mass of v₁ (fig 7), v₁'s mass over the first weight matrix
//! (fig 8) and per input column against the column's largest |z| (fig 10).
//! Each is written as PNG and SVG by the same drawing code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use polars::prelude::*;

use crate::aging;
use crate::axis::{Axis, Scale};
use crate::chart::{
    finite_range, hollow_marker, loss_cut_note, loss_floor, loss_note, pe, text_style, unit_axis,
    untrusted_text, XAxis, GRID_MAJOR, GRID_MINOR, INK, LOSS_X_DESC, MARKER_R, REF_GREY, WIDTH,
};
use crate::data::{bools, data_err, f64s, i64s, kept_at_loss, Kind, LossClock, Table};
use crate::error::ReportError;
use crate::font::FAMILY;
use crate::palette::{band_outline, optimizer_color, sweep_order, BAND_ALPHA};
use crate::ReportInput;

const TITLE_PX: f64 = 44.0;
const AXIS_DESC_PX: f64 = 40.0;
const TICK_PX: f64 = 34.0;
const LEGEND_PX: f64 = 38.0;
const LINE_W: u32 = 5;
const NULL_GREY: RGBColor = RGBColor(0x9A, 0x9A, 0x9A);
const MISSING: RGBColor = RGBColor(0xE6, 0xE6, 0xE6);

/// Writes the figures into out_dir, returns the relative file names written
/// (PNG and SVG each).
pub fn render(input: &ReportInput, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    if input.runs.is_empty() {
        return Err(ReportError::NoRuns {
            experiment: input.experiment.clone(),
        });
    }
    crate::font::ensure_registered()?;
    let groups = groups(input)?;
    let mut names = Vec::new();
    let aging = Aging::load(input, &groups)?;
    save(&aging, "fig4_aging", out_dir, &mut names)?;
    save(
        &aging.against_loss(),
        "fig4_aging_loss",
        out_dir,
        &mut names,
    )?;
    save(
        &aging.collapsed(),
        "fig4_aging_collapse",
        out_dir,
        &mut names,
    )?;
    save(
        &Heatmaps::load(input, &groups)?,
        "fig5_overlap_heatmaps",
        out_dir,
        &mut names,
    )?;
    let ipr = Ipr::load(input, &groups)?;
    save(&ipr, "fig6_ipr", out_dir, &mut names)?;
    let several = groups.iter().any(|g| g.runs.len() > 1);
    save(
        &ipr.against_loss(several),
        "fig6_ipr_loss",
        out_dir,
        &mut names,
    )?;
    save(
        &LayerMass::load(input, &groups)?,
        "fig7_layer_mass",
        out_dir,
        &mut names,
    )?;
    save(
        &LocMap::load(input, &groups)?,
        "fig8_localization_map",
        out_dir,
        &mut names,
    )?;
    if let Some(fig) = InputMass::load(input, &groups)? {
        save(&fig, "fig10_input_mass", out_dir, &mut names)?;
    }
    Ok(names)
}

// ---------------------------------------------------------------- common

/// The runs of one (optimizer, label), in legend order.
struct Group {
    optimizer: String,
    label: String,
    color: RGBColor,
    /// Indices into `input.runs`; the first is the "first seed".
    runs: Vec<usize>,
}

/// The settings, a diverged seed apart from the others with its label
/// saying so (as in every figure).
fn groups(input: &ReportInput) -> Result<Vec<Group>, ReportError> {
    let mut gs: Vec<Group> = Vec::new();
    for (i, r) in input.runs.iter().enumerate() {
        let label = if crate::data::diverged(r.file("train.arrow")?)? {
            format!("{} (diverged)", r.label)
        } else {
            r.label.clone()
        };
        match gs
            .iter_mut()
            .find(|g| g.optimizer == r.optimizer && g.label == label)
        {
            Some(g) => g.runs.push(i),
            None => gs.push(Group {
                optimizer: r.optimizer.clone(),
                label,
                color: optimizer_color(&r.optimizer),
                runs: vec![i],
            }),
        }
    }
    let keys: Vec<(&str, Option<f64>)> = gs
        .iter()
        .map(|g| {
            (
                g.optimizer.as_str(),
                input.runs[g.runs[0]].params["lr"].as_f64(),
            )
        })
        .collect();
    let (order, colors) = sweep_order(&keys);
    for (g, c) in gs.iter_mut().zip(colors) {
        g.color = c;
    }
    let mut gs: Vec<Option<Group>> = gs.into_iter().map(Some).collect();
    Ok(order.iter().filter_map(|&i| gs[i].take()).collect())
}

/// A figure drawn identically on the bitmap and the SVG backend.
trait Figure {
    fn height(&self) -> u32;
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Clears the figure and writes its title centred at height `title_y` in a
/// head band `head_h` pixels tall; returns the area below the band.
fn headed<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    head_h: u32,
    title_y: i32,
) -> Result<DrawingArea<DB, Shift>, String> {
    root.fill(&WHITE).map_err(pe)?;
    let (head, body) = root.split_vertically(head_h);
    head.draw(&Text::new(
        title,
        (WIDTH as i32 / 2, title_y),
        text_style(TITLE_PX + 4.0, INK).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(pe)?;
    Ok(body)
}

/// A matrix plot's axis titles: the x title centred below at its point, the
/// y title rotated, centred at its point.
fn axis_titles<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x_text, x_at): (&str, (i32, i32)),
    (y_text, y_at): (&str, (i32, i32)),
) -> Result<(), String> {
    area.draw(&Text::new(
        x_text,
        x_at,
        text_style(AXIS_DESC_PX, INK).pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(pe)?;
    let rotated = TextStyle {
        font: (FAMILY, AXIS_DESC_PX)
            .into_font()
            .transform(FontTransform::Rotate270),
        color: INK.to_backend_color(),
        pos: Pos::new(HPos::Center, VPos::Top),
    };
    area.draw(&Text::new(y_text, y_at, rotated)).map_err(pe)?;
    Ok(())
}

fn save<F: Figure>(
    fig: &F,
    name: &str,
    out_dir: &Path,
    names: &mut Vec<String>,
) -> Result<(), ReportError> {
    let size = (WIDTH, fig.height());
    let png = format!("{name}.png");
    let svg = format!("{name}.svg");
    let plot_err = |file: PathBuf| move |message: String| ReportError::Plot { file, message };
    let png_path = out_dir.join(&png);
    let root = BitMapBackend::new(&png_path, size).into_drawing_area();
    fig.draw(&root)
        .and_then(|()| root.present().map_err(pe))
        .map_err(plot_err(png_path.clone()))?;
    drop(root);
    let svg_path = out_dir.join(&svg);
    let root = SVGBackend::new(&svg_path, size).into_drawing_area();
    fig.draw(&root)
        .and_then(|()| root.present().map_err(pe))
        .map_err(plot_err(svg_path.clone()))?;
    names.push(png);
    names.push(svg);
    names.push(crate::pdf::from_svg(out_dir, name)?);
    Ok(())
}

/// `operator == "hessian"` (every row when the file has no operator column).
fn is_hessian(t: &Table) -> Result<Expr, ReportError> {
    Ok(if t.has("operator") {
        t.col("operator", Kind::Str)?.eq(lit("hessian"))
    } else {
        lit(true)
    })
}

/// Reads the Hessian rows of `name` for run `run`, selecting `cols` cast to
/// their kinds and `trusted` (true for a file without the column), with an
/// extra filter.
fn hessian_rows(
    input: &ReportInput,
    run: usize,
    name: &str,
    cols: &[(&str, Kind)],
    extra: impl FnOnce(&Table) -> Result<Expr, ReportError>,
) -> Result<(DataFrame, PathBuf), ReportError> {
    let path = input.runs[run].file(name)?.to_path_buf();
    let t = Table::open(&path)?;
    let mut sel = Vec::with_capacity(cols.len());
    for (c, k) in cols {
        sel.push(t.col(c, *k)?.alias(*c));
    }
    sel.push(t.trusted()?.alias("trusted"));
    let keep = is_hessian(&t)?.and(extra(&t)?);
    let df = t.query(|lf| lf.filter(keep).select(sel))?;
    Ok((df, path))
}

/// Mix a colour towards `target` (0 = black, 255 = white) by `amount`.
fn mix(c: RGBColor, target: f64, amount: f64) -> RGBColor {
    let m = |v: u8| (f64::from(v) * (1.0 - amount) + target * amount).round() as u8;
    RGBColor(m(c.0), m(c.1), m(c.2))
}

/// Light tint → the colour → dark shade, for `f` in [0, 1].
fn sequential(c: RGBColor, f: f64) -> RGBColor {
    let f = f.clamp(0.0, 1.0);
    if f < 0.5 {
        mix(c, 255.0, 0.62 * (1.0 - 2.0 * f))
    } else {
        mix(c, 0.0, 0.55 * (2.0 * f - 1.0))
    }
}

/// Viridis at 17 evenly spaced stops (matplotlib's values).
const VIRIDIS: [(u8, u8, u8); 17] = [
    (68, 1, 84),
    (72, 22, 104),
    (72, 40, 120),
    (67, 57, 132),
    (62, 74, 137),
    (55, 89, 140),
    (49, 104, 142),
    (43, 117, 142),
    (38, 130, 142),
    (33, 144, 141),
    (31, 158, 137),
    (37, 171, 130),
    (53, 183, 121),
    (83, 197, 105),
    (119, 208, 83),
    (160, 218, 57),
    (253, 231, 37),
];

/// Viridis at `f` in [0, 1], linearly interpolated between the stops.
fn viridis(f: f64) -> RGBColor {
    let f = if f.is_finite() {
        f.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = f * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let t = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let l = |p: u8, q: u8| (f64::from(p) * (1.0 - t) + f64::from(q) * t).round() as u8;
    RGBColor(l(a.0, b.0), l(a.1, b.1), l(a.2, b.2))
}

/// Builds a chart with the crate's axis style in `area`.
fn line_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: &Axis,
    y: &Axis,
    x_desc: &str,
    y_desc: &str,
) -> Result<ChartContext<'a, DB, Cartesian2d<Axis, Axis>>, String> {
    let (w, _) = area.dim_in_pixel();
    let (title, px) = fitted_title(area, title, TITLE_PX, w as i32 - 60)?;
    let mut chart = ChartBuilder::on(area)
        .caption(title, text_style(px, INK))
        .margin_top(20)
        .margin_bottom(10)
        .margin_left(12)
        .margin_right(40)
        .x_label_area_size(112)
        .y_label_area_size(160)
        .build_cartesian_2d(x.clone(), y.clone())
        .map_err(pe)?;
    let x_fmt = |u: &f64| x.label(*u);
    let y_fmt = |u: &f64| y.label(*u);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
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
    Ok(chart)
}

/// One legend entry: a line sample, a filled swatch, or a dashed line.
#[derive(Clone, Copy, PartialEq)]
enum Sample {
    Line,
    Dashed,
    /// Short dashes: the layer-mass-matched null.
    Dotted,
    Swatch,
    /// Text only, in grey.
    Note,
    /// A hollow marker: the untrusted-points note.
    Hollow,
}

/// The legend entry on hollow markers, when `any` point is untrusted; its
/// words say so when `all` are.
fn untrusted_entry((any, all): (bool, bool)) -> Option<Entry> {
    let text = untrusted_text(any, all)?;
    Some(Entry {
        color: INK,
        sample: Sample::Hollow,
        text: text.to_string(),
    })
}

/// (any, all) untrusted over per-point trust flags.
fn trust_flags<'a>(flags: impl IntoIterator<Item = &'a bool>) -> (bool, bool) {
    let (mut n, mut bad) = (0usize, 0usize);
    for t in flags {
        n += 1;
        bad += usize::from(!*t);
    }
    (bad > 0, n > 0 && bad == n)
}

#[derive(Clone)]
struct Entry {
    color: RGBColor,
    sample: Sample,
    text: String,
}

const SAMPLE_W: i32 = 80;
const LEGEND_ROW_H: i32 = 58;

/// Draws a centred single-row (wrapping) legend in `area` and returns nothing.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
    px: f64,
) -> Result<(), String> {
    let (w, _) = area.dim_in_pixel();
    let max_w = w as i32 - 60;
    let mut rows: Vec<Vec<(usize, i32)>> = vec![vec![]];
    let mut widths = vec![0i32];
    for (i, e) in entries.iter().enumerate() {
        let (tw, _) = area
            .estimate_text_size(&e.text, &text_style(px, INK))
            .map_err(pe)?;
        let ew = tw as i32
            + if e.sample == Sample::Note {
                0
            } else {
                SAMPLE_W + 14
            };
        let r = rows.len() - 1;
        if widths[r] > 0 && widths[r] + 50 + ew > max_w {
            rows.push(vec![(i, 0)]);
            widths.push(ew);
        } else {
            let x = if widths[r] > 0 { widths[r] + 50 } else { 0 };
            rows[r].push((i, x));
            widths[r] = x + ew;
        }
    }
    for (r, row) in rows.iter().enumerate() {
        let left0 = (w as i32 - widths[r]) / 2;
        let y = 14 + r as i32 * LEGEND_ROW_H + LEGEND_ROW_H / 2;
        for &(i, x) in row {
            let e = &entries[i];
            let left = left0 + x;
            if e.sample == Sample::Note {
                let style = text_style(px, e.color).pos(Pos::new(HPos::Left, VPos::Center));
                area.draw(&Text::new(e.text.clone(), (left, y), style))
                    .map_err(pe)?;
                continue;
            }
            match e.sample {
                Sample::Line => area
                    .draw(&PathElement::new(
                        vec![(left, y), (left + SAMPLE_W, y)],
                        e.color.stroke_width(LINE_W + 1),
                    ))
                    .map_err(pe)?,
                Sample::Dashed => area
                    .draw(&plotters::element::DashedPathElement::new(
                        vec![(left, y), (left + SAMPLE_W, y)],
                        18,
                        10,
                        e.color.stroke_width(LINE_W),
                    ))
                    .map_err(pe)?,
                Sample::Dotted => area
                    .draw(&plotters::element::DashedPathElement::new(
                        vec![(left, y), (left + SAMPLE_W, y)],
                        6,
                        10,
                        e.color.stroke_width(4),
                    ))
                    .map_err(pe)?,
                Sample::Swatch => area
                    .draw(&Rectangle::new(
                        [(left, y - 16), (left + SAMPLE_W, y + 16)],
                        e.color.filled(),
                    ))
                    .map_err(pe)?,
                Sample::Hollow => {
                    for c in hollow_marker((left + SAMPLE_W / 2, y), MARKER_R + 2, e.color) {
                        area.draw(&c).map_err(pe)?;
                    }
                }
                Sample::Note => {}
            }
            let style = text_style(px, INK).pos(Pos::new(HPos::Left, VPos::Center));
            area.draw(&Text::new(e.text.clone(), (left + SAMPLE_W + 14, y), style))
                .map_err(pe)?;
        }
    }
    Ok(())
}

fn legend_height(n_rows: usize) -> u32 {
    28 + (n_rows as u32) * LEGEND_ROW_H as u32
}

/// How many legend rows `entries` need at the figure width (estimated).
fn legend_rows(entries: &[Entry], px: f64) -> usize {
    let max_w = WIDTH as f64 - 60.0;
    let mut rows = 1;
    let mut cur = 0.0;
    for e in entries {
        let w = e.text.chars().count() as f64 * px * 0.62 + f64::from(SAMPLE_W) + 14.0;
        if cur > 0.0 && cur + 50.0 + w > max_w {
            rows += 1;
            cur = w;
        } else {
            cur += if cur > 0.0 { 50.0 + w } else { w };
        }
    }
    rows
}

/// The note in an empty panel, centred: "no data" or why it is empty.
fn no_data<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<Axis, Axis>>,
    x: &Axis,
    y: &Axis,
    note: &str,
) -> Result<(), String> {
    let mid = ((x.lo + x.hi) / 2.0, (y.lo + y.hi) / 2.0);
    let style = text_style(AXIS_DESC_PX, REF_GREY).pos(Pos::new(HPos::Center, VPos::Center));
    chart
        .draw_series(std::iter::once(Text::new(note.to_string(), mid, style)))
        .map_err(pe)?;
    Ok(())
}

/// Up to `n` values of `candidates` (sorted, ≥ 0) spread log-uniformly in value + 1.
fn log_spread(candidates: &[i64], n: usize) -> Vec<i64> {
    if candidates.len() <= n {
        return candidates.to_vec();
    }
    let lo = (candidates[0] as f64 + 1.0).ln();
    let hi = (candidates[candidates.len() - 1] as f64 + 1.0).ln();
    let mut out: Vec<i64> = Vec::new();
    for i in 0..n {
        let target = lo + (hi - lo) * i as f64 / (n - 1) as f64;
        let best = candidates
            .iter()
            .filter(|c| !out.contains(c))
            .min_by(|a, b| {
                let da = ((**a as f64 + 1.0).ln() - target).abs();
                let db = ((**b as f64 + 1.0).ln() - target).abs();
                da.total_cmp(&db)
            })
            .copied();
        if let Some(b) = best {
            out.push(b);
        }
    }
    out.sort_unstable();
    out
}

// ---------------------------------------------------------------- fig 4

struct AgingCurve {
    t_w: i64,
    tau: Vec<f64>,
    /// Mean over the group's seeds, and the min–max band.
    q: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// Per point: every seed's overlap row is trusted (both ends).
    trusted: Vec<bool>,
    /// Per point: the mean over seeds of ln(train loss) at t = t_w + τ.
    ln_loss: Vec<f64>,
}

impl AgingCurve {
    /// The points at the seeds' geometric-mean train loss at t instead of
    /// at τ (points without a loss dropped).
    fn against_loss(&self, floor: Option<f64>) -> AgingCurve {
        let keep = kept_at_loss(&self.ln_loss, self.tau.len(), floor);
        let pick = |v: &[f64]| keep.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        AgingCurve {
            t_w: self.t_w,
            tau: keep.iter().map(|&i| self.ln_loss[i].exp()).collect(),
            q: pick(&self.q),
            lo: pick(&self.lo),
            hi: pick(&self.hi),
            trusted: keep.iter().map(|&i| self.trusted[i]).collect(),
            ln_loss: pick(&self.ln_loss),
        }
    }
}

struct AgingPanel {
    title: String,
    color: RGBColor,
    seeds: usize,
    /// The most checkpoints a seed has: a waiting time needs 3 later ones.
    checkpoints: usize,
    curves: Vec<AgingCurve>,
    /// The collapse fit over every waiting time t_w > 0 (aging.rs): μ over
    /// the seeds and the regime; None without a fit.
    fit: Option<(crate::findings::Summary, aging::Regime)>,
    /// Lines written under the panel, joined by " · " (the collapse fit).
    note: Vec<String>,
}

struct Aging {
    /// Against the lag τ, or against the train loss at t.
    along: XAxis,
    /// Where a loss axis is cut (see `chart::loss_floor`).
    loss_floor: Option<f64>,
    panels: Vec<AgingPanel>,
    /// x is the scaled lag τ/t_w^μ, μ each panel's fitted exponent.
    scaled: bool,
    /// The waiting times drawn (the same in every panel that has them).
    t_ws: Vec<i64>,
    /// Some point drawn is untrusted, and every one is: the legend's note.
    untrusted: (bool, bool),
}

/// Panels in a grid of at most 4 columns: (rows, columns).
fn grid(n: usize) -> (usize, usize) {
    let n = n.max(1);
    let cols = match n {
        1..=4 => n,
        5 | 6 | 9 => 3,
        _ => 4,
    };
    (n.div_ceil(cols), cols)
}

/// The number of seeds averaged per setting, "3" or a range "2–3", when
/// some setting has several (None: nothing is averaged).
fn seed_count(counts: impl Iterator<Item = usize>) -> Option<String> {
    let counts: Vec<usize> = counts.collect();
    let (lo, hi) = (*counts.iter().min()?, *counts.iter().max()?);
    (hi > 1).then(|| {
        if lo == hi {
            format!("{hi}")
        } else {
            format!("{lo}–{hi}")
        }
    })
}

/// Height of one row of grid panels.
const GRID_ROW_H: u32 = 820;
/// Height of the note line under a panel (the collapse fit).
const NOTE_H: i32 = 56;

impl Aging {
    fn load(input: &ReportInput, groups: &[Group]) -> Result<Aging, ReportError> {
        // Per group: (t_w, t) → every seed's q, whether all are trusted,
        // and every seed's ln(train loss) at t.
        type Cell = (Vec<f64>, bool, Vec<f64>);
        type Cells = BTreeMap<(i64, i64), Cell>;
        let mut per_group: Vec<Cells> = Vec::new();
        let mut fits = Vec::new();
        for g in groups {
            let mut cells = Cells::new();
            let mut per_seed = Vec::new();
            for &run in &g.runs {
                let cols = [
                    ("t_w", Kind::Int),
                    ("t", Kind::Int),
                    ("subspace_overlap", Kind::Float),
                ];
                let (df, path) = hessian_rows(input, run, "metrics/overlap.arrow", &cols, |_| {
                    Ok(col("t").gt(col("t_w")))
                })?;
                let tw = i64s(&df, "t_w", &path)?;
                let t = i64s(&df, "t", &path)?;
                let q = f64s(&df, "subspace_overlap", &path)?;
                let ok = bools(&df, "trusted", &path)?;
                let clock = LossClock::load(input.runs[run].file("train.arrow")?)?;
                for i in 0..tw.len() {
                    let e = cells
                        .entry((tw[i], t[i]))
                        .or_insert((Vec::new(), true, Vec::new()));
                    if q[i].is_finite() {
                        e.0.push(q[i]);
                        e.2.push(clock.ln_at(t[i] as f64));
                    }
                    e.1 &= ok[i];
                }
                // This seed's trusted pairs, for the collapse fit.
                let pairs: BTreeMap<(i64, i64), f64> = (0..tw.len())
                    .filter(|&i| ok[i])
                    .map(|i| ((tw[i], t[i]), q[i]))
                    .collect();
                per_seed.push(aging::curves_of(&pairs, 0.0, f64::INFINITY));
            }
            per_group.push(cells);
            let fit = aging::fit_setting(&per_seed);
            fits.push(fit.fits.iter().any(Option::is_some).then(|| fit.verdict()));
        }
        // Waiting times with at least three later checkpoints in some group,
        // six of them spread in log(t_w + 1): the same ones in every panel.
        let mut cands: Vec<i64> = Vec::new();
        for cells in &per_group {
            let mut later: BTreeMap<i64, usize> = BTreeMap::new();
            for (w, _) in cells.keys() {
                *later.entry(*w).or_default() += 1;
            }
            cands.extend(later.into_iter().filter(|(_, n)| *n >= 3).map(|(w, _)| w));
        }
        cands.sort_unstable();
        cands.dedup();
        let t_ws = log_spread(&cands, 6);
        let panels: Vec<AgingPanel> = groups
            .iter()
            .zip(&per_group)
            .zip(fits)
            .map(|((g, cells), fit)| {
                let curves = t_ws
                    .iter()
                    .filter_map(|&w| {
                        let pts: Vec<(i64, &Cell)> = cells
                            .range((w, i64::MIN)..=(w, i64::MAX))
                            .filter(|(_, v)| !v.0.is_empty())
                            .map(|((_, t), v)| (*t, v))
                            .collect();
                        let stat = |f: fn(&[f64]) -> f64| -> Vec<f64> {
                            pts.iter().map(|(_, v)| f(&v.0)).collect()
                        };
                        (!pts.is_empty()).then(|| AgingCurve {
                            t_w: w,
                            tau: pts.iter().map(|(t, _)| (t - w) as f64).collect(),
                            q: stat(|v| v.iter().sum::<f64>() / v.len() as f64),
                            lo: stat(|v| v.iter().copied().fold(f64::INFINITY, f64::min)),
                            hi: stat(|v| v.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                            trusted: pts.iter().map(|(_, v)| v.1).collect(),
                            // NaN when some seed has no loss at t.
                            ln_loss: pts
                                .iter()
                                .map(|(_, v)| v.2.iter().sum::<f64>() / v.2.len() as f64)
                                .collect(),
                        })
                    })
                    .collect();
                let mut steps: Vec<i64> = cells.keys().flat_map(|&(w, t)| [w, t]).collect();
                steps.sort_unstable();
                steps.dedup();
                AgingPanel {
                    title: g.label.clone(),
                    color: g.color,
                    seeds: g.runs.len(),
                    checkpoints: steps.len(),
                    curves,
                    fit,
                    note: Vec::new(),
                }
            })
            .collect();
        let untrusted = trust_flags(
            panels
                .iter()
                .flat_map(|p: &AgingPanel| &p.curves)
                .flat_map(|c| &c.trusted),
        );
        Ok(Aging {
            along: XAxis::Step,
            loss_floor: None,
            scaled: false,
            panels,
            t_ws,
            untrusted,
        })
    }

    /// The loss-axis variant: each curve at the train loss at t.
    fn against_loss(&self) -> Aging {
        let floor = loss_floor(
            self.panels
                .iter()
                .flat_map(|p| &p.curves)
                .flat_map(|c| c.ln_loss.iter().map(|l| l.exp())),
        );
        Aging {
            along: XAxis::Loss,
            loss_floor: floor,
            scaled: false,
            panels: self
                .panels
                .iter()
                .map(|p| AgingPanel {
                    title: p.title.clone(),
                    color: p.color,
                    seeds: p.seeds,
                    checkpoints: p.checkpoints,
                    curves: p.curves.iter().map(|c| c.against_loss(floor)).collect(),
                    fit: p.fit.clone(),
                    note: p.note.clone(),
                })
                .collect(),
            t_ws: self.t_ws.clone(),
            untrusted: self.untrusted,
        }
    }

    /// The collapse variant: each panel's curves against τ/t_w^μ, μ the
    /// mean of its seeds' fitted exponents, the fit and its regime in the
    /// panel's title. Waiting time 0 has no scaled lag and is left out; a
    /// panel without a fit keeps no curve.
    fn collapsed(&self) -> Aging {
        let panels = self
            .panels
            .iter()
            .map(|p| {
                let (note, curves) = match &p.fit {
                    Some((mu, regime)) if mu.mean.is_finite() => {
                        let m = mu.mean;
                        let ci = if mu.n >= 2 {
                            format!(" [{}, {}]", fmt2(mu.ci.0), fmt2(mu.ci.1))
                        } else {
                            String::new()
                        };
                        let curves = p
                            .curves
                            .iter()
                            .filter(|c| c.t_w > 0)
                            .map(|c| AgingCurve {
                                t_w: c.t_w,
                                tau: c.tau.iter().map(|t| t / (c.t_w as f64).powf(m)).collect(),
                                q: c.q.clone(),
                                lo: c.lo.clone(),
                                hi: c.hi.clone(),
                                trusted: c.trusted.clone(),
                                ln_loss: c.ln_loss.clone(),
                            })
                            .collect();
                        (
                            vec![format!("μ = {}{ci}", fmt2(m)), regime.as_str().to_string()],
                            curves,
                        )
                    }
                    _ => (vec!["no fit".to_string()], Vec::new()),
                };
                AgingPanel {
                    title: p.title.clone(),
                    color: p.color,
                    seeds: p.seeds,
                    checkpoints: p.checkpoints,
                    curves,
                    fit: p.fit.clone(),
                    note,
                }
            })
            .collect();
        Aging {
            along: XAxis::Step,
            loss_floor: None,
            scaled: true,
            panels,
            t_ws: self.t_ws.iter().copied().filter(|w| *w > 0).collect(),
            untrusted: self.untrusted,
        }
    }

    /// One legend for the figure: the waiting times (light to dark, in each
    /// panel's own colour; drawn here in grey), the band's meaning and the
    /// untrusted-points note.
    fn legend(&self) -> Vec<Entry> {
        let n = self.t_ws.len();
        let mut e: Vec<Entry> = vec![Entry {
            color: REF_GREY,
            sample: Sample::Note,
            text: "waiting time:".into(),
        }];
        e.extend(self.t_ws.iter().enumerate().map(|(i, w)| Entry {
            color: sequential(INK_GREY, lightness(i, n)),
            sample: Sample::Line,
            text: format!("t_w = {w}"),
        }));
        if let Some(seeds) = self.seed_note() {
            e.push(Entry {
                color: REF_GREY,
                sample: Sample::Note,
                text: seeds,
            });
        }
        if self.along == XAxis::Loss {
            e.push(Entry {
                color: REF_GREY,
                sample: Sample::Note,
                text: loss_note(self.panels.iter().any(|p| p.seeds > 1))
                    .replace("at the checkpoint", "at t, decreasing to the right"),
            });
        }
        e.extend(self.loss_floor.map(|f| Entry {
            color: REF_GREY,
            sample: Sample::Note,
            text: loss_cut_note(f),
        }));
        e.extend(untrusted_entry(self.untrusted));
        e
    }

    /// "line: mean over 3 seeds · band: min–max" when some panel has
    /// several seeds (the count, or its range).
    fn seed_note(&self) -> Option<String> {
        seed_count(self.panels.iter().map(|p| p.seeds))
            .map(|n| format!("line: mean over {n} seeds · band: min–max"))
    }

    fn legend_h(&self) -> u32 {
        legend_height(legend_rows(&self.legend(), LEGEND_PX))
    }
}

/// A number with two decimals, a typeset minus for negatives.
fn fmt2(v: f64) -> String {
    format!("{v:.2}").replace('-', "\u{2212}")
}

/// A neutral grey whose lightness ramp stands for the waiting times in the
/// legend.
const INK_GREY: RGBColor = RGBColor(0x60, 0x60, 0x60);

/// The position of curve `i` of `n` on the light-to-dark ramp.
fn lightness(i: usize, n: usize) -> f64 {
    if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        1.0
    }
}

/// The largest font size (from `px` down to 26) at which `text` fits in
/// `width` pixels, and the text, shortened with "…" if even that is too wide.
fn fitted_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    px: f64,
    width: i32,
) -> Result<(String, f64), String> {
    let fits = |t: &str, size: f64| -> Result<bool, String> {
        let (w, _) = area
            .estimate_text_size(t, &text_style(size, INK))
            .map_err(pe)?;
        Ok((w as i32) <= width)
    };
    let mut size = px;
    while size > 26.0 {
        if fits(text, size)? {
            return Ok((text.to_string(), size));
        }
        size -= 2.0;
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (1..chars.len()).rev() {
        let t: String = chars[..keep].iter().collect::<String>() + "…";
        if fits(&t, size)? {
            return Ok((t, size));
        }
    }
    Ok(("…".into(), size))
}

impl Figure for Aging {
    fn height(&self) -> u32 {
        let (rows, _) = grid(self.panels.len());
        let note = if self.scaled { NOTE_H as u32 } else { 0 };
        90 + self.legend_h() + rows as u32 * (GRID_ROW_H + note)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (title, x_desc) = match self.along {
            XAxis::Step if self.scaled => (
                "Aging collapse: q(t_w, t_w + τ) against τ / t_w^μ",
                "scaled lag τ / t_w^μ",
            ),
            XAxis::Step => (
                "Aging of the top-k Hessian subspace: q(t_w, t_w + τ)",
                "lag τ (steps)",
            ),
            XAxis::Loss => (
                "Aging of the top-k Hessian subspace: q(t_w, t) against the train loss at t",
                "train loss at t",
            ),
        };
        let rest = headed(root, title, 90, 50)?;
        let (legend, body) = rest.split_vertically(self.legend_h());
        draw_legend(&legend, &self.legend(), LEGEND_PX)?;
        let taus = self
            .panels
            .iter()
            .flat_map(|p| p.curves.iter().flat_map(|c| c.tau.iter().copied()));
        let x = match self.along {
            XAxis::Step => {
                let (lo, hi) = finite_range(taus, true).unwrap_or((1.0, 1000.0));
                Axis::fit(Scale::Log, lo, hi, 0.03)
            }
            XAxis::Loss => {
                let (lo, hi) = finite_range(taus, true).unwrap_or((1e-3, 1.0));
                Axis::fit(Scale::Log, lo, hi, 0.03).reversed()
            }
        };
        // Narrow panels (3 or 4 columns): at most 4 labelled decades.
        let (rows, cols) = grid(self.panels.len());
        let x = if cols >= 3 { x.at_most(4) } else { x };
        let y = unit_axis();
        let cells = body.split_evenly((rows, cols));
        for (i, (cell, p)) in cells.iter().zip(&self.panels).enumerate() {
            // Scaled lags differ by orders of magnitude between panels:
            // each gets its own x range.
            let x = if self.scaled {
                let taus = p.curves.iter().flat_map(|c| c.tau.iter().copied());
                let (lo, hi) = finite_range(taus, true).unwrap_or((1e-3, 1.0));
                let a = Axis::fit(Scale::Log, lo, hi, 0.03);
                if cols >= 3 {
                    a.at_most(4)
                } else {
                    a
                }
            } else {
                x.clone()
            };
            // The y axis is shared along a row: its title in the first column.
            let y_desc = match (i % cols == 0, self.along) {
                (false, _) => "",
                (true, XAxis::Step) => "q(t_w, t_w + τ)",
                (true, XAxis::Loss) => "q(t_w, t)",
            };
            // The collapse fit, in one line under the panel.
            let plot = if p.note.is_empty() {
                cell.clone()
            } else {
                with_foot(cell, &p.note.join(" · "))?
            };
            let cell = &plot;
            let mut chart = line_chart(cell, &p.title, &x, &y, x_desc, y_desc)?;
            let n = self.t_ws.len();
            let pts = |xs: &[f64], ys: &[f64]| -> Vec<(f64, f64)> {
                xs.iter()
                    .zip(ys)
                    .filter_map(|(&a, &b)| Some((x.t(a)?, y.t(b)?)))
                    .collect()
            };
            for c in &p.curves {
                let i = self.t_ws.iter().position(|w| *w == c.t_w).unwrap_or(0);
                let color = sequential(p.color, lightness(i, n));
                if p.seeds > 1 {
                    if let Some(poly) = band_outline(pts(&c.tau, &c.hi), pts(&c.tau, &c.lo)) {
                        chart
                            .draw_series(std::iter::once(Polygon::new(
                                poly,
                                color.mix(BAND_ALPHA).filled(),
                            )))
                            .map_err(pe)?;
                    }
                }
                let marked: Vec<((f64, f64), bool)> = c
                    .tau
                    .iter()
                    .zip(&c.q)
                    .zip(&c.trusted)
                    .filter_map(|((&a, &b), &ok)| Some(((x.t(a)?, y.t(b)?), ok)))
                    .collect();
                let line: Vec<(f64, f64)> = marked.iter().map(|m| m.0).collect();
                chart
                    .draw_series(LineSeries::new(line.clone(), color.stroke_width(LINE_W)))
                    .map_err(pe)?;
                if line.len() <= 60 {
                    chart
                        .draw_series(
                            marked
                                .iter()
                                .filter(|m| m.1)
                                .map(|&(q, _)| Circle::new(q, 6, color.filled())),
                        )
                        .map_err(pe)?;
                }
                chart
                    .draw_series(
                        marked
                            .iter()
                            .filter(|m| !m.1)
                            .flat_map(|&(q, _)| hollow_marker(q, MARKER_R, color)),
                    )
                    .map_err(pe)?;
            }
            if p.curves.is_empty() {
                no_data(
                    &mut chart,
                    &x,
                    &y,
                    if p.checkpoints < 4 {
                        "too few checkpoints"
                    } else if self.scaled {
                        "too few waiting times to fit μ"
                    } else {
                        "no data"
                    },
                )?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- fig 5

/// A symmetric matrix over checkpoint indices (NaN where not computed).
struct Matrix {
    steps: Vec<i64>,
    v: Vec<f64>,
    /// Per cell: built on an untrusted pair (drawn hatched).
    untrusted: Vec<bool>,
}

impl Matrix {
    /// Some computed cell is built on an untrusted pair.
    fn any_untrusted(&self) -> bool {
        self.v
            .iter()
            .zip(&self.untrusted)
            .any(|(v, u)| *u && v.is_finite())
    }
}

impl Matrix {
    /// The cell-wise mean of the seeds' matrices (a cell is untrusted when
    /// any seed's is, and missing when every seed's is); None when the
    /// seeds' checkpoints differ, so that cells would not line up.
    fn mean(ms: &[Matrix]) -> Option<Matrix> {
        let first = ms.first()?;
        if ms.iter().any(|m| m.steps != first.steps) {
            return None;
        }
        let cells = first.v.len();
        let mut v = vec![f64::NAN; cells];
        let mut untrusted = vec![false; cells];
        for c in 0..cells {
            let vals: Vec<f64> = ms
                .iter()
                .map(|m| m.v[c])
                .filter(|x| x.is_finite())
                .collect();
            if !vals.is_empty() {
                v[c] = vals.iter().sum::<f64>() / vals.len() as f64;
            }
            untrusted[c] = ms.iter().any(|m| m.untrusted[c] && m.v[c].is_finite());
        }
        Some(Matrix {
            steps: first.steps.clone(),
            v,
            untrusted,
        })
    }
}

struct HeatRow {
    title: String,
    v1: Matrix,
    q: Matrix,
}

struct Heatmaps {
    /// One per setting.
    rows: Vec<HeatRow>,
    /// "mean over 3 seeds" or the like, when some setting has several.
    seeds: Option<String>,
}

fn symmetric(steps: &[i64], a: &[i64], b: &[i64], val: &[f64], trusted: &[bool]) -> Matrix {
    let n = steps.len();
    let mut v = vec![f64::NAN; n * n];
    let mut untrusted = vec![false; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for (((x, y), z), ok) in a.iter().zip(b).zip(val).zip(trusted) {
        if let (Ok(i), Ok(j)) = (steps.binary_search(x), steps.binary_search(y)) {
            v[i * n + j] = *z;
            v[j * n + i] = *z;
            untrusted[i * n + j] = !ok;
            untrusted[j * n + i] = !ok;
        }
    }
    Matrix {
        steps: steps.to_vec(),
        v,
        untrusted,
    }
}

/// A run's two maps: |⟨v₁(t), v₁(t′)⟩| and q(t, t′).
fn run_maps(input: &ReportInput, run: usize) -> Result<(Matrix, Matrix), ReportError> {
    let cols = [
        ("t_w", Kind::Int),
        ("t", Kind::Int),
        ("subspace_overlap", Kind::Float),
    ];
    let (odf, opath) = hessian_rows(input, run, "metrics/overlap.arrow", &cols, |_| {
        Ok(lit(true))
    })?;
    let cols = [
        ("t_w", Kind::Int),
        ("t", Kind::Int),
        ("same_rank_displacement", Kind::Float),
    ];
    let (ddf, dpath) = hessian_rows(input, run, "metrics/displacement.arrow", &cols, |t| {
        Ok(t.col("rank", Kind::Int)?.eq(lit(0i64)))
    })?;
    let (otw, ot, oq, ook) = (
        i64s(&odf, "t_w", &opath)?,
        i64s(&odf, "t", &opath)?,
        f64s(&odf, "subspace_overlap", &opath)?,
        bools(&odf, "trusted", &opath)?,
    );
    let (dtw, dt, dd, dok) = (
        i64s(&ddf, "t_w", &dpath)?,
        i64s(&ddf, "t", &dpath)?,
        f64s(&ddf, "same_rank_displacement", &dpath)?,
        bools(&ddf, "trusted", &dpath)?,
    );
    let mut steps: Vec<i64> = otw
        .iter()
        .chain(&ot)
        .chain(&dtw)
        .chain(&dt)
        .copied()
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let cos: Vec<f64> = dd.iter().map(|d| (1.0 - d).clamp(0.0, 1.0)).collect();
    Ok((
        symmetric(&steps, &dtw, &dt, &cos, &dok),
        symmetric(&steps, &otw, &ot, &oq, &ook),
    ))
}

impl Heatmaps {
    fn load(input: &ReportInput, groups: &[Group]) -> Result<Heatmaps, ReportError> {
        let mut rows = Vec::new();
        for g in groups {
            let maps = g
                .runs
                .iter()
                .map(|&run| run_maps(input, run))
                .collect::<Result<Vec<_>, _>>()?;
            let (v1s, qs): (Vec<Matrix>, Vec<Matrix>) = maps.into_iter().unzip();
            // The seeds' mean; where their checkpoints differ, the first
            // seed, named.
            let row = match (Matrix::mean(&v1s), Matrix::mean(&qs)) {
                (Some(v1), Some(q)) => HeatRow {
                    title: g.label.clone(),
                    v1,
                    q,
                },
                _ => {
                    let first = g.runs[0];
                    let (v1, q) = run_maps(input, first)?;
                    HeatRow {
                        title: format!("{} (run {})", g.label, input.runs[first].run_id),
                        v1,
                        q,
                    }
                }
            };
            rows.push(row);
        }
        let seeds = seed_count(groups.iter().map(|g| g.runs.len()))
            .map(|n| format!("each map the mean over {n} seeds"));
        Ok(Heatmaps { rows, seeds })
    }

    /// Settings side by side in a row: one with up to two settings (large
    /// maps), two beyond that.
    fn per_row(&self) -> usize {
        if self.rows.len() <= 2 {
            1
        } else {
            2
        }
    }
}

/// Index ticks: about `n` indices spread evenly, labelled with their steps.
fn index_ticks(len: usize, n: usize) -> Vec<usize> {
    if len == 0 {
        return vec![];
    }
    let n = n.min(len).max(1);
    let mut t: Vec<usize> = (0..n)
        .map(|i| {
            if n == 1 {
                0
            } else {
                (i * (len - 1) + (n - 1) / 2) / (n - 1)
            }
        })
        .collect();
    t.dedup();
    t
}

/// Margins of a heatmap cell: room for the tick labels and axis titles.
const HEAT_MARGIN: (i32, i32, i32, i32) = (170, 80, 150, 20);

/// The side of the square map drawn in a `w`×`h` cell.
fn heat_side(w: i32, h: i32) -> i32 {
    let (left, top, bottom, right) = HEAT_MARGIN;
    (w - left - right).min(h - top - bottom).max(10)
}

/// Draws an n×n heatmap into `area` with `title`; cells coloured by viridis(v).
fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    m: &Matrix,
) -> Result<(), String> {
    let n = m.steps.len();
    let (w, h) = area.dim_in_pixel();
    let (left, top, _, right) = HEAT_MARGIN;
    let side = heat_side(w as i32, h as i32);
    let x0 = left + (w as i32 - left - right - side) / 2;
    let y0 = top;
    area.draw(&Text::new(
        title.to_string(),
        (x0 + side / 2, 36),
        text_style(TITLE_PX - 4.0, INK).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(pe)?;
    if n == 0 {
        area.draw(&Text::new(
            "no pair of checkpoints",
            (x0 + side / 2, y0 + side / 2),
            text_style(AXIS_DESC_PX, REF_GREY).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(pe)?;
        return Ok(());
    }
    let edge = |i: usize| (i as f64 * side as f64 / n as f64).round() as i32;
    for i in 0..n {
        for j in 0..n {
            let v = m.v[i * n + j];
            let c = if v.is_finite() { viridis(v) } else { MISSING };
            // row i = t (top to bottom), column j = t'.
            let (a, b) = (
                (x0 + edge(j), y0 + edge(i)),
                (x0 + edge(j + 1), y0 + edge(i + 1)),
            );
            area.draw(&Rectangle::new([a, b], c.filled())).map_err(pe)?;
            if m.untrusted[i * n + j] && v.is_finite() {
                // Untrusted: a white diagonal across the cell.
                area.draw(&PathElement::new(
                    vec![(a.0, b.1), (b.0, a.1)],
                    WHITE.stroke_width(3),
                ))
                .map_err(pe)?;
            }
        }
    }
    area.draw(&Rectangle::new(
        [(x0, y0), (x0 + side, y0 + side)],
        INK.stroke_width(2),
    ))
    .map_err(pe)?;
    let centre = |i: usize| (edge(i) + edge(i + 1)) / 2;
    // About one labelled tick per 110 px: step labels are up to 5 digits.
    let n_ticks = (side / 110).clamp(2, 6) as usize;
    for i in index_ticks(n, n_ticks) {
        let label = m.steps[i].to_string();
        // x ticks
        let x = x0 + centre(i);
        area.draw(&PathElement::new(
            vec![(x, y0 + side), (x, y0 + side + 10)],
            INK.stroke_width(2),
        ))
        .map_err(pe)?;
        area.draw(&Text::new(
            label.clone(),
            (x, y0 + side + 16),
            text_style(TICK_PX, INK).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(pe)?;
        // y ticks
        let y = y0 + centre(i);
        area.draw(&PathElement::new(
            vec![(x0 - 10, y), (x0, y)],
            INK.stroke_width(2),
        ))
        .map_err(pe)?;
        area.draw(&Text::new(
            label,
            (x0 - 16, y),
            text_style(TICK_PX, INK).pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(pe)?;
    }
    axis_titles(
        area,
        ("checkpoint step t′", (x0 + side / 2, y0 + side + 70)),
        ("checkpoint step t", (x0 - 150, y0 + side / 2)),
    )
}

/// A vertical colour bar in `area` for transformed values [lo, hi], with
/// ticks at `ticks` (transformed) labelled by `label`.
fn draw_colorbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (top, bottom): (i32, i32),
    lo: f64,
    hi: f64,
    ticks: &[f64],
    label: &dyn Fn(f64) -> String,
    desc: &str,
) -> Result<(), String> {
    let (x0, bw) = (30i32, 56i32);
    let h = (bottom - top).max(2);
    let steps = 128;
    for s in 0..steps {
        let ya = bottom - (s * h) / steps;
        let yb = bottom - ((s + 1) * h) / steps;
        let f = (s as f64 + 0.5) / steps as f64;
        area.draw(&Rectangle::new(
            [(x0, yb), (x0 + bw, ya)],
            viridis(f).filled(),
        ))
        .map_err(pe)?;
    }
    area.draw(&Rectangle::new(
        [(x0, top), (x0 + bw, bottom)],
        INK.stroke_width(2),
    ))
    .map_err(pe)?;
    for &u in ticks {
        let f = (u - lo) / (hi - lo);
        if !(-1e-9..=1.0 + 1e-9).contains(&f) {
            continue;
        }
        let y = bottom - (f * h as f64).round() as i32;
        area.draw(&PathElement::new(
            vec![(x0 + bw, y), (x0 + bw + 10, y)],
            INK.stroke_width(2),
        ))
        .map_err(pe)?;
        area.draw(&Text::new(
            label(u),
            (x0 + bw + 16, y),
            text_style(TICK_PX, INK).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(pe)?;
    }
    if !desc.is_empty() {
        area.draw(&Text::new(
            desc.to_string(),
            (x0 + bw / 2, top - 24),
            text_style(TICK_PX, INK).pos(Pos::new(HPos::Center, VPos::Bottom)),
        ))
        .map_err(pe)?;
    }
    Ok(())
}

/// Height of a row of fig 5: one setting with large maps, or two side by
/// side with smaller ones.
const HEAT_ROW_H: u32 = 1120;
const HEAT_ROW_H_PAIR: u32 = 640;
/// The band above each setting's pair of maps that holds its label.
const HEAT_LABEL_H: u32 = 56;
const HEAT_BAR_W: u32 = 260;

impl Figure for Heatmaps {
    fn height(&self) -> u32 {
        let rows = self.rows.len().div_ceil(self.per_row()).max(1) as u32;
        let row_h = if self.per_row() == 1 {
            HEAT_ROW_H
        } else {
            HEAT_ROW_H_PAIR
        };
        130 + row_h * rows
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let untrusted = self
            .rows
            .iter()
            .any(|r| r.v1.any_untrusted() || r.q.any_untrusted());
        let mut title =
            "Two-time overlaps of the Hessian eigenvectors (grey: not computed".to_string();
        if untrusted {
            title.push_str("; slashed: untrusted pair");
        }
        title.push(')');
        let (head_h, title_y) = (130, 50);
        let body = headed(root, &title, head_h, title_y)?;
        if let Some(note) = &self.seeds {
            root.draw(&Text::new(
                note.clone(),
                (WIDTH as i32 / 2, 104),
                text_style(LEGEND_PX - 4.0, REF_GREY).pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(pe)?;
        }
        let per_row = self.per_row();
        let n_rows = self.rows.len().div_ceil(per_row).max(1);
        let rows = body.split_evenly((n_rows, 1));
        for (i, area) in rows.iter().enumerate() {
            let (main, bar) = area.split_horizontally(WIDTH - HEAT_BAR_W);
            let slots = main.split_evenly((1, per_row));
            let mut side = 0;
            for (slot, r) in slots.iter().zip(self.rows.iter().skip(i * per_row)) {
                let (label, maps) = slot.split_vertically(HEAT_LABEL_H);
                let (w, _) = label.dim_in_pixel();
                let (text, px) = fitted_title(&label, &r.title, TITLE_PX, w as i32 - 40)?;
                label
                    .draw(&Text::new(
                        text,
                        (w as i32 / 2, HEAT_LABEL_H as i32 / 2 + 6),
                        text_style(px, INK).pos(Pos::new(HPos::Center, VPos::Center)),
                    ))
                    .map_err(pe)?;
                let cells = maps.split_evenly((1, 2));
                draw_heatmap(&cells[0], "|⟨v₁(t), v₁(t′)⟩|", &r.v1)?;
                draw_heatmap(&cells[1], "q(t, t′)", &r.q)?;
                let (cw, ch) = cells[0].dim_in_pixel();
                side = heat_side(cw as i32, ch as i32);
            }
            // One colour bar per row, beside the maps' squares.
            let top = HEAT_LABEL_H as i32 + HEAT_MARGIN.1;
            let ticks: Vec<f64> = (0..=5).map(|i| f64::from(i) * 0.2).collect();
            draw_colorbar(
                &bar,
                (top, top + side),
                0.0,
                1.0,
                &ticks,
                &|u| format!("{u:.1}"),
                "",
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- fig 6

struct IprCurve {
    color: RGBColor,
    several: bool,
    step: Vec<f64>,
    mean: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// Per point: every seed's pair trusted.
    trusted: Vec<bool>,
    /// Per point: the mean over seeds of ln(train loss) at the step.
    ln_loss: Vec<f64>,
    /// Per point: the layer-mass-matched null E[P·IPR] of the same vector
    /// (docs/science.md §8), mean over seeds; NaN where a seed lacks it.
    layer_null: Vec<f64>,
}

impl IprCurve {
    /// The points at the seeds' geometric-mean train loss instead of the
    /// step (points without a loss dropped).
    fn against_loss(&self, floor: Option<f64>) -> IprCurve {
        let keep = kept_at_loss(&self.ln_loss, self.step.len(), floor);
        let pick = |v: &[f64]| keep.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        IprCurve {
            color: self.color,
            several: self.several,
            step: keep.iter().map(|&i| self.ln_loss[i].exp()).collect(),
            mean: pick(&self.mean),
            lo: pick(&self.lo),
            hi: pick(&self.hi),
            trusted: keep.iter().map(|&i| self.trusted[i]).collect(),
            ln_loss: pick(&self.ln_loss),
            layer_null: pick(&self.layer_null),
        }
    }
}

/// E[P·IPR] of the layer-mass-matched null per (rank, step) of one run:
/// a random direction with the vector's mass per parameter block, spread
/// uniformly within each (`findings::layer_matched_p_ipr`).
fn layer_null_of(
    input: &ReportInput,
    run: usize,
    n_ranks: i64,
) -> Result<BTreeMap<(i64, i64), f64>, ReportError> {
    let mut out = BTreeMap::new();
    let r = &input.runs[run];
    if !(r.files.contains_key("metrics/layer_mass.arrow")
        && r.files.contains_key("param_map.arrow"))
    {
        return Ok(out);
    }
    let pm_path = r.file("param_map.arrow")?.to_path_buf();
    let pm = Table::open(&pm_path)?;
    let sel = [
        pm.col("layer", Kind::Int)?.alias("layer"),
        pm.col("kind", Kind::Str)?.alias("kind"),
        pm.col("numel", Kind::Int)?.alias("numel"),
    ];
    let pmd = pm.query(|lf| lf.select(sel))?;
    let (pl, pk, pn) = (
        i64s(&pmd, "layer", &pm_path)?,
        crate::data::strs(&pmd, "kind", &pm_path)?,
        f64s(&pmd, "numel", &pm_path)?,
    );
    let numel: BTreeMap<(i64, String), f64> = (0..pl.len())
        .map(|i| ((pl[i], pk[i].clone()), pn[i]))
        .collect();
    let cols = [
        ("step", Kind::Int),
        ("rank", Kind::Int),
        ("layer", Kind::Int),
        ("block", Kind::Str),
        ("mass", Kind::Float),
    ];
    let (df, path) = hessian_rows(input, run, "metrics/layer_mass.arrow", &cols, |t| {
        Ok(t.col("block", Kind::Str)?
            .neq(lit("all"))
            .and(t.col("rank", Kind::Int)?.lt(lit(n_ranks)))
            .and(t.col("rank", Kind::Int)?.gt_eq(lit(0i64))))
    })?;
    let (st, rk, la, bl, ma) = (
        i64s(&df, "step", &path)?,
        i64s(&df, "rank", &path)?,
        i64s(&df, "layer", &path)?,
        crate::data::strs(&df, "block", &path)?,
        f64s(&df, "mass", &path)?,
    );
    let mut blocks: BTreeMap<(i64, i64), Vec<(f64, f64)>> = BTreeMap::new();
    for i in 0..st.len() {
        if let Some(&n) = numel.get(&(la[i], bl[i].clone())) {
            blocks.entry((rk[i], st[i])).or_default().push((ma[i], n));
        }
    }
    for (k, b) in blocks {
        let v = crate::findings::layer_matched_p_ipr(&b);
        if v.is_finite() {
            out.insert(k, v);
        }
    }
    Ok(out)
}

struct IprPanel {
    rank: i64,
    curves: Vec<IprCurve>,
    /// null model: (min, mean, max)
    null: Option<(f64, f64, f64)>,
}

struct Ipr {
    panels: Vec<IprPanel>,
    legend: Vec<Entry>,
    along: XAxis,
}

impl Ipr {
    fn load(input: &ReportInput, groups: &[Group]) -> Result<Ipr, ReportError> {
        // Every run's Hessian P·IPR, tagged with its group, then one lazy
        // group_by over (group, rank, step).
        let mut frames: Vec<LazyFrame> = Vec::new();
        let mut max_rank = -1i64;
        // Per group: (rank, step) → every seed's layer-matched null.
        let mut layer_nulls: Vec<BTreeMap<(i64, i64), Vec<f64>>> = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            for &run in &g.runs {
                let cols = [
                    ("step", Kind::Int),
                    ("rank", Kind::Int),
                    ("p_ipr", Kind::Float),
                ];
                let (df, path) =
                    hessian_rows(input, run, "metrics/localization.arrow", &cols, |_| {
                        Ok(lit(true))
                    })?;
                let ranks = i64s(&df, "rank", &path)?;
                max_rank = max_rank.max(ranks.iter().copied().max().unwrap_or(-1));
                let clock = LossClock::load(input.runs[run].file("train.arrow")?)?;
                let df = clock.tag(df, "step", &path)?;
                frames.push(df.lazy().with_column(lit(gi as i64).alias("group")));
            }
        }
        let n_ranks = (max_rank + 1).clamp(0, 4);
        for g in groups {
            let mut m: BTreeMap<(i64, i64), Vec<f64>> = BTreeMap::new();
            for &run in &g.runs {
                for (k, v) in layer_null_of(input, run, n_ranks)? {
                    m.entry(k).or_default().push(v);
                }
            }
            // A cell is drawn only where every seed has it.
            let seeds = g.runs.len();
            m.retain(|_, v| v.len() == seeds);
            layer_nulls.push(m);
        }
        let agg_file = PathBuf::from("<metrics/localization.arrow of all runs>");
        let agg = if frames.is_empty() {
            None
        } else {
            Some(
                concat(frames, UnionArgs::default())
                    .and_then(|lf| {
                        lf.filter(
                            col("p_ipr")
                                .is_finite()
                                .and(col("p_ipr").gt(lit(0.0)))
                                .and(col("rank").lt(lit(n_ranks))),
                        )
                        .group_by([col("group"), col("rank"), col("step")])
                        .agg([
                            col("p_ipr").mean().alias("mean"),
                            col("p_ipr").min().alias("lo"),
                            col("p_ipr").max().alias("hi"),
                            col("trusted").all(true).alias("trusted"),
                            col("ln_loss").mean().alias("ln_loss"),
                        ])
                        .sort(["group", "rank", "step"], SortMultipleOptions::default())
                        .collect()
                    })
                    .map_err(|e| data_err(&agg_file, e))?,
            )
        };
        // The architecture null, from the first run that has it: the 5–95%
        // quantiles of its replicas' P·IPR (null_localization.arrow), or,
        // for a store without that file, null_band.arrow's min–max.
        let mut null: Vec<(i64, f64, f64, f64)> = Vec::new();
        let mut null_label = "null model (min–max)".to_string();
        if let Some(run) = input
            .runs
            .iter()
            .find(|r| r.files.contains_key("metrics/null_localization.arrow"))
        {
            let path = run.file("metrics/null_localization.arrow")?.to_path_buf();
            let t = Table::open(&path)?;
            let sel = vec![
                t.col("rank", Kind::Int)?.alias("rank"),
                t.col("p_ipr", Kind::Float)?.alias("p_ipr"),
            ];
            let keep = is_hessian(&t)?;
            let df = t.query(|lf| lf.filter(keep).select(sel))?;
            let (r, v) = (i64s(&df, "rank", &path)?, f64s(&df, "p_ipr", &path)?);
            let mut by_rank: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for i in 0..r.len() {
                by_rank.entry(r[i]).or_default().push(v[i]);
            }
            let replicas = by_rank.values().map(Vec::len).max().unwrap_or(0);
            for (rank, vals) in by_rank {
                use crate::findings::quantile;
                null.push((
                    rank,
                    quantile(&vals, 0.05),
                    quantile(&vals, 0.5),
                    quantile(&vals, 0.95),
                ));
            }
            null_label = format!("architecture null (5–95%, {replicas} replicas)");
        } else if let Some(run) = input
            .runs
            .iter()
            .find(|r| r.files.contains_key("metrics/null_band.arrow"))
        {
            let path = run.file("metrics/null_band.arrow")?.to_path_buf();
            let t = Table::open(&path)?;
            let sel = vec![
                t.col("rank", Kind::Int)?.alias("rank"),
                t.col("p_ipr_min", Kind::Float)?.alias("lo"),
                t.col("p_ipr_mean", Kind::Float)?.alias("mean"),
                t.col("p_ipr_max", Kind::Float)?.alias("hi"),
            ];
            let df = t.query(|lf| lf.select(sel))?;
            let (r, lo, mean, hi) = (
                i64s(&df, "rank", &path)?,
                f64s(&df, "lo", &path)?,
                f64s(&df, "mean", &path)?,
                f64s(&df, "hi", &path)?,
            );
            for i in 0..r.len() {
                null.push((r[i], lo[i], mean[i], hi[i]));
            }
        }
        let mut panels: Vec<IprPanel> = (0..n_ranks.max(1))
            .map(|rank| IprPanel {
                rank,
                curves: Vec::new(),
                null: null.iter().find(|n| n.0 == rank).map(|n| (n.1, n.2, n.3)),
            })
            .collect();
        if let Some(df) = agg {
            let (gcol, rcol, scol) = (
                i64s(&df, "group", &agg_file)?,
                i64s(&df, "rank", &agg_file)?,
                f64s(&df, "step", &agg_file)?,
            );
            let (mean, lo, hi) = (
                f64s(&df, "mean", &agg_file)?,
                f64s(&df, "lo", &agg_file)?,
                f64s(&df, "hi", &agg_file)?,
            );
            let ok = bools(&df, "trusted", &agg_file)?;
            let ln_loss = f64s(&df, "ln_loss", &agg_file)?;
            for p in &mut panels {
                for (gi, g) in groups.iter().enumerate() {
                    let idx: Vec<usize> = (0..gcol.len())
                        .filter(|&i| gcol[i] == gi as i64 && rcol[i] == p.rank)
                        .collect();
                    p.curves.push(IprCurve {
                        color: g.color,
                        several: g.runs.len() > 1,
                        step: idx.iter().map(|&i| scol[i]).collect(),
                        mean: idx.iter().map(|&i| mean[i]).collect(),
                        lo: idx.iter().map(|&i| lo[i]).collect(),
                        hi: idx.iter().map(|&i| hi[i]).collect(),
                        trusted: idx.iter().map(|&i| ok[i]).collect(),
                        ln_loss: idx.iter().map(|&i| ln_loss[i]).collect(),
                        layer_null: idx
                            .iter()
                            .map(|&i| {
                                layer_nulls[gi]
                                    .get(&(p.rank, scol[i] as i64))
                                    .map_or(f64::NAN, |v| v.iter().sum::<f64>() / v.len() as f64)
                            })
                            .collect(),
                    });
                }
            }
        }
        let mut legend: Vec<Entry> = groups
            .iter()
            .map(|g| Entry {
                color: g.color,
                sample: Sample::Line,
                text: g.label.clone(),
            })
            .collect();
        if !null.is_empty() {
            legend.push(Entry {
                color: mix(NULL_GREY, 255.0, 0.65),
                sample: Sample::Swatch,
                text: null_label,
            });
        }
        if panels
            .iter()
            .flat_map(|p| &p.curves)
            .any(|c| c.layer_null.iter().any(|v| v.is_finite()))
        {
            legend.push(Entry {
                color: REF_GREY,
                sample: Sample::Dotted,
                text: "layer-mass-matched null (dotted, each setting's colour)".into(),
            });
        }
        legend.push(Entry {
            color: REF_GREY,
            sample: Sample::Dashed,
            text: "random vector (3)".into(),
        });
        if groups.iter().any(|g| g.runs.len() > 1) {
            legend.push(Entry {
                color: REF_GREY,
                sample: Sample::Note,
                text: "line: mean over seeds · band: min–max".into(),
            });
        }
        legend.extend(untrusted_entry(trust_flags(
            panels
                .iter()
                .flat_map(|p| &p.curves)
                .flat_map(|c| &c.trusted),
        )));
        Ok(Ipr {
            panels,
            legend,
            along: XAxis::Step,
        })
    }

    /// The loss-axis variant: every curve at the train loss of its steps.
    fn against_loss(&self, several_seeds: bool) -> Ipr {
        let floor = loss_floor(
            self.panels
                .iter()
                .flat_map(|p| &p.curves)
                .flat_map(|c| c.ln_loss.iter().map(|l| l.exp())),
        );
        let mut legend = self.legend.clone();
        legend.push(Entry {
            color: REF_GREY,
            sample: Sample::Note,
            text: loss_note(several_seeds),
        });
        legend.extend(floor.map(|f| Entry {
            color: REF_GREY,
            sample: Sample::Note,
            text: loss_cut_note(f),
        }));
        Ipr {
            panels: self
                .panels
                .iter()
                .map(|p| IprPanel {
                    rank: p.rank,
                    curves: p.curves.iter().map(|c| c.against_loss(floor)).collect(),
                    null: p.null,
                })
                .collect(),
            legend,
            along: XAxis::Loss,
        }
    }
}

impl Figure for Ipr {
    fn height(&self) -> u32 {
        let rows = if self.panels.len() > 2 { 2 } else { 1 };
        legend_height(legend_rows(&self.legend, LEGEND_PX)) + 80 + 820 * rows
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let rest = headed(
            root,
            "Localization of the top Hessian eigenvectors against the null model",
            80,
            46,
        )?;
        let (legend, body) =
            rest.split_vertically(legend_height(legend_rows(&self.legend, LEGEND_PX)));
        draw_legend(&legend, &self.legend, LEGEND_PX)?;
        let steps = self
            .panels
            .iter()
            .flat_map(|p| p.curves.iter().flat_map(|c| c.step.iter().copied()));
        let (x, x_desc) = match self.along {
            XAxis::Step => {
                let (s0, s1) = finite_range(steps, false).unwrap_or((0.0, 1000.0));
                (
                    Axis::fit(Scale::LogPlusOne, s0.max(0.0), s1.max(0.0), 0.02),
                    "step + 1",
                )
            }
            XAxis::Loss => {
                let (l0, l1) = finite_range(steps, true).unwrap_or((1e-3, 1.0));
                (Axis::fit(Scale::Log, l0, l1, 0.02).reversed(), LOSS_X_DESC)
            }
        };
        let mut yv: Vec<f64> = vec![3.0];
        for p in &self.panels {
            for c in &p.curves {
                yv.extend(c.lo.iter().chain(&c.hi).chain(&c.mean).chain(&c.layer_null));
            }
            if let Some((a, _, b)) = p.null {
                yv.extend([a, b]);
            }
        }
        let (y0, y1) = finite_range(yv, true).unwrap_or((1.0, 100.0));
        let y = Axis::fit(Scale::Log, y0, y1, 0.04);
        let grid = if self.panels.len() > 2 {
            (2, 2)
        } else {
            (1, self.panels.len().max(1))
        };
        let cells = body.split_evenly(grid);
        let sub = ["₁", "₂", "₃", "₄"];
        for (cell, p) in cells.iter().zip(&self.panels) {
            let v = format!("v{}", sub.get(p.rank as usize).copied().unwrap_or("?"));
            let title = format!("rank {}: {v}", p.rank);
            let mut chart = line_chart(cell, &title, &x, &y, x_desc, &format!("P·IPR({v})"))?;
            if let Some((a, _, b)) = p.null {
                if let (Some(ya), Some(yb)) = (y.t(a), y.t(b)) {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x.lo, ya), (x.hi, yb)],
                            NULL_GREY.mix(0.35).filled(),
                        )))
                        .map_err(pe)?;
                }
            }
            if let Some(y3) = y.t(3.0) {
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(x.lo, y3), (x.hi, y3)],
                        24,
                        12,
                        REF_GREY.stroke_width(4),
                    ))
                    .map_err(pe)?;
            }
            let pts = |xs: &[f64], ys: &[f64]| -> Vec<(f64, f64)> {
                xs.iter()
                    .zip(ys)
                    .filter_map(|(&a, &b)| Some((x.t(a)?, y.t(b)?)))
                    .collect()
            };
            for c in p.curves.iter().filter(|c| c.several) {
                if let Some(poly) = band_outline(pts(&c.step, &c.hi), pts(&c.step, &c.lo)) {
                    chart
                        .draw_series(std::iter::once(Polygon::new(
                            poly,
                            c.color.mix(BAND_ALPHA).filled(),
                        )))
                        .map_err(pe)?;
                }
            }
            // The layer-mass-matched nulls, dotted, under the curves.
            for c in &p.curves {
                let line: Vec<(f64, f64)> = pts(&c.step, &c.layer_null);
                if line.len() >= 2 {
                    chart
                        .draw_series(DashedLineSeries::new(line, 6, 10, c.color.stroke_width(4)))
                        .map_err(pe)?;
                }
            }
            for c in &p.curves {
                let marked: Vec<((f64, f64), bool)> = c
                    .step
                    .iter()
                    .zip(&c.mean)
                    .zip(&c.trusted)
                    .filter_map(|((&a, &b), &ok)| Some(((x.t(a)?, y.t(b)?), ok)))
                    .collect();
                let line: Vec<(f64, f64)> = marked.iter().map(|m| m.0).collect();
                chart
                    .draw_series(LineSeries::new(line.clone(), c.color.stroke_width(LINE_W)))
                    .map_err(pe)?;
                if line.len() <= 60 {
                    chart
                        .draw_series(
                            marked
                                .iter()
                                .filter(|m| m.1)
                                .map(|&(q, _)| Circle::new(q, 6, c.color.filled())),
                        )
                        .map_err(pe)?;
                }
                chart
                    .draw_series(
                        marked
                            .iter()
                            .filter(|m| !m.1)
                            .flat_map(|&(q, _)| hollow_marker(q, MARKER_R, c.color)),
                    )
                    .map_err(pe)?;
            }
            if p.curves.iter().all(|c| c.step.is_empty()) {
                no_data(&mut chart, &x, &y, "no data")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- fig 7

struct MassPanel {
    title: String,
    steps: Vec<f64>,
    /// per layer, per step (aligned with `steps`)
    mass: Vec<Vec<f64>>,
    /// per step: every layer's row trusted.
    trusted: Vec<bool>,
}

struct LayerMass {
    panels: Vec<MassPanel>,
    legend: Vec<Entry>,
}

fn layer_color(i: usize, n: usize) -> RGBColor {
    let f = if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        0.5
    };
    viridis(0.05 + 0.8 * f)
}

impl LayerMass {
    fn load(input: &ReportInput, groups: &[Group]) -> Result<LayerMass, ReportError> {
        let mut panels = Vec::new();
        let mut n_layers = 0usize;
        for g in groups {
            // step → (per layer: the sum over seeds of its share, seeds, trusted)
            let mut acc: BTreeMap<i64, (Vec<f64>, usize, bool)> = BTreeMap::new();
            for &run in &g.runs {
                let cols = [
                    ("step", Kind::Int),
                    ("layer", Kind::Int),
                    ("mass", Kind::Float),
                ];
                let (df, path) =
                    hessian_rows(input, run, "metrics/layer_mass.arrow", &cols, |t| {
                        Ok(t.col("rank", Kind::Int)?
                            .eq(lit(0i64))
                            .and(t.col("block", Kind::Str)?.eq(lit("all"))))
                    })?;
                // One row per (step, layer), normalized per step so the stack is 1.
                let per_step = col("mass")
                    .sum()
                    .over([col("step")])
                    .map_err(|e| data_err(&path, e))?;
                let df = df
                    .lazy()
                    .group_by([col("step"), col("layer")])
                    .agg([col("mass").sum(), col("trusted").all(true)])
                    .with_column((col("mass") / per_step).alias("mass"))
                    .sort(["step", "layer"], SortMultipleOptions::default())
                    .collect()
                    .map_err(|e| data_err(&path, e))?;
                let (st, la, ma) = (
                    i64s(&df, "step", &path)?,
                    i64s(&df, "layer", &path)?,
                    f64s(&df, "mass", &path)?,
                );
                let ok = bools(&df, "trusted", &path)?;
                if la.iter().any(|&l| !(0..1000).contains(&l)) {
                    return Err(data_err(&path, "layer index out of range"));
                }
                let layers = la.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
                n_layers = n_layers.max(layers);
                let mut seen: Vec<i64> = Vec::new();
                for i in 0..st.len() {
                    let e = acc.entry(st[i]).or_insert((Vec::new(), 0, true));
                    if e.0.len() <= la[i] as usize {
                        e.0.resize(la[i] as usize + 1, 0.0);
                    }
                    e.0[la[i] as usize] += if ma[i].is_finite() { ma[i] } else { 0.0 };
                    e.2 &= ok[i];
                    if seen.last() != Some(&st[i]) {
                        seen.push(st[i]);
                        e.1 += 1;
                    }
                }
            }
            let steps: Vec<i64> = acc.keys().copied().collect();
            let mut mass = vec![vec![0.0; steps.len()]; n_layers];
            let mut trusted = vec![true; steps.len()];
            for (j, (sums, seeds, ok)) in acc.values().enumerate() {
                for (l, v) in sums.iter().enumerate() {
                    if l < n_layers {
                        mass[l][j] = v / (*seeds).max(1) as f64;
                    }
                }
                trusted[j] = *ok;
            }
            panels.push(MassPanel {
                title: g.label.clone(),
                steps: steps.iter().map(|&s| s as f64).collect(),
                mass,
                trusted,
            });
        }
        let mut legend: Vec<Entry> = (0..n_layers)
            .map(|i| Entry {
                color: layer_color(i, n_layers),
                sample: Sample::Swatch,
                text: if i == 0 {
                    "layer 0 (input)".to_string()
                } else if i + 1 == n_layers {
                    format!("layer {i} (output)")
                } else {
                    format!("layer {i}")
                },
            })
            .collect();
        if let Some(n) = seed_count(groups.iter().map(|g| g.runs.len())) {
            legend.push(Entry {
                color: REF_GREY,
                sample: Sample::Note,
                text: format!("shares: mean over {n} seeds"),
            });
        }
        legend.extend(untrusted_entry(trust_flags(
            panels.iter().flat_map(|p| &p.trusted),
        )));
        Ok(LayerMass { panels, legend })
    }
}

impl Figure for LayerMass {
    fn height(&self) -> u32 {
        let (rows, _) = grid(self.panels.len());
        80 + legend_height(legend_rows(&self.legend, LEGEND_PX)) + rows as u32 * GRID_ROW_H
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let rest = headed(
            root,
            "Mass of the top Hessian eigenvector v₁ per layer",
            80,
            46,
        )?;
        let (legend, body) =
            rest.split_vertically(legend_height(legend_rows(&self.legend, LEGEND_PX)));
        draw_legend(&legend, &self.legend, LEGEND_PX)?;
        let steps = self.panels.iter().flat_map(|p| p.steps.iter().copied());
        let (s0, s1) = finite_range(steps, false).unwrap_or((0.0, 1000.0));
        let x = Axis::fit(Scale::LogPlusOne, s0.max(0.0), s1.max(0.0), 0.0);
        // 1.02 on top (as every unit axis): the "1.0" label stays clear of
        // the panel's title.
        let y = unit_axis();
        let (rows, cols) = grid(self.panels.len());
        let cells = body.split_evenly((rows, cols));
        let n = self
            .legend
            .iter()
            .filter(|e| e.sample == Sample::Swatch)
            .count();
        for (i, (cell, p)) in cells.iter().zip(&self.panels).enumerate() {
            // The y axis is shared along a row: its title in the first column.
            let y_desc = if i % cols == 0 {
                "fraction of ‖v₁‖²"
            } else {
                ""
            };
            let mut chart = line_chart(cell, &p.title, &x, &y, "step + 1", y_desc)?;
            if p.steps.is_empty() {
                no_data(&mut chart, &x, &y, "no data")?;
                continue;
            }
            let xs: Vec<f64> = p.steps.iter().filter_map(|&s| x.t(s)).collect();
            if xs.len() != p.steps.len() {
                continue;
            }
            let mut below = vec![0.0; xs.len()];
            for (l, m) in p.mass.iter().enumerate() {
                let above: Vec<f64> = below.iter().zip(m).map(|(b, v)| b + v).collect();
                let mut poly: Vec<(f64, f64)> = xs
                    .iter()
                    .zip(&above)
                    .map(|(&a, &b)| (a, b.min(1.0)))
                    .collect();
                poly.extend(xs.iter().zip(&below).rev().map(|(&a, &b)| (a, b.min(1.0))));
                let c = layer_color(l, n);
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, c.filled())))
                    .map_err(pe)?;
                chart
                    .draw_series(LineSeries::new(
                        xs.iter().zip(&above).map(|(&a, &b)| (a, b.min(1.0))),
                        WHITE.stroke_width(2),
                    ))
                    .map_err(pe)?;
                below = above;
            }
            // Untrusted steps: a pale veil over their span and a hollow
            // marker on the top edge.
            let mid = |a: f64, b: f64| (a + b) / 2.0;
            for (j, _) in p.trusted.iter().enumerate().filter(|(_, t)| !**t) {
                let a = if j > 0 { mid(xs[j - 1], xs[j]) } else { xs[j] };
                let b = if j + 1 < xs.len() {
                    mid(xs[j], xs[j + 1])
                } else {
                    xs[j]
                };
                if b > a {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(a, 0.0), (b, 1.0)],
                            WHITE.mix(0.55).filled(),
                        )))
                        .map_err(pe)?;
                }
                chart
                    .draw_series(hollow_marker((xs[j], 0.97), MARKER_R + 2, INK))
                    .map_err(pe)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- fig 8

struct LocPanel {
    title: String,
    rows: usize,
    cols: usize,
    /// row-major [out, in] mass fractions
    mass: Vec<f64>,
}

struct LocMap {
    panels: Vec<LocPanel>,
    /// Which vector each panel shows (step, seed), in words, under the title.
    note: String,
    /// log10 colour range
    lo: f64,
    hi: f64,
}

/// Height of one row of fig 8's grid.
const LOC_ROW_H: u32 = 720;

impl LocMap {
    fn load(input: &ReportInput, groups: &[Group]) -> Result<LocMap, ReportError> {
        let mut panels = Vec::new();
        let mut lasts: Vec<i64> = Vec::new();
        for g in groups {
            let run = g.runs[0];
            // param_map: the first layer's weight block.
            let pm_path = input.runs[run].file("param_map.arrow")?.to_path_buf();
            let pm = Table::open(&pm_path)?;
            let sel = vec![
                pm.col("offset", Kind::Int)?.alias("offset"),
                pm.col("numel", Kind::Int)?.alias("numel"),
                col("shape"),
            ];
            if !pm.has("shape") {
                let _ = pm.col("shape", Kind::Int)?;
            }
            let name = pm.col("name", Kind::Str)?;
            let block = pm.query(|lf| lf.filter(name.eq(lit("layers.0.weight"))).select(sel))?;
            if block.height() != 1 {
                return Err(data_err(&pm_path, "no single `layers.0.weight` row"));
            }
            let offset = i64s(&block, "offset", &pm_path)?[0];
            let numel = i64s(&block, "numel", &pm_path)?[0];
            let shape = block
                .column("shape")
                .and_then(|c| c.list().cloned())
                .ok()
                .and_then(|l| l.get_as_series(0))
                .and_then(|s| s.cast(&DataType::Int64).ok())
                .and_then(|s| {
                    s.i64()
                        .ok()
                        .map(|ca| ca.into_no_null_iter().collect::<Vec<_>>())
                })
                .ok_or_else(|| {
                    data_err(
                        &pm_path,
                        "`shape` of layers.0.weight is not a list of integers",
                    )
                })?;
            if shape.len() != 2 || shape[0] * shape[1] != numel || offset < 0 || numel <= 0 {
                return Err(data_err(
                    &pm_path,
                    format!("layers.0.weight: shape {shape:?} does not match numel {numel}"),
                ));
            }
            let (rows, cols) = (shape[0] as usize, shape[1] as usize);

            // The top Hessian eigenvector at the last step.
            let vpath = input.runs[run].file("eigen/vectors.arrow")?.to_path_buf();
            let vt = Table::open(&vpath)?;
            if !vt.has("vector") {
                let _ = vt.col("vector", Kind::Float)?;
            }
            let step = vt.col("step", Kind::Int)?;
            let rank = vt.col("rank", Kind::Int)?;
            let keep = is_hessian(&vt)?.and(rank.eq(lit(0i64)));
            let df = vt.query(|lf| {
                lf.filter(keep)
                    .with_column(step.alias("step"))
                    .filter(col("step").eq(col("step").max()))
                    .select([col("step"), col("vector")])
            })?;
            let last = i64s(&df, "step", &vpath)?.first().copied();
            let vec: Option<Vec<f64>> = df
                .column("vector")
                .ok()
                .and_then(|c| c.list().ok().cloned())
                .and_then(|l| l.get_as_series(0))
                .and_then(|s| s.cast(&DataType::Float64).ok())
                .and_then(|s| {
                    s.f64()
                        .ok()
                        .map(|ca| ca.iter().map(|v| v.unwrap_or(0.0)).collect())
                });
            let mass = match (vec, last) {
                (Some(v), Some(_)) => {
                    let total: f64 = v.iter().map(|x| x * x).sum();
                    let end = (offset + numel) as usize;
                    if end > v.len() || !total.is_finite() || total <= 0.0 {
                        return Err(data_err(
                            &vpath,
                            format!("vector of length {} cannot hold layers.0.weight", v.len()),
                        ));
                    }
                    v[offset as usize..end]
                        .iter()
                        .map(|x| x * x / total)
                        .collect()
                }
                _ => vec![],
            };
            lasts.extend(last);
            // The pair's trust, from localization.arrow's row of it (a
            // missing row or column: trusted).
            let untrusted = match last {
                Some(s) => {
                    let cols = [("step", Kind::Int)];
                    let (df, lpath) =
                        hessian_rows(input, run, "metrics/localization.arrow", &cols, |t| {
                            Ok(t.col("rank", Kind::Int)?
                                .eq(lit(0i64))
                                .and(t.col("step", Kind::Int)?.eq(lit(s))))
                        })?;
                    bools(&df, "trusted", &lpath)?.iter().any(|t| !t)
                }
                None => false,
            };
            let at = if untrusted { " — untrusted pair" } else { "" };
            panels.push(LocPanel {
                title: format!("{}{at}", g.label),
                rows,
                cols,
                mass,
            });
        }
        let logs = panels
            .iter()
            .flat_map(|p| p.mass.iter().copied())
            .filter(|m| *m > 0.0)
            .map(f64::log10);
        let (mut lo, hi) = finite_range(logs, false).unwrap_or((-6.0, 0.0));
        lo = lo.max(hi - 6.0);
        if hi - lo < 1.0 {
            lo = hi - 1.0;
        }
        lasts.sort_unstable();
        lasts.dedup();
        let when = match lasts[..] {
            [s] => format!("at step {s} (the last checkpoint)"),
            _ => "at each run's last checkpoint".to_string(),
        };
        let which = if groups.iter().any(|g| g.runs.len() > 1) {
            "; one run per setting: its first seed"
        } else {
            ""
        };
        Ok(LocMap {
            panels,
            note: format!("v₁ {when}{which}"),
            lo: lo.floor(),
            hi: hi.ceil(),
        })
    }
}

impl Figure for LocMap {
    fn height(&self) -> u32 {
        let (rows, _) = grid(self.panels.len());
        150 + rows as u32 * LOC_ROW_H
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let rest = headed(
            root,
            "Mass (v²) of the top Hessian eigenvector v₁ over the first-layer weights",
            90,
            50,
        )?;
        let (note, body) = rest.split_vertically(60);
        note.draw(&Text::new(
            self.note.clone(),
            (WIDTH as i32 / 2, 24),
            text_style(LEGEND_PX, REF_GREY).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(pe)?;
        let (main, bar) = body.split_horizontally(WIDTH - 300);
        let (grid_rows, grid_cols) = grid(self.panels.len());
        let cells = main.split_evenly((grid_rows, grid_cols));
        let (top, bottom) = (80i32, LOC_ROW_H as i32 - 170);
        for (cell, p) in cells.iter().zip(&self.panels) {
            let (w, _) = cell.dim_in_pixel();
            let (left, right) = (150i32, 30i32);
            let (title, px) = fitted_title(cell, &p.title, TITLE_PX - 4.0, w as i32 - 40)?;
            cell.draw(&Text::new(
                title,
                ((w as i32) / 2, 36),
                text_style(px, INK).pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(pe)?;
            if p.mass.len() != p.rows * p.cols || p.mass.is_empty() {
                cell.draw(&Text::new(
                    "no data",
                    ((w as i32) / 2, (top + bottom) / 2),
                    text_style(AXIS_DESC_PX, REF_GREY).pos(Pos::new(HPos::Center, VPos::Center)),
                ))
                .map_err(pe)?;
                continue;
            }
            let avail_w = w as i32 - left - right;
            let avail_h = bottom - top;
            // Cells up to 2.5 times as wide as tall, to use the width.
            let cell_h = (avail_h as f64 / p.rows as f64)
                .min(avail_w as f64 / p.cols as f64)
                .max(1.0);
            let cell_w = (avail_w as f64 / p.cols as f64).min(2.5 * cell_h).max(1.0);
            let (gw, gh) = (cell_w * p.cols as f64, cell_h * p.rows as f64);
            let x0 = left as f64 + (avail_w as f64 - gw) / 2.0;
            let y0 = top as f64;
            for r in 0..p.rows {
                for c in 0..p.cols {
                    let m = p.mass[r * p.cols + c];
                    let f = if m > 0.0 {
                        (m.log10() - self.lo) / (self.hi - self.lo)
                    } else {
                        0.0
                    };
                    let a = (
                        (x0 + c as f64 * cell_w).round() as i32,
                        (y0 + r as f64 * cell_h).round() as i32,
                    );
                    let b = (
                        (x0 + (c + 1) as f64 * cell_w).round() as i32,
                        (y0 + (r + 1) as f64 * cell_h).round() as i32,
                    );
                    cell.draw(&Rectangle::new([a, b], viridis(f).filled()))
                        .map_err(pe)?;
                }
            }
            let (gx0, gy0) = (x0.round() as i32, y0.round() as i32);
            let (gx1, gy1) = ((x0 + gw).round() as i32, (y0 + gh).round() as i32);
            cell.draw(&Rectangle::new(
                [(gx0, gy0), (gx1, gy1)],
                INK.stroke_width(2),
            ))
            .map_err(pe)?;
            let tick = |n: usize| -> Vec<usize> {
                let stride = [
                    1usize, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 256,
                ]
                .into_iter()
                .find(|s| n.div_ceil(*s) <= 8)
                .unwrap_or(n.max(1));
                (0..n).step_by(stride).collect()
            };
            for c in tick(p.cols) {
                let x = (x0 + (c as f64 + 0.5) * cell_w).round() as i32;
                cell.draw(&PathElement::new(
                    vec![(x, gy1), (x, gy1 + 10)],
                    INK.stroke_width(2),
                ))
                .map_err(pe)?;
                cell.draw(&Text::new(
                    c.to_string(),
                    (x, gy1 + 16),
                    text_style(TICK_PX, INK).pos(Pos::new(HPos::Center, VPos::Top)),
                ))
                .map_err(pe)?;
            }
            for r in tick(p.rows) {
                let y = (y0 + (r as f64 + 0.5) * cell_h).round() as i32;
                cell.draw(&PathElement::new(
                    vec![(gx0 - 10, y), (gx0, y)],
                    INK.stroke_width(2),
                ))
                .map_err(pe)?;
                cell.draw(&Text::new(
                    r.to_string(),
                    (gx0 - 16, y),
                    text_style(TICK_PX, INK).pos(Pos::new(HPos::Right, VPos::Center)),
                ))
                .map_err(pe)?;
            }
            axis_titles(
                cell,
                ("input i", ((gx0 + gx1) / 2, gy1 + 70)),
                ("hidden unit j", (gx0 - 130, (gy0 + gy1) / 2)),
            )?;
        }
        let ticks: Vec<f64> = {
            let (a, b) = (self.lo.round() as i64, self.hi.round() as i64);
            let every = ((b - a) as usize).div_ceil(6).max(1);
            (a..=b).step_by(every).map(|d| d as f64).collect()
        };
        let label = |u: f64| {
            let ax = Axis::fixed(Scale::Log, -12.0, 1.0);
            ax.label(u)
        };
        draw_colorbar(
            &bar,
            (top, bottom),
            self.lo,
            self.hi,
            &ticks,
            &label,
            "mass v²",
        )?;
        Ok(())
    }
}

// ---------------------------------------------------------------- fig 10

/// One setting: per input column, its largest |z| over the train rows and
/// v₁'s mass on it (the seeds' mean) at the last checkpoint every seed has.
struct InputPanel {
    title: String,
    color: RGBColor,
    step: Option<i64>,
    /// (max |z|, mass) per column.
    points: Vec<(f64, f64)>,
    /// Every seed's row at that step trusted.
    trusted: bool,
    /// The input layer's mass spread evenly: its total over the columns.
    uniform: f64,
    /// Spearman's ρ between mass and max |z|, and the share of the mass on
    /// the 8 columns with the largest max |z|.
    rho: f64,
    top_share: f64,
}

struct InputMass {
    panels: Vec<InputPanel>,
    legend: Vec<Entry>,
}

impl InputMass {
    /// None when no run has both metrics/input_mass.arrow and data.arrow.
    fn load(input: &ReportInput, groups: &[Group]) -> Result<Option<InputMass>, ReportError> {
        let has = |r: &crate::RunInput| {
            r.files.contains_key("metrics/input_mass.arrow") && r.files.contains_key("data.arrow")
        };
        if !input.runs.iter().any(has) {
            return Ok(None);
        }
        // max |z| per dataset file (one per experiment, usually).
        let mut max_z: BTreeMap<PathBuf, Vec<f64>> = BTreeMap::new();
        let mut panels = Vec::new();
        for g in groups {
            // step → (column → every seed's mass, all trusted, seeds seen).
            type Cell = (BTreeMap<i64, Vec<f64>>, bool, usize);
            let mut cells: BTreeMap<i64, Cell> = BTreeMap::new();
            let mut z: Vec<f64> = Vec::new();
            let runs: Vec<usize> = g
                .runs
                .iter()
                .copied()
                .filter(|&i| has(&input.runs[i]))
                .collect();
            for &run in &runs {
                let data = input.runs[run].file("data.arrow")?.to_path_buf();
                if !max_z.contains_key(&data) {
                    let m = crate::data::max_abs_z(&data)?;
                    max_z.insert(data.clone(), m);
                }
                if z.is_empty() {
                    z = max_z[&data].clone();
                }
                let cols = [
                    ("step", Kind::Int),
                    ("column", Kind::Int),
                    ("mass", Kind::Float),
                ];
                let (df, path) =
                    hessian_rows(input, run, "metrics/input_mass.arrow", &cols, |t| {
                        Ok(t.col("rank", Kind::Int)?.eq(lit(0i64)))
                    })?;
                let (st, cl, ma) = (
                    i64s(&df, "step", &path)?,
                    i64s(&df, "column", &path)?,
                    f64s(&df, "mass", &path)?,
                );
                let ok = bools(&df, "trusted", &path)?;
                let mut seen: Vec<i64> = Vec::new();
                for i in 0..st.len() {
                    let e = cells.entry(st[i]).or_insert((BTreeMap::new(), true, 0));
                    e.0.entry(cl[i]).or_default().push(ma[i]);
                    e.1 &= ok[i];
                    if !seen.contains(&st[i]) {
                        seen.push(st[i]);
                        e.2 += 1;
                    }
                }
            }
            // The last step every seed has.
            let last = cells
                .iter()
                .rev()
                .find(|(_, c)| !runs.is_empty() && c.2 == runs.len());
            let (step, trusted, mass) = match last {
                Some((s, (cols, ok, _))) => {
                    let mass: Vec<f64> = (0..z.len() as i64)
                        .map(|j| {
                            cols.get(&j)
                                .map_or(0.0, |v| v.iter().sum::<f64>() / v.len() as f64)
                        })
                        .collect();
                    (Some(*s), *ok, mass)
                }
                None => (None, true, Vec::new()),
            };
            let total: f64 = mass.iter().sum();
            let mut idx: Vec<usize> = (0..z.len().min(mass.len())).collect();
            idx.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
            let top: f64 = idx
                .iter()
                .take(crate::findings::TOP_Z_COLUMNS)
                .map(|&j| mass[j])
                .sum();
            panels.push(InputPanel {
                title: g.label.clone(),
                color: g.color,
                step,
                points: z.iter().copied().zip(mass.iter().copied()).collect(),
                trusted,
                uniform: if mass.is_empty() {
                    f64::NAN
                } else {
                    total / mass.len() as f64
                },
                rho: crate::findings::spearman(&mass, &z),
                top_share: if total > 0.0 { top / total } else { f64::NAN },
            });
        }
        let constant = panels
            .iter()
            .map(|p| {
                p.points
                    .iter()
                    .filter(|q| q.0.is_nan() || q.0 <= 0.0)
                    .count()
            })
            .max()
            .unwrap_or(0);
        let mut legend = vec![
            Entry {
                color: REF_GREY,
                sample: Sample::Note,
                text: if constant > 0 {
                    format!(
                        "one point per input column, at the last checkpoint ({constant} constant on the train split, left out)"
                    )
                } else {
                    "one point per input column, at the last checkpoint".into()
                },
            },
            Entry {
                color: REF_GREY,
                sample: Sample::Dashed,
                text: "the input layer's mass spread evenly over the columns".into(),
            },
        ];
        if let Some(n) = seed_count(groups.iter().map(|g| g.runs.len())) {
            legend.push(Entry {
                color: REF_GREY,
                sample: Sample::Note,
                text: format!("mass: mean over {n} seeds"),
            });
        }
        legend.extend(untrusted_entry(trust_flags(
            panels
                .iter()
                .filter(|p| p.step.is_some())
                .map(|p| &p.trusted),
        )));
        Ok(Some(InputMass { panels, legend }))
    }

    fn legend_h(&self) -> u32 {
        legend_height(legend_rows(&self.legend, LEGEND_PX))
    }
}

impl Figure for InputMass {
    fn height(&self) -> u32 {
        let (rows, _) = grid(self.panels.len());
        80 + self.legend_h() + rows as u32 * (GRID_ROW_H + NOTE_H as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let rest = headed(
            root,
            "Mass of v₁ per input column against the column's largest |z|",
            80,
            46,
        )?;
        let (legend, body) = rest.split_vertically(self.legend_h());
        draw_legend(&legend, &self.legend, LEGEND_PX)?;
        // Shared log axes: a column with no mass or no spread is left out.
        let pos = |v: f64| v.is_finite() && v > 0.0;
        let zs = self
            .panels
            .iter()
            .flat_map(|p| p.points.iter().map(|q| q.0))
            .filter(|v| pos(*v));
        let (z0, z1) = finite_range(zs, true).unwrap_or((0.1, 10.0));
        let x = Axis::fit(Scale::Log, z0, z1, 0.03);
        // The y range from the points drawn (a column constant on the train
        // split has no |z| and is left out, with its vanishing mass).
        let ms = self
            .panels
            .iter()
            .flat_map(|p| {
                p.points
                    .iter()
                    .filter(|q| pos(q.0))
                    .map(|q| q.1)
                    .chain([p.uniform])
            })
            .filter(|v| pos(*v));
        let (m0, m1) = finite_range(ms, true).unwrap_or((1e-6, 1.0));
        let y = Axis::fit(Scale::Log, m0, m1, 0.04);
        let (rows, cols) = grid(self.panels.len());
        let x = if cols >= 3 { x.at_most(4) } else { x };
        let cells = body.split_evenly((rows, cols));
        for (i, (cell, p)) in cells.iter().zip(&self.panels).enumerate() {
            let note = match p.step {
                Some(s) => format!(
                    "step {s} · ρ = {} · top {} |z|: {}%",
                    fmt2(p.rho),
                    crate::findings::TOP_Z_COLUMNS,
                    fmt2(100.0 * p.top_share)
                ),
                None => "no step that every seed has".into(),
            };
            let plot = with_foot(cell, &note)?;
            let y_desc = if i % cols == 0 {
                "mass of v₁ on the column"
            } else {
                ""
            };
            let mut chart =
                line_chart(&plot, &p.title, &x, &y, "largest |z| of the column", y_desc)?;
            if p.points.is_empty() {
                no_data(&mut chart, &x, &y, "no data")?;
                continue;
            }
            if let Some(u) = y.t(p.uniform) {
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(x.lo, u), (x.hi, u)],
                        24,
                        12,
                        REF_GREY.stroke_width(4),
                    ))
                    .map_err(pe)?;
            }
            let pts: Vec<(f64, f64)> = p
                .points
                .iter()
                .filter(|q| pos(q.0) && pos(q.1))
                .filter_map(|&(a, b)| Some((x.t(a)?, y.t(b)?)))
                .collect();
            if p.trusted {
                chart
                    .draw_series(
                        pts.iter()
                            .map(|&q| Circle::new(q, 9, p.color.mix(0.8).filled())),
                    )
                    .map_err(pe)?;
            } else {
                chart
                    .draw_series(
                        pts.iter()
                            .flat_map(|&q| hollow_marker(q, MARKER_R, p.color)),
                    )
                    .map_err(pe)?;
            }
        }
        Ok(())
    }
}

/// Writes `note` in one line under `cell` and returns the area above it.
fn with_foot<DB: DrawingBackend>(
    cell: &DrawingArea<DB, Shift>,
    note: &str,
) -> Result<DrawingArea<DB, Shift>, String> {
    let (_, h) = cell.dim_in_pixel();
    let (plot, foot) = cell.split_vertically(h as i32 - NOTE_H);
    let (w, _) = foot.dim_in_pixel();
    let (text, px) = fitted_title(&foot, note, AXIS_DESC_PX, w as i32 - 60)?;
    foot.draw(&Text::new(
        text,
        (w as i32 / 2, 4),
        text_style(px, INK).pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(pe)?;
    Ok(plot)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fig 5's seed mean: cell by cell over the seeds that computed it,
    /// untrusted when any seed's cell is; no mean when checkpoints differ.
    #[test]
    fn heatmap_seed_mean_is_cellwise() {
        let steps = [0i64, 10, 20];
        let a = symmetric(&steps, &[0, 0], &[10, 20], &[0.8, 0.2], &[true, true]);
        let b = symmetric(&steps, &[0, 10], &[10, 20], &[0.4, 0.6], &[false, true]);
        let m = Matrix::mean(&[a, b]).expect("same checkpoints");
        let at = |i: usize, j: usize| m.v[i * 3 + j];
        assert!((at(0, 1) - 0.6).abs() < 1e-15 && (at(1, 0) - 0.6).abs() < 1e-15);
        assert!((at(0, 2) - 0.2).abs() < 1e-15, "only seed a has (0, 20)");
        assert!((at(1, 2) - 0.6).abs() < 1e-15, "only seed b has (10, 20)");
        assert_eq!(at(1, 1), 1.0);
        assert!(m.untrusted[1] && m.untrusted[3] && !m.untrusted[2]);
        let c = symmetric(&[0, 10], &[0], &[10], &[0.5], &[true]);
        let d = symmetric(&steps, &[0], &[10], &[0.5], &[true]);
        assert!(Matrix::mean(&[c, d]).is_none());
    }
}
