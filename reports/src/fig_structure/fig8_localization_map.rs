//! Fig 8: the mass of v₁ over the first weight matrix at the last checkpoint.

use super::*;

pub(super) struct LocPanel {
    pub(super) title: String,
    /// Cells drawn (blocks of weights when the matrix is large).
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// row-major [out, in] mass fractions, each summed over its block
    pub(super) mass: Vec<f64>,
    /// Weights per cell: hidden units × inputs (1 × 1 up to MAX_ROWS ×
    /// MAX_COLS weights).
    pub(super) block: (usize, usize),
}

/// At most this many cells down and across a panel: beyond it, each cell
/// sums the mass of a block of weights (mass is additive, so the map stays
/// a partition of v₁'s first-layer mass). A 784-1024 matrix would otherwise
/// draw 800k cells per panel: more than a pixel each, and more SVG nodes
/// than the PDF converter takes.
const MAX_ROWS: usize = 128;
const MAX_COLS: usize = 196;

/// `mass` (rows × cols, row-major) summed over blocks so that at most
/// MAX_ROWS × MAX_COLS cells remain: (cells down, across, block).
fn blocks(mass: &[f64], rows: usize, cols: usize) -> (Vec<f64>, usize, usize, (usize, usize)) {
    let (br, bc) = (
        rows.div_ceil(MAX_ROWS).max(1),
        cols.div_ceil(MAX_COLS).max(1),
    );
    if (br, bc) == (1, 1) || mass.len() != rows * cols {
        return (mass.to_vec(), rows, cols, (1, 1));
    }
    let (r2, c2) = (rows.div_ceil(br), cols.div_ceil(bc));
    let mut out = vec![0.0; r2 * c2];
    for r in 0..rows {
        for c in 0..cols {
            out[(r / br) * c2 + c / bc] += mass[r * cols + c];
        }
    }
    (out, r2, c2, (br, bc))
}

pub(super) struct LocMap {
    pub(super) panels: Vec<LocPanel>,
    /// Which vector each panel shows (step, seed), in words, under the title.
    pub(super) note: String,
    /// log10 colour range
    pub(super) lo: f64,
    pub(super) hi: f64,
}

/// Height of one row of fig 8's grid.
pub(super) const LOC_ROW_H: u32 = 720;

impl LocMap {
    pub(super) fn load(input: &ReportInput, groups: &[Group]) -> Result<LocMap, ReportError> {
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
            // Read by the stages' reader, not polars: polars has neither
            // float16 nor bfloat16 (`hessian.vector_dtype`).
            let vt = stages::arrow_io::Table::open(&vpath).map_err(|e| data_err(&vpath, e))?;
            let (steps, ranks) = vt
                .ints("step")
                .and_then(|s| Ok((s, vt.ints("rank")?)))
                .map_err(|e| data_err(&vpath, e))?;
            let hessian: Vec<bool> = match vt.strings("operator") {
                Ok(ops) => ops.iter().map(|o| o == "hessian").collect(),
                Err(_) if vt.batch.column_by_name("operator").is_none() => vec![true; vt.len()],
                Err(e) => return Err(data_err(&vpath, e)),
            };
            // Rank 0 of the Hessian at the last step that has one.
            let row = (0..vt.len())
                .filter(|&i| hessian[i] && ranks[i] == 0)
                .max_by_key(|&i| (steps[i], std::cmp::Reverse(i)));
            let last = row.map(|i| steps[i]);
            let vec: Option<Vec<f64>> = match row {
                Some(i) => Some(
                    vt.vector_row("vector", i)
                        .map_err(|e| data_err(&vpath, e))?,
                ),
                None => None,
            };
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
            let (mass, rows, cols, block) = blocks(&mass, rows, cols);
            panels.push(LocPanel {
                title: format!("{}{at}", g.label),
                rows,
                cols,
                mass,
                block,
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
        let summed = match panels.iter().map(|p| p.block).max() {
            Some((br, bc)) if (br, bc) != (1, 1) => {
                format!("; each cell sums the mass of a block of {br} hidden units × {bc} inputs")
            }
            _ => String::new(),
        };
        Ok(LocMap {
            panels,
            note: format!("v₁ {when}{which}{summed}"),
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
                    (c * p.block.1).to_string(),
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
                    (r * p.block.0).to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Large matrices are summed over blocks: the cells stay within the
    /// caps, the total mass and each block's sum are kept; small ones are
    /// drawn as they are.
    #[test]
    fn large_maps_are_block_sums_of_the_mass() {
        let (rows, cols) = (1024, 784);
        let mass: Vec<f64> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1000) as f64)
            .collect();
        let (m, r, c, (br, bc)) = blocks(&mass, rows, cols);
        assert_eq!((br, bc), (8, 4));
        assert_eq!((r, c), (128, 196));
        assert!(r <= MAX_ROWS && c <= MAX_COLS && m.len() == r * c);
        let total: f64 = mass.iter().sum();
        assert!((m.iter().sum::<f64>() - total).abs() <= 1e-9 * total);
        // The cell (5, 7): hidden units 40..48, inputs 28..32.
        let want: f64 = (40..48)
            .flat_map(|i| (28..32).map(move |j| (i, j)))
            .map(|(i, j)| mass[i * cols + j])
            .sum();
        assert_eq!(m[5 * c + 7], want);
        // 1000 rows: blocks of 8 and a last, partial block.
        let (m, r, _, (br, _)) = blocks(&vec![1.0; 1000 * 10], 1000, 10);
        assert_eq!((r, br), (125, 8));
        assert_eq!(m[124 * 10], 8.0);
        let small = vec![0.5; 32 * 64];
        assert_eq!(blocks(&small, 32, 64), (small.clone(), 32, 64, (1, 1)));
    }
}
