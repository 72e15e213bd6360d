//! Fig 5: two-time heatmaps of |⟨v₁(t), v₁(t′)⟩| and of q(t, t′), each cell
//! the mean over a setting's seeds.

use super::*;

/// A symmetric matrix over checkpoint indices (NaN where not computed).
pub(super) struct Matrix {
    pub(super) steps: Vec<i64>,
    pub(super) v: Vec<f64>,
    /// Per cell: built on an untrusted pair (drawn hatched).
    pub(super) untrusted: Vec<bool>,
}

impl Matrix {
    /// Some computed cell is built on an untrusted pair.
    pub(super) fn any_untrusted(&self) -> bool {
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
    pub(super) fn mean(ms: &[Matrix]) -> Option<Matrix> {
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

pub(super) struct HeatRow {
    pub(super) title: String,
    pub(super) v1: Matrix,
    pub(super) q: Matrix,
}

pub(super) struct Heatmaps {
    /// One per setting.
    pub(super) rows: Vec<HeatRow>,
    /// "mean over 3 seeds" or the like, when some setting has several.
    pub(super) seeds: Option<String>,
}

pub(super) fn symmetric(
    steps: &[i64],
    a: &[i64],
    b: &[i64],
    val: &[f64],
    trusted: &[bool],
) -> Matrix {
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
pub(super) fn run_maps(input: &ReportInput, run: usize) -> Result<(Matrix, Matrix), ReportError> {
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
    pub(super) fn load(input: &ReportInput, groups: &[Group]) -> Result<Heatmaps, ReportError> {
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
    pub(super) fn per_row(&self) -> usize {
        if self.rows.len() <= 2 {
            1
        } else {
            2
        }
    }
}

/// Index ticks: about `n` indices spread evenly, labelled with their steps.
pub(super) fn index_ticks(len: usize, n: usize) -> Vec<usize> {
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
pub(super) const HEAT_MARGIN: (i32, i32, i32, i32) = (170, 80, 150, 20);

/// The side of the square map drawn in a `w`×`h` cell.
pub(super) fn heat_side(w: i32, h: i32) -> i32 {
    let (left, top, bottom, right) = HEAT_MARGIN;
    (w - left - right).min(h - top - bottom).max(10)
}

/// Draws an n×n heatmap into `area` with `title`; cells coloured by viridis(v).
pub(super) fn draw_heatmap<DB: DrawingBackend>(
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
pub(super) fn draw_colorbar<DB: DrawingBackend>(
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
pub(super) const HEAT_ROW_H: u32 = 1120;
pub(super) const HEAT_ROW_H_PAIR: u32 = 640;
/// The band above each setting's pair of maps that holds its label.
pub(super) const HEAT_LABEL_H: u32 = 56;
pub(super) const HEAT_BAR_W: u32 = 260;

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
