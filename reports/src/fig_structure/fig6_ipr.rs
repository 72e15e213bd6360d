//! Fig 6: P·IPR per rank against the architecture null band, the
//! random-vector line and each setting's layer-mass-matched null.

use super::*;

pub(super) struct IprCurve {
    pub(super) color: RGBColor,
    pub(super) several: bool,
    pub(super) step: Vec<f64>,
    pub(super) mean: Vec<f64>,
    pub(super) lo: Vec<f64>,
    pub(super) hi: Vec<f64>,
    /// Per point: every seed's pair trusted.
    pub(super) trusted: Vec<bool>,
    /// Per point: the mean over seeds of ln(train loss) at the step.
    pub(super) ln_loss: Vec<f64>,
    /// Per point: the layer-mass-matched null E[P·IPR] of the same vector
    /// (docs/science.md §8), mean over seeds; NaN where a seed lacks it.
    pub(super) layer_null: Vec<f64>,
}

impl IprCurve {
    /// The points at the seeds' geometric-mean train loss instead of the
    /// step (points without a loss dropped).
    pub(super) fn against_loss(&self, floor: Option<f64>) -> IprCurve {
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
pub(super) fn layer_null_of(
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

pub(super) struct IprPanel {
    pub(super) rank: i64,
    pub(super) curves: Vec<IprCurve>,
    /// null model: (min, mean, max)
    pub(super) null: Option<(f64, f64, f64)>,
}

pub(super) struct Ipr {
    pub(super) panels: Vec<IprPanel>,
    pub(super) legend: Vec<Entry>,
    pub(super) along: XAxis,
}

impl Ipr {
    pub(super) fn load(input: &ReportInput, groups: &[Group]) -> Result<Ipr, ReportError> {
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
            // Trusted replicas only (the metrics stage's null_band rule);
            // the label says how many were left out.
            let sel = vec![
                t.col("rank", Kind::Int)?.alias("rank"),
                t.col("p_ipr", Kind::Float)?.alias("p_ipr"),
                t.trusted()?.alias("trusted"),
            ];
            let keep = t.hessian()?;
            let df = t.query(|lf| lf.filter(keep).select(sel))?;
            let (r, v) = (i64s(&df, "rank", &path)?, f64s(&df, "p_ipr", &path)?);
            let trusted = bools(&df, "trusted", &path)?;
            let mut computed: BTreeMap<i64, usize> = BTreeMap::new();
            let mut by_rank: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for i in 0..r.len() {
                *computed.entry(r[i]).or_default() += 1;
                if trusted[i] {
                    by_rank.entry(r[i]).or_default().push(v[i]);
                }
            }
            let computed = computed.values().copied().max().unwrap_or(0);
            let replicas = by_rank.values().map(Vec::len).min().unwrap_or(0);
            for (rank, vals) in by_rank {
                use crate::findings::quantile;
                null.push((
                    rank,
                    quantile(&vals, 0.05),
                    quantile(&vals, 0.5),
                    quantile(&vals, 0.95),
                ));
            }
            null_label = if replicas < computed {
                format!("architecture null (5–95%, {replicas} of {computed} replicas trusted)")
            } else {
                format!("architecture null (5–95%, {replicas} replicas)")
            };
            // A band computed at a loose null.tol says so (findings.rs).
            if let Some(band) = run.files.get("metrics/null_band.arrow") {
                if let Some(tol) = crate::findings::null_tol(&Table::open(band)?, band)? {
                    if tol > crate::findings::NULL_TOL_MEASURED {
                        null_label = format!(
                            "{}, null.tol {}: flagged)",
                            null_label.trim_end_matches(')'),
                            crate::axis::fmt_plain(tol)
                        );
                    }
                }
            }
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
            .map(|g| Entry::new(g.color, Sample::Line(LINE_W + 1), g.label.clone()))
            .collect();
        if !null.is_empty() {
            legend.push(Entry::new(
                mix(NULL_GREY, 255.0, 0.65),
                Sample::Swatch,
                null_label,
            ));
        }
        if panels
            .iter()
            .flat_map(|p| &p.curves)
            .any(|c| c.layer_null.iter().any(|v| v.is_finite()))
        {
            legend.push(Entry::new(
                REF_GREY,
                Sample::Dotted,
                "layer-mass-matched null (dotted, each setting's colour)",
            ));
        }
        legend.push(Entry::new(
            REF_GREY,
            Sample::Dashed(LINE_W),
            "random vector (3)",
        ));
        if groups.iter().any(|g| g.runs.len() > 1) {
            legend.push(Entry::note("line: mean over seeds · band: min–max"));
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
    pub(super) fn against_loss(&self, several_seeds: bool) -> Ipr {
        let floor = loss_floor(
            self.panels
                .iter()
                .flat_map(|p| &p.curves)
                .flat_map(|c| c.ln_loss.iter().map(|l| l.exp())),
        );
        let mut legend = self.legend.clone();
        legend.push(Entry::note(loss_note(several_seeds)));
        legend.extend(floor.map(|f| Entry::note(loss_cut_note(f))));
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
        legend_layout(&self.legend).height() + 80 + 820 * rows
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let rest = headed(
            root,
            "Localization of the top Hessian eigenvectors against the null model",
            80,
            46,
        )?;
        let (legend, body) = rest.split_vertically(legend_layout(&self.legend).height());
        legend_layout(&self.legend).draw(&legend, &self.legend)?;
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
