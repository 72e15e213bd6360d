//! Fig 10: v₁'s mass per input column against the column's largest |z|.

use super::*;

/// One setting: per input column, its largest |z| over the train rows and
/// v₁'s mass on it (the seeds' mean) at the last checkpoint every seed has.
pub(super) struct InputPanel {
    pub(super) title: String,
    pub(super) color: RGBColor,
    pub(super) step: Option<i64>,
    /// (max |z|, mass) per column.
    pub(super) points: Vec<(f64, f64)>,
    /// Every seed's row at that step trusted.
    pub(super) trusted: bool,
    /// The input layer's mass spread evenly: its total over the columns.
    pub(super) uniform: f64,
    /// Spearman's ρ between mass and max |z|, and the share of the mass on
    /// the 8 columns with the largest max |z|.
    pub(super) rho: f64,
    pub(super) top_share: f64,
}

pub(super) struct InputMass {
    pub(super) panels: Vec<InputPanel>,
    pub(super) legend: Vec<Entry>,
}

impl InputMass {
    /// None when no run has both metrics/input_mass.arrow and data.arrow.
    pub(super) fn load(
        input: &ReportInput,
        groups: &[Group],
    ) -> Result<Option<InputMass>, ReportError> {
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
            Entry::note(if constant > 0 {
                format!(
                        "one point per input column, at the last checkpoint ({constant} constant on the train split, left out)"
                    )
            } else {
                "one point per input column, at the last checkpoint".into()
            }),
            Entry::new(
                REF_GREY,
                Sample::Dashed(LINE_W),
                "the input layer's mass spread evenly over the columns",
            ),
        ];
        if let Some(n) = seed_count(groups.iter().map(|g| g.runs.len())) {
            legend.push(Entry::note(format!("mass: mean over {n} seeds")));
        }
        legend.extend(untrusted_entry(trust_flags(
            panels
                .iter()
                .filter(|p| p.step.is_some())
                .map(|p| &p.trusted),
        )));
        Ok(Some(InputMass { panels, legend }))
    }

    pub(super) fn legend_h(&self) -> u32 {
        legend_layout(&self.legend).height()
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
        legend_layout(&self.legend).draw(&legend, &self.legend)?;
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
        let x = for_columns(x, cols);
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
pub(super) fn with_foot<DB: DrawingBackend>(
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
