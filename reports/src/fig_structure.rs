//! Structure figures: aging of the top-k subspace (fig 4), two-time overlap
//! heatmaps (fig 5), localization against the null model (fig 6), the
//! per-layer mass of v₁ (fig 7), v₁'s mass over the first weight matrix
//! (fig 8) and per input column against the column's largest |z| (fig 10),
//! the spectral density through training (fig 11, with `[density]`), and
//! each layer's diagonal block's λ₁ (fig 12, with `hessian.layers`).
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
    XAxis, GRID_MAJOR, GRID_MINOR, INK, LOSS_X_DESC, MARKER_R, REF_GREY, WIDTH,
};
use crate::data::{
    bools, data_err, f64s, group_runs, i64s, kept_at_loss, Group, Kind, LossClock, RunSummary,
    Table,
};
use crate::error::ReportError;
use crate::font::FAMILY;
use crate::legend::{Entry, Layout, Sample};
use crate::palette::{band_outline, BAND_ALPHA};
use crate::ReportInput;

mod fig10_input_mass;
mod fig11_density;
mod fig12_layer_curvature;
mod fig4_aging;
mod fig5_heatmaps;
mod fig6_ipr;
mod fig7_layer_mass;
mod fig8_localization_map;

use fig10_input_mass::*;
use fig11_density::*;
use fig12_layer_curvature::*;
use fig4_aging::*;
use fig5_heatmaps::*;
use fig6_ipr::*;
use fig7_layer_mass::*;
use fig8_localization_map::*;

use crate::chart::{AXIS_DESC_PX, LEGEND_PX, LINE_W, TICK_PX, TITLE_PX};
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
    let several = groups.iter().any(Group::several);
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
    if let Some(fig) = Density::load(input, &groups)? {
        save(&fig, "fig11_density", out_dir, &mut names)?;
    }
    if let Some(fig) = LayerCurvature::load(input, &groups)? {
        save(&fig, "fig12_layer_curvature", out_dir, &mut names)?;
    }
    Ok(names)
}

// ---------------------------------------------------------------- common

/// The settings, a diverged seed apart from the others with its label
/// saying so (as in every figure).
fn groups(input: &ReportInput) -> Result<Vec<Group>, ReportError> {
    let summaries = input
        .runs
        .iter()
        .map(|r| {
            Ok(RunSummary {
                diverged: crate::data::diverged(r.file("train.arrow")?)?,
                lr: None,
            })
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    Ok(group_runs(input, &summaries).0)
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

/// An x axis for grid panels: narrow ones (3 or 4 columns) label at most 4
/// decades.
fn for_columns(x: Axis, cols: usize) -> Axis {
    if cols >= 3 {
        x.at_most(4)
    } else {
        x
    }
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
    // A metrics file's own `trusted`; an eigenvalue file's pair trust
    // (`converged` and `resolvable`: values.arrow, layer_values.arrow).
    let trusted = if t.has("trusted") {
        t.trusted()?
    } else {
        t.values_trusted()?
    };
    sel.push(trusted.alias("trusted"));
    let keep = t.hessian()?.and(extra(&t)?);
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

/// The legend entry on hollow markers, when `any` point is untrusted; its
/// words say so when `all` are.
fn untrusted_entry((any, all): (bool, bool)) -> Option<Entry> {
    Entry::untrusted_note(any, all)
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

/// The legend's layout at the figure width.
fn legend_layout(entries: &[Entry]) -> Layout {
    Layout::new(entries, WIDTH)
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
