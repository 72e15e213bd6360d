//! Fig 12: each layer's own curvature through training (`[hessian] layers =
//! true`): λ₁ of the layer's diagonal Hessian block H_ll, beside λ₁ of the
//! whole H. It is the spectral counterpart of fig 7: a layer that holds
//! most of v₁'s mass should carry a block whose λ₁ approaches the whole
//! Hessian's. (λ₁(H_ll) ≤ λ₁(H) always, by Cauchy interlacing.)

use super::*;

/// One setting's curves: per layer, then the whole H; per step, the seeds'
/// mean λ₁ (NaN where none) and whether every seed's value was trusted.
pub(super) struct CurvaturePanel {
    pub(super) title: String,
    pub(super) steps: Vec<f64>,
    pub(super) layers: Vec<Vec<(f64, bool)>>,
    pub(super) whole: Vec<(f64, bool)>,
}

pub(super) struct LayerCurvature {
    pub(super) panels: Vec<CurvaturePanel>,
    pub(super) legend: Vec<Entry>,
    pub(super) y: Axis,
}

/// step → (sum of λ₁, seeds, every one trusted), the seeds' accumulator.
type Acc = BTreeMap<i64, (f64, usize, bool)>;

fn mean_at(acc: &Acc, steps: &[i64]) -> Vec<(f64, bool)> {
    steps
        .iter()
        .map(|s| match acc.get(s) {
            Some(&(sum, n, ok)) if n > 0 => (sum / n as f64, ok),
            _ => (f64::NAN, false),
        })
        .collect()
}

impl LayerCurvature {
    /// None when no run has eigen/layer_values.arrow.
    pub(super) fn load(
        input: &ReportInput,
        groups: &[Group],
    ) -> Result<Option<LayerCurvature>, ReportError> {
        let has = |r: &crate::RunInput| r.files.contains_key("eigen/layer_values.arrow");
        if !input.runs.iter().any(has) {
            return Ok(None);
        }
        let top = |t: &Table| Ok(t.col("rank", Kind::Int)?.eq(lit(0i64)));
        let mut panels = Vec::new();
        let mut n_layers = 0usize;
        let mut nonpositive = false;
        for g in groups {
            let mut per_layer: Vec<Acc> = Vec::new();
            let mut whole: Acc = BTreeMap::new();
            for &run in g.runs.iter().filter(|&&i| has(&input.runs[i])) {
                let cols = [
                    ("step", Kind::Int),
                    ("layer", Kind::Int),
                    ("eigenvalue", Kind::Float),
                ];
                let (df, path) = hessian_rows(input, run, "eigen/layer_values.arrow", &cols, top)?;
                let (st, la, ev, ok) = (
                    i64s(&df, "step", &path)?,
                    i64s(&df, "layer", &path)?,
                    f64s(&df, "eigenvalue", &path)?,
                    bools(&df, "trusted", &path)?,
                );
                if la.iter().any(|&l| !(0..1000).contains(&l)) {
                    return Err(data_err(&path, "layer index out of range"));
                }
                for i in 0..st.len() {
                    let l = la[i] as usize;
                    if per_layer.len() <= l {
                        per_layer.resize_with(l + 1, BTreeMap::new);
                    }
                    let e = per_layer[l].entry(st[i]).or_insert((0.0, 0, true));
                    e.0 += ev[i];
                    e.1 += 1;
                    e.2 &= ok[i];
                }
                let cols = [("step", Kind::Int), ("eigenvalue", Kind::Float)];
                let (df, path) = hessian_rows(input, run, "eigen/values.arrow", &cols, top)?;
                let (st, ev, ok) = (
                    i64s(&df, "step", &path)?,
                    f64s(&df, "eigenvalue", &path)?,
                    bools(&df, "trusted", &path)?,
                );
                for i in 0..st.len() {
                    let e = whole.entry(st[i]).or_insert((0.0, 0, true));
                    e.0 += ev[i];
                    e.1 += 1;
                    e.2 &= ok[i];
                }
            }
            let mut steps: Vec<i64> = per_layer.iter().flat_map(|a| a.keys().copied()).collect();
            steps.sort_unstable();
            steps.dedup();
            n_layers = n_layers.max(per_layer.len());
            let layers: Vec<Vec<(f64, bool)>> =
                per_layer.iter().map(|a| mean_at(a, &steps)).collect();
            let whole = mean_at(&whole, &steps);
            nonpositive |= layers
                .iter()
                .flatten()
                .chain(&whole)
                .any(|(v, _)| v.is_finite() && *v <= 0.0);
            panels.push(CurvaturePanel {
                title: g.label.clone(),
                steps: steps.iter().map(|&s| s as f64).collect(),
                layers,
                whole,
            });
        }
        let values: Vec<f64> = panels
            .iter()
            .flat_map(|p| p.layers.iter().flatten().chain(&p.whole))
            .map(|(v, _)| *v)
            .filter(|v| *v > 0.0)
            .collect();
        let y = crate::chart::y_axis(Scale::Log, values, (1e-3, 1.0));
        let mut legend = vec![Entry::line(INK, LINE_W, false, "whole Hessian".into())];
        legend.extend((0..n_layers).map(|i| {
            Entry::line(
                layer_color(i, n_layers),
                LINE_W,
                false,
                if i == 0 {
                    "layer 0 (input)".to_string()
                } else if i + 1 == n_layers {
                    format!("layer {i} (output)")
                } else {
                    format!("layer {i}")
                },
            )
        }));
        if let Some(n) = seed_count(groups.iter().map(|g| g.runs.len())) {
            legend.push(Entry::note(format!("mean over {n} seeds")));
        }
        if nonpositive {
            legend.push(Entry::note("λ₁ ≤ 0: not drawn on the log axis"));
        }
        legend.extend(untrusted_entry(trust_flags(panels.iter().flat_map(|p| {
            p.layers
                .iter()
                .flatten()
                .chain(&p.whole)
                .filter(|(v, _)| v.is_finite())
                .map(|(_, ok)| ok)
        }))));
        Ok(Some(LayerCurvature { panels, legend, y }))
    }
}

impl Figure for LayerCurvature {
    fn height(&self) -> u32 {
        let (rows, _) = grid(self.panels.len());
        80 + legend_layout(&self.legend).height() + rows as u32 * GRID_ROW_H
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let rest = headed(
            root,
            "Top eigenvalue λ₁ of each layer's own Hessian block, and of the whole Hessian",
            80,
            46,
        )?;
        let (legend, body) = rest.split_vertically(legend_layout(&self.legend).height());
        legend_layout(&self.legend).draw(&legend, &self.legend)?;
        let steps = self.panels.iter().flat_map(|p| p.steps.iter().copied());
        let (s0, s1) = finite_range(steps, false).unwrap_or((0.0, 1000.0));
        let x = Axis::fit(Scale::LogPlusOne, s0.max(0.0), s1.max(0.0), 0.0);
        let y = &self.y;
        let (rows, cols) = grid(self.panels.len());
        let cells = body.split_evenly((rows, cols));
        let n = self
            .panels
            .iter()
            .map(|p| p.layers.len())
            .max()
            .unwrap_or(0);
        for (i, (cell, p)) in cells.iter().zip(&self.panels).enumerate() {
            let y_desc = if i % cols == 0 { "λ₁" } else { "" };
            let mut chart = line_chart(cell, &p.title, &x, y, "step + 1", y_desc)?;
            let curves = p
                .layers
                .iter()
                .enumerate()
                .map(|(l, c)| (c, layer_color(l, n)))
                .chain(std::iter::once((&p.whole, INK)));
            let mut drawn = false;
            for (curve, color) in curves {
                let marked: Vec<((f64, f64), bool)> = p
                    .steps
                    .iter()
                    .zip(curve)
                    .filter(|(_, (v, _))| *v > 0.0)
                    .filter_map(|(&s, &(v, ok))| Some(((x.t(s)?, y.t(v)?), ok)))
                    .collect();
                drawn |= !marked.is_empty();
                chart
                    .draw_series(LineSeries::new(
                        marked.iter().map(|m| m.0),
                        color.stroke_width(LINE_W),
                    ))
                    .map_err(pe)?;
                if marked.len() <= 60 {
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
            if !drawn {
                no_data(&mut chart, &x, y, "no data")?;
            }
        }
        Ok(())
    }
}
