//! Fig 11: the Hessian's spectral density through training (stochastic
//! Lanczos quadrature, `[density]`): one heatmap per setting, checkpoint
//! against λ on a symmetric-log axis, coloured by log₁₀ of the density, with
//! the top-k eigenvalues from Lanczos overlaid.

use super::*;

/// Rows of the λ axis (cells of the heatmap).
const LAMBDA_CELLS: usize = 240;
/// Decades of density shown below the figure's maximum.
const DECADES: f64 = 6.0;

/// The symmetric-log map of λ: sign(λ)·log₁₀(1 + |λ|/c).
#[derive(Clone, Copy)]
pub(super) struct Symlog {
    pub(super) c: f64,
}

impl Symlog {
    pub(super) fn to(self, l: f64) -> f64 {
        l.signum() * (1.0 + l.abs() / self.c).log10()
    }
    pub(super) fn from(self, y: f64) -> f64 {
        y.signum() * (10f64.powf(y.abs()) - 1.0) * self.c
    }
}

pub(super) struct DensityPanel {
    pub(super) title: String,
    pub(super) steps: Vec<i64>,
    /// Per step, the seeds' mean density averaged over each λ cell (bottom
    /// to top).
    pub(super) cells: Vec<Vec<f64>>,
    /// Per rank, per step: the seeds' mean eigenvalue (NaN where missing)
    /// and whether every seed's pair was trusted.
    pub(super) top: Vec<Vec<(f64, bool)>>,
}

pub(super) struct Density {
    pub(super) panels: Vec<DensityPanel>,
    pub(super) axis: Symlog,
    /// The λ axis's ends, in symlog units.
    pub(super) y_lo: f64,
    pub(super) y_hi: f64,
    /// log₁₀ of the largest density drawn (the colour scale's top).
    pub(super) log_max: f64,
    pub(super) seeds: Option<String>,
}

/// The mean of ρ over each cell [edges[c], edges[c+1]]: the exact integral
/// of its piecewise-linear interpolant (0 outside the grid) over the cell,
/// divided by the cell's width. Mass is kept: a peak narrower than a cell
/// still shows, as a cell-wide average.
fn cell_means(grid: &[f64], rho: &[f64], edges: &[f64]) -> Vec<f64> {
    let n = grid.len();
    let mut cum = vec![0.0; n];
    for i in 1..n {
        cum[i] = cum[i - 1] + 0.5 * (rho[i - 1] + rho[i]) * (grid[i] - grid[i - 1]);
    }
    let integral_to = |l: f64| -> f64 {
        if n < 2 || l <= grid[0] {
            return 0.0;
        }
        if l >= grid[n - 1] {
            return cum[n - 1];
        }
        let i = grid.partition_point(|&g| g <= l).clamp(1, n - 1);
        let (a, b) = (grid[i - 1], grid[i]);
        let f = if b > a { (l - a) / (b - a) } else { 0.0 };
        let at = rho[i - 1] * (1.0 - f) + rho[i] * f;
        cum[i - 1] + 0.5 * (rho[i - 1] + at) * (l - a)
    };
    edges
        .windows(2)
        .map(|w| {
            let width = w[1] - w[0];
            if width > 0.0 {
                (integral_to(w[1]) - integral_to(w[0])) / width
            } else {
                0.0
            }
        })
        .collect()
}

impl Density {
    /// None when no run has eigen/density.arrow.
    pub(super) fn load(
        input: &ReportInput,
        groups: &[Group],
    ) -> Result<Option<Density>, ReportError> {
        let has = |r: &crate::RunInput| r.files.contains_key("eigen/density.arrow");
        if !input.runs.iter().any(has) {
            return Ok(None);
        }
        // Per group: step → every seed's (grid, density).
        type Curves = BTreeMap<i64, Vec<(Vec<f64>, Vec<f64>)>>;
        let mut per_group: Vec<(String, Curves, Vec<usize>)> = Vec::new();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for g in groups {
            let runs: Vec<usize> = g
                .runs
                .iter()
                .copied()
                .filter(|&i| has(&input.runs[i]))
                .collect();
            let mut curves: Curves = BTreeMap::new();
            for &run in &runs {
                let cols = [
                    ("step", Kind::Int),
                    ("lambda", Kind::Float),
                    ("density", Kind::Float),
                ];
                let (df, path) =
                    hessian_rows(input, run, "eigen/density.arrow", &cols, |_| Ok(lit(true)))?;
                let (st, la, de) = (
                    i64s(&df, "step", &path)?,
                    f64s(&df, "lambda", &path)?,
                    f64s(&df, "density", &path)?,
                );
                let mut by_step: BTreeMap<i64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
                for i in 0..st.len() {
                    if la[i].is_finite() && de[i].is_finite() {
                        let e = by_step.entry(st[i]).or_default();
                        e.0.push(la[i]);
                        e.1.push(de[i]);
                    }
                }
                for (s, (mut l, mut d)) in by_step {
                    let mut idx: Vec<usize> = (0..l.len()).collect();
                    idx.sort_by(|&a, &b| l[a].total_cmp(&l[b]));
                    l = idx.iter().map(|&i| l[i]).collect();
                    d = idx.iter().map(|&i| d[i]).collect();
                    lo = lo.min(l[0]);
                    hi = hi.max(l[l.len() - 1]);
                    curves.entry(s).or_default().push((l, d));
                }
            }
            if !runs.is_empty() {
                per_group.push((g.label.clone(), curves, runs));
            }
        }
        if !lo.is_finite() || !hi.is_finite() {
            return Ok(None);
        }
        let span = lo.abs().max(hi.abs()).max(f64::MIN_POSITIVE);
        let axis = Symlog { c: 1e-3 * span };
        let (y_lo, y_hi) = (axis.to(lo), axis.to(hi));
        let edges: Vec<f64> = (0..=LAMBDA_CELLS)
            .map(|i| axis.from(y_lo + (y_hi - y_lo) * i as f64 / LAMBDA_CELLS as f64))
            .collect();
        let mut log_max = f64::NEG_INFINITY;
        let mut panels = Vec::new();
        for (title, curves, runs) in per_group {
            let steps: Vec<i64> = curves.keys().copied().collect();
            let cells: Vec<Vec<f64>> = curves
                .values()
                .map(|seeds| {
                    let per_seed: Vec<Vec<f64>> = seeds
                        .iter()
                        .map(|(g, d)| cell_means(g, d, &edges))
                        .collect();
                    (0..LAMBDA_CELLS)
                        .map(|c| per_seed.iter().map(|v| v[c]).sum::<f64>() / seeds.len() as f64)
                        .collect()
                })
                .collect();
            for c in cells.iter().flatten() {
                if *c > 0.0 {
                    log_max = log_max.max(c.log10());
                }
            }
            // The top-k eigenvalues of the Hessian, the seeds' mean per step.
            let mut top: BTreeMap<i64, Vec<(f64, bool, usize)>> = BTreeMap::new();
            for &run in &runs {
                let cols = [
                    ("step", Kind::Int),
                    ("rank", Kind::Int),
                    ("eigenvalue", Kind::Float),
                ];
                let (df, path) = hessian_rows(input, run, "eigen/values.arrow", &cols, |t| {
                    Ok(t.col("rank", Kind::Int)?.gt_eq(lit(0i64)))
                })?;
                let (st, rk, ev, ok) = (
                    i64s(&df, "step", &path)?,
                    i64s(&df, "rank", &path)?,
                    f64s(&df, "eigenvalue", &path)?,
                    bools(&df, "trusted", &path)?,
                );
                for i in 0..st.len() {
                    let row = top.entry(rk[i]).or_default();
                    if let Ok(j) = steps.binary_search(&st[i]) {
                        if row.len() < steps.len() {
                            row.resize(steps.len(), (0.0, true, 0));
                        }
                        row[j].0 += ev[i];
                        row[j].1 &= ok[i];
                        row[j].2 += 1;
                    }
                }
            }
            let top = top
                .into_values()
                .map(|row| {
                    row.into_iter()
                        .map(|(s, ok, n)| {
                            if n == 0 {
                                (f64::NAN, false)
                            } else {
                                (s / n as f64, ok)
                            }
                        })
                        .collect()
                })
                .collect();
            panels.push(DensityPanel {
                title,
                steps,
                cells,
                top,
            });
        }
        let seeds = seed_count(groups.iter().map(|g| g.runs.len()))
            .map(|n| format!("each map the mean over {n} seeds"));
        Ok(Some(Density {
            panels,
            axis,
            y_lo,
            y_hi,
            log_max,
            seeds,
        }))
    }

    fn per_row(&self) -> usize {
        if self.panels.len() <= 1 {
            1
        } else {
            2
        }
    }

    /// λ ticks: 0 and ±10^k inside the axis, at least `gap` symlog units
    /// apart.
    fn ticks(&self, gap: f64) -> Vec<f64> {
        let mut out: Vec<f64> = Vec::new();
        let mut cand = vec![0.0];
        for k in -12..=12 {
            let v = 10f64.powi(k);
            cand.push(v);
            cand.push(-v);
        }
        let mut ys: Vec<(f64, f64)> = cand
            .into_iter()
            .map(|l| (self.axis.to(l), l))
            .filter(|(y, _)| *y >= self.y_lo && *y <= self.y_hi)
            .collect();
        ys.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Keep 0 first, then the largest magnitudes outward, spaced.
        let mut kept: Vec<f64> = Vec::new();
        ys.sort_by(|a, b| a.1.abs().total_cmp(&b.1.abs()).reverse());
        if let Some(z) = ys.iter().find(|(_, l)| *l == 0.0) {
            kept.push(z.0);
            out.push(0.0);
        }
        for (y, l) in ys {
            if l != 0.0 && kept.iter().all(|k| (k - y).abs() >= gap) {
                kept.push(y);
                out.push(l);
            }
        }
        out
    }
}

fn lambda_label(l: f64) -> String {
    if l == 0.0 {
        return "0".into();
    }
    let k = l.abs().log10().round() as i32;
    let sign = if l < 0.0 { "−" } else { "" };
    if (-2..=3).contains(&k) {
        format!("{sign}{}", 10f64.powi(k))
    } else {
        format!("{sign}1e{k}")
    }
}

const PANEL_H: u32 = 760;
const BAR_W: u32 = 260;
/// Margins inside a panel: left (λ ticks and title), top, bottom, right.
const MARGIN: (i32, i32, i32, i32) = (170, 80, 150, 30);

impl Figure for Density {
    fn height(&self) -> u32 {
        let rows = self.panels.len().div_ceil(self.per_row()).max(1) as u32;
        130 + PANEL_H * rows
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let title = "Spectral density of the Hessian through training (SLQ; white: the top-k eigenvalues, hollow where untrusted)";
        let body = headed(root, title, 130, 50)?;
        if let Some(note) = &self.seeds {
            root.draw(&Text::new(
                note.clone(),
                (WIDTH as i32 / 2, 104),
                text_style(LEGEND_PX - 4.0, REF_GREY).pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(pe)?;
        }
        let per_row = self.per_row();
        let n_rows = self.panels.len().div_ceil(per_row).max(1);
        let (main, bar) = body.split_horizontally(WIDTH - BAR_W);
        let rows = main.split_evenly((n_rows, 1));
        let lo = self.log_max - DECADES;
        let colour = |d: f64| {
            if d > 0.0 {
                viridis(((d.log10() - lo) / DECADES).clamp(0.0, 1.0))
            } else {
                viridis(0.0)
            }
        };
        let mut plot_box = (0, 0);
        for (i, row) in rows.iter().enumerate() {
            let slots = row.split_evenly((1, per_row));
            for (slot, p) in slots.iter().zip(self.panels.iter().skip(i * per_row)) {
                let (w, h) = slot.dim_in_pixel();
                let (left, top, bottom, right) = MARGIN;
                let (pw, ph) = (w as i32 - left - right, h as i32 - top - bottom);
                plot_box = (top, top + ph);
                let (text, px) = fitted_title(slot, &p.title, TITLE_PX, w as i32 - 40)?;
                slot.draw(&Text::new(
                    text,
                    (left + pw / 2, 36),
                    text_style(px, INK).pos(Pos::new(HPos::Center, VPos::Center)),
                ))
                .map_err(pe)?;
                let n = p.steps.len().max(1);
                let x_edge = |j: usize| left + (j as f64 * pw as f64 / n as f64).round() as i32;
                let y_of = |y: f64| {
                    top + ph
                        - ((y - self.y_lo) / (self.y_hi - self.y_lo) * ph as f64).round() as i32
                };
                let cell_edge = |c: usize| {
                    top + ph - (c as f64 * ph as f64 / LAMBDA_CELLS as f64).round() as i32
                };
                for (j, col) in p.cells.iter().enumerate() {
                    for (c, d) in col.iter().enumerate() {
                        slot.draw(&Rectangle::new(
                            [(x_edge(j), cell_edge(c + 1)), (x_edge(j + 1), cell_edge(c))],
                            colour(*d).filled(),
                        ))
                        .map_err(pe)?;
                    }
                }
                // The top-k eigenvalues: a white line per rank through the
                // checkpoints' centres, hollow markers where untrusted.
                for rank in &p.top {
                    let pts: Vec<(i32, i32, bool)> = rank
                        .iter()
                        .enumerate()
                        .filter(|(_, (v, _))| v.is_finite())
                        .map(|(j, (v, ok))| {
                            ((x_edge(j) + x_edge(j + 1)) / 2, y_of(self.axis.to(*v)), *ok)
                        })
                        .collect();
                    slot.draw(&PathElement::new(
                        pts.iter().map(|(x, y, _)| (*x, *y)).collect::<Vec<_>>(),
                        WHITE.stroke_width(2),
                    ))
                    .map_err(pe)?;
                    for (x, y, ok) in pts {
                        let style = if ok {
                            WHITE.filled()
                        } else {
                            WHITE.stroke_width(2)
                        };
                        slot.draw(&Circle::new((x, y), 5, style)).map_err(pe)?;
                    }
                }
                slot.draw(&Rectangle::new(
                    [(left, top), (left + pw, top + ph)],
                    INK.stroke_width(2),
                ))
                .map_err(pe)?;
                // λ ticks (about one per 60 px) and checkpoint ticks.
                let gap = (self.y_hi - self.y_lo) * 60.0 / ph.max(1) as f64;
                for l in self.ticks(gap) {
                    let y = y_of(self.axis.to(l));
                    slot.draw(&PathElement::new(
                        vec![(left - 10, y), (left, y)],
                        INK.stroke_width(2),
                    ))
                    .map_err(pe)?;
                    slot.draw(&Text::new(
                        lambda_label(l),
                        (left - 16, y),
                        text_style(TICK_PX, INK).pos(Pos::new(HPos::Right, VPos::Center)),
                    ))
                    .map_err(pe)?;
                }
                let n_ticks = (pw / 130).clamp(2, 6) as usize;
                for j in index_ticks(p.steps.len(), n_ticks) {
                    let x = (x_edge(j) + x_edge(j + 1)) / 2;
                    slot.draw(&PathElement::new(
                        vec![(x, top + ph), (x, top + ph + 10)],
                        INK.stroke_width(2),
                    ))
                    .map_err(pe)?;
                    slot.draw(&Text::new(
                        p.steps[j].to_string(),
                        (x, top + ph + 16),
                        text_style(TICK_PX, INK).pos(Pos::new(HPos::Center, VPos::Top)),
                    ))
                    .map_err(pe)?;
                }
                axis_titles(
                    slot,
                    ("checkpoint step", (left + pw / 2, top + ph + 70)),
                    ("λ (symmetric log)", (left - 150, top + ph / 2)),
                )?;
            }
        }
        let ticks: Vec<f64> = (lo.ceil() as i32..=self.log_max.floor() as i32)
            .map(f64::from)
            .collect();
        draw_colorbar(
            &bar,
            plot_box,
            lo,
            self.log_max,
            &ticks,
            &|u| format!("1e{}", u.round() as i32),
            "density",
        )
    }
}
