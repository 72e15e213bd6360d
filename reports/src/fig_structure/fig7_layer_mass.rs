//! Fig 7: the mass of v₁ per layer along training.

use super::*;

pub(super) struct MassPanel {
    pub(super) title: String,
    pub(super) steps: Vec<f64>,
    /// per layer, per step (aligned with `steps`)
    pub(super) mass: Vec<Vec<f64>>,
    /// per step: every layer's row trusted.
    pub(super) trusted: Vec<bool>,
}

pub(super) struct LayerMass {
    pub(super) panels: Vec<MassPanel>,
    pub(super) legend: Vec<Entry>,
}

pub(super) fn layer_color(i: usize, n: usize) -> RGBColor {
    let f = if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        0.5
    };
    viridis(0.05 + 0.8 * f)
}

impl LayerMass {
    pub(super) fn load(input: &ReportInput, groups: &[Group]) -> Result<LayerMass, ReportError> {
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
            .map(|i| {
                Entry::new(
                    layer_color(i, n_layers),
                    Sample::Swatch,
                    if i == 0 {
                        "layer 0 (input)".to_string()
                    } else if i + 1 == n_layers {
                        format!("layer {i} (output)")
                    } else {
                        format!("layer {i}")
                    },
                )
            })
            .collect();
        if let Some(n) = seed_count(groups.iter().map(|g| g.runs.len())) {
            legend.push(Entry::note(format!("shares: mean over {n} seeds")));
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
        80 + legend_layout(&self.legend).height() + rows as u32 * GRID_ROW_H
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let rest = headed(
            root,
            "Mass of the top Hessian eigenvector v₁ per layer",
            80,
            46,
        )?;
        let (legend, body) = rest.split_vertically(legend_layout(&self.legend).height());
        legend_layout(&self.legend).draw(&legend, &self.legend)?;
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
