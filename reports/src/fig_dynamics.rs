//! Training-dynamics figures, each drawn once on a bitmap (PNG) and once as
//! SVG by the same code:
//!
//! - `fig1_loss_accuracy`: train/test loss and accuracy (2×2);
//! - `fig2_eigenvalues`: the top-k Hessian eigenvalues against 2/η, and the
//!   preconditioned sharpness of adaptive optimizers against 2(1+β₁)/((1−β₁)η);
//! - `fig3_displacement`: consecutive eigenvector displacement and its rate;
//! - `fig9_alignment`: gradient and update alignment with the top-k subspace.
//!
//! Seeds of one (optimizer, label) are averaged per step with a min–max band
//! by [`crate::data::aggregate`] (one lazy polars `group_by`).

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use polars::prelude::*;

use crate::axis::{Axis, Scale};
use crate::chart::{
    auto_scale, curve_values, distinct_steps, finite_range, loss_axis, loss_cut_note, loss_floor,
    loss_note, pairs_note, step_axis, unit_axis, write_figure, y_axis, Line, Look, Panel, XAxis,
    INK, LINE_W, REF_GREY, REF_W,
};
use crate::data::{
    aggregate, group_runs, Curve, Group, Kind, LossClock, RunSummary, Table, Tagged,
};
use crate::legend::Entry;
use crate::palette::{darker, is_sgd_family};
use crate::threshold::{Mark, Threshold};
use crate::{ReportError, ReportInput};

const LOOK: Look = Look { empty_at: 0.5 };
const THIN_W: u32 = 2;

/// Every fixed string the figures draw (for a glyph-coverage check).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const TEXTS: &[&str] = &[
    "(a) Train loss",
    "(b) Test loss",
    "(c) Train accuracy",
    "(d) Test accuracy",
    "cross-entropy loss",
    "accuracy",
    "(a) Top-k Hessian eigenvalues",
    "(b) Preconditioned sharpness (adaptive optimizers)",
    "eigenvalue λᵢ",
    "λ₁ of P⁻¹H",
    "no adaptive optimizer",
    "(a) Consecutive eigenvector displacement",
    "(b) Displacement rate per step",
    "mean over ranks of d(tₙ, tₙ₊₁)",
    "d(tₙ, tₙ₊₁) / (tₙ₊₁ − tₙ)",
    "(a) Gradient alignment",
    "(b) Update alignment",
    "‖Vₖᵀg‖² / ‖g‖²",
    "‖Vₖᵀu‖² / ‖u‖²",
    "λ₁ (thick)",
    "λ₂ … λ₉ (thin)",
    "2/η",
    "2/η, η = 0.05",
    "38/η",
    "38/η, η = 0.003",
    "2(1+β₁)/((1−β₁)η) = 12",
    "threshold = 4",
    "stability threshold (dashed)",
    "stability threshold at the scheduled η (dashed; full-batch reference)",
    "2/η, η = 0.05, full-batch reference",
    "step + 1",
    "step",
    crate::chart::LOSS_X_DESC,
    "x: train loss at the checkpoint (log-interpolated on the logged curve; geometric mean over seeds)",
    "tₙ + 1",
    "tₙ",
    "(diverged)",
    "line: mean over seeds · band: min–max",
    crate::chart::UNTRUSTED_NOTE,
    "no data",
];

/// What one run contributes, each frame reduced to `step` plus value columns.
struct RunData {
    /// `step`, `train_loss`, `test_loss`, `train_acc`, `test_acc`.
    train: DataFrame,
    diverged: bool,
    lr: Option<f64>,
    /// `step`, `rank`, `value`, `trusted`: Hessian eigenvalues (rank ≥ 0).
    hessian: DataFrame,
    /// The Hessian's stability threshold from spectrum.arrow, per step.
    hessian_threshold: Option<Threshold>,
    /// `step`, `value`, `trusted`: λ₁ of the preconditioned operator.
    precond: DataFrame,
    precond_threshold: Option<Threshold>,
    /// `step` = t_w, `displacement`, `per_step`: means over ranks;
    /// `trusted`: every row behind them is; `ln_loss` at t_w.
    displacement: DataFrame,
    /// `step`, `grad_alignment` (the analysis-set gradient), `update_alignment`,
    /// `trusted`.
    alignment: DataFrame,
}

fn sorted_by_step(lf: LazyFrame) -> LazyFrame {
    lf.sort(["step"], SortMultipleOptions::default())
}

/// Loads one run's files for figures 1–3 and 9.
fn load_dynamics(run: &crate::RunInput) -> Result<RunData, ReportError> {
    let crate::data::TrainFrame {
        frame: train,
        diverged,
        lr,
    } = crate::data::load_train(
        run.file("train.arrow")?,
        &["train_loss", "test_loss", "train_acc", "test_acc"],
        is_sgd_family(&run.optimizer),
    )?;

    // metrics/spectrum.arrow
    let path = run.file("metrics/spectrum.arrow")?;
    let sp = Table::open(path)?;
    let (step, op, rank, ev) = (
        sp.col("step", Kind::Int)?,
        sp.col("operator", Kind::Str)?,
        sp.col("rank", Kind::Int)?,
        sp.col("eigenvalue", Kind::Float)?,
    );
    let is_h = op.clone().eq(lit("hessian"));
    let is_p = op.eq(lit("preconditioned"));
    let trusted = sp.trusted()?;
    let hessian = sp.query(|lf| {
        sorted_by_step(
            lf.filter(is_h.clone().and(rank.clone().gt_eq(lit(0i64))))
                .select([
                    step.clone().alias("step"),
                    rank.clone().alias("rank"),
                    ev.clone().alias("value"),
                    trusted.clone().alias("trusted"),
                ]),
        )
    })?;
    let precond = sp.query(|lf| {
        sorted_by_step(
            lf.filter(is_p.clone().and(rank.clone().eq(lit(0i64))))
                .select([
                    step.clone().alias("step"),
                    ev.clone().alias("value"),
                    trusted.clone().alias("trusted"),
                ]),
        )
    })?;
    let (hessian_threshold, precond_threshold) = crate::threshold::load(path)?;

    // metrics/displacement.arrow: consecutive pairs, mean over ranks per t_w
    let path = run.file("metrics/displacement.arrow")?;
    let d = Table::open(path)?;
    let keep = d
        .col("consecutive", Kind::Bool)?
        .and(d.col("operator", Kind::Str)?.eq(lit("hessian")));
    let (t_w, disp, per_step, trusted) = (
        d.col("t_w", Kind::Int)?,
        d.col("matched_displacement", Kind::Float)?,
        d.col("per_step", Kind::Float)?,
        d.trusted()?,
    );
    // Null displacements (vectors that are not isolated) are left out of
    // the mean; a mean over any untrusted row is untrusted.
    let displacement_path = path;
    let displacement = d.query(|lf| {
        sorted_by_step(
            lf.filter(keep)
                .select([
                    t_w.alias("step"),
                    disp.alias("displacement"),
                    per_step.alias("per_step"),
                    trusted.alias("trusted"),
                ])
                .group_by([col("step")])
                .agg([
                    col("displacement").mean(),
                    col("per_step").mean(),
                    col("trusted").all(true),
                ]),
        )
    })?;

    // metrics/alignment.arrow
    let path = run.file("metrics/alignment.arrow")?;
    let a = Table::open(path)?;
    let cols = vec![
        a.col("step", Kind::Int)?.alias("step"),
        a.col("grad_alignment", Kind::Float)?
            .alias("grad_alignment"),
        a.col("update_alignment", Kind::Float)?
            .alias("update_alignment"),
        a.trusted()?.alias("trusted"),
    ];
    let alignment = a.query(|lf| sorted_by_step(lf.select(cols)))?;

    // fig3's loss-axis variant places each t_w at the train loss there.
    let clock = LossClock::from_frame(&train, run.file("train.arrow")?)?;
    let displacement = clock.tag(displacement, "step", displacement_path)?;
    Ok(RunData {
        train,
        diverged,
        lr,
        hessian,
        hessian_threshold,
        precond,
        precond_threshold,
        displacement,
        alignment,
    })
}

struct Loaded {
    groups: Vec<Group>,
    /// The most checkpoints any run has (its eigenvalues' steps).
    checkpoints: usize,
    frames: Vec<RunData>,
    /// Per run: the index of its group.
    group_of: Vec<usize>,
    optimizers: Vec<String>,
}

impl Loaded {
    fn load(input: &ReportInput) -> Result<Loaded, ReportError> {
        let frames = input
            .runs
            .iter()
            .map(load_dynamics)
            .collect::<Result<Vec<_>, _>>()?;
        let summaries: Vec<RunSummary> = frames
            .iter()
            .map(|f| RunSummary {
                diverged: f.diverged,
                lr: f.lr,
            })
            .collect();
        let (groups, group_of) = group_runs(input, &summaries);
        let checkpoints = frames
            .iter()
            .map(|f| distinct_steps(&f.hessian))
            .max()
            .unwrap_or(0);
        Ok(Loaded {
            groups,
            checkpoints,
            frames,
            group_of,
            optimizers: input.runs.iter().map(|r| r.optimizer.clone()).collect(),
        })
    }

    /// One curve per group (in group order) of `column` of the frame `pick`
    /// selects, averaged over seeds; `positive` drops values ≤ 0 (log axes).
    fn curves(
        &self,
        pick: fn(&RunData) -> &DataFrame,
        column: &str,
        positive: bool,
        only: impl Fn(&Group) -> bool,
    ) -> Result<Vec<Curve>, ReportError> {
        let tagged: Vec<Tagged<'_>> = self
            .frames
            .iter()
            .zip(&self.group_of)
            .zip(&self.optimizers)
            .filter(|((_, &g), _)| only(&self.groups[g]))
            .map(|((f, &g), opt)| Tagged {
                optimizer: opt,
                label: &self.groups[g].label,
                frame: pick(f),
            })
            .collect();
        let mut by_key = aggregate(&tagged, column, positive)?;
        Ok(self
            .groups
            .iter()
            .map(|g| {
                by_key
                    .remove(&(g.optimizer.clone(), g.label.clone()))
                    .unwrap_or_default()
            })
            .collect())
    }
}

fn group_entries(groups: &[Group]) -> Vec<Entry> {
    groups
        .iter()
        .map(|g| Entry::line(g.color, LINE_W + 1, false, g.label.clone()))
        .collect()
}

fn lines(groups: &[Group], curves: Vec<Curve>) -> Vec<Line> {
    curves
        .into_iter()
        .zip(groups)
        .map(|(curve, g)| Line::new(curve, g.color, g.several()))
        .collect()
}

fn fig1(d: &Loaded, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    let all = |_: &Group| true;
    let train: fn(&RunData) -> &DataFrame = |f| &f.train;
    let tl = d.curves(train, "train_loss", true, all)?;
    let vl = d.curves(train, "test_loss", true, all)?;
    let ta = d.curves(train, "train_acc", false, all)?;
    let va = d.curves(train, "test_acc", false, all)?;
    let (x, x_desc) = step_axis(tl.iter().chain(&vl).chain(&ta).chain(&va), false);
    let loss_y = y_axis(Scale::Log, curve_values(tl.iter().chain(&vl)), (0.1, 10.0));
    let acc_vals = curve_values(ta.iter().chain(&va));
    let acc_y = match finite_range(acc_vals, false) {
        Some((lo, hi)) if lo >= 0.0 && hi <= 1.0 => {
            let lo = (lo * 10.0).floor() / 10.0;
            let mut a = Axis::fixed(Scale::Linear, lo - 0.02, 1.02);
            a.major.retain(|&v| v <= 1.0 + 1e-9);
            a
        }
        Some((lo, hi)) => Axis::fit(Scale::Linear, lo, hi, 0.05),
        None => unit_axis(),
    };
    let panel = |title: &str, y_desc: &str, y: &Axis, curves: Vec<Curve>| Panel {
        title: title.to_string(),
        x_desc: x_desc.clone(),
        y_desc: y_desc.to_string(),
        x: x.clone(),
        y: y.clone(),
        lines: lines(&d.groups, curves),
        refs: vec![],
        empty_note: "no data",
    };
    let panels = [
        panel("(a) Train loss", "cross-entropy loss", &loss_y, tl),
        panel("(b) Test loss", "cross-entropy loss", &loss_y, vl),
        panel("(c) Train accuracy", "accuracy", &acc_y, ta),
        panel("(d) Test accuracy", "accuracy", &acc_y, va),
    ];
    let mut entries = group_entries(&d.groups);
    entries.extend(Entry::seeds_note(d.groups.iter().any(|g| g.several())));
    write_figure(out_dir, "fig1_loss_accuracy", LOOK, &entries, &panels, 2)
}

fn subscript(n: i64) -> String {
    const SUB: [char; 10] = ['₀', '₁', '₂', '₃', '₄', '₅', '₆', '₇', '₈', '₉'];
    n.to_string()
        .chars()
        .map(|c| SUB[c.to_digit(10).unwrap_or(0) as usize])
        .collect()
}

/// Lighter: towards white, for the thin lines of ranks ≥ 1.
fn lighter(c: RGBColor) -> RGBColor {
    let mix = |v: u8| (f64::from(v) * 0.55 + 255.0 * 0.45).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

fn fig2(d: &Loaded, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    // Highest rank present in any run.
    let mut k = 0i64;
    for f in &d.frames {
        if let Some(m) = f
            .hessian
            .column("rank")
            .ok()
            .and_then(|c| c.i64().ok()?.max())
        {
            k = k.max(m);
        }
    }
    let mut per_rank: Vec<(i64, Vec<Curve>)> = Vec::new();
    for r in 0..=k {
        let frames: Vec<DataFrame> = d
            .frames
            .iter()
            .map(|f| {
                f.hessian
                    .clone()
                    .lazy()
                    .filter(col("rank").eq(lit(r)))
                    .select([col("step"), col("value"), col("trusted")])
                    .collect()
                    .map_err(|e| ReportError::Data {
                        file: PathBuf::from("metrics/spectrum.arrow"),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let tagged: Vec<Tagged<'_>> = frames
            .iter()
            .zip(&d.group_of)
            .zip(&d.optimizers)
            .map(|((frame, &g), opt)| Tagged {
                optimizer: opt,
                label: &d.groups[g].label,
                frame,
            })
            .collect();
        let mut by_key = aggregate(&tagged, "value", false)?;
        let curves = d
            .groups
            .iter()
            .map(|g| {
                by_key
                    .remove(&(g.optimizer.clone(), g.label.clone()))
                    .unwrap_or_default()
            })
            .collect();
        per_rank.push((r, curves));
    }

    // (a) Hessian top-k against the SGD-family runs' thresholds.
    let h_marks: Vec<Mark> = d
        .groups
        .iter()
        .filter(|g| is_sgd_family(&g.optimizer))
        .filter_map(|g| {
            let threshold = d.frames[g.runs[0]]
                .hessian_threshold
                .clone()
                .or_else(|| g.lr.filter(|l| *l > 0.0).map(Threshold::two_over_eta))?;
            Some(Mark::new(threshold, darker(g.color), g.minibatch, g.lr))
        })
        .collect();
    let mut a_lines = Vec::new();
    for (r, curves) in &per_rank {
        for (curve, g) in curves.iter().zip(&d.groups) {
            a_lines.push(Line {
                color: if *r == 0 { g.color } else { lighter(g.color) },
                width: if *r == 0 { LINE_W } else { THIN_W },
                markers: *r == 0,
                ..Line::new(curve.clone(), g.color, *r == 0 && g.several())
            });
        }
    }
    let mut values = curve_values(a_lines.iter().map(|l| &l.curve));
    let (h_refs, h_curves) = crate::threshold::draw(&h_marks);
    values.extend(h_refs.iter().map(|r| r.value));
    values.extend(curve_values(h_curves.iter().map(|l| &l.curve)));
    a_lines.extend(h_curves);
    let scale = auto_scale(&values, 30.0);

    // (b) preconditioned λ₁ of the adaptive runs against 2(1+β₁)/((1−β₁)η).
    let pre = d.curves(
        |f| &f.precond,
        "value",
        false,
        |g| !is_sgd_family(&g.optimizer),
    )?;
    let p_marks: Vec<Mark> = d
        .groups
        .iter()
        .filter_map(|g| {
            let threshold = d.frames[g.runs[0]].precond_threshold.clone()?;
            Some(Mark::new(threshold, darker(g.color), g.minibatch, g.lr))
        })
        .collect();
    let (p_refs, p_curves) = crate::threshold::draw(&p_marks);
    let mut p_values = curve_values(&pre);
    p_values.extend(p_refs.iter().map(|r| r.value));
    p_values.extend(curve_values(p_curves.iter().map(|l| &l.curve)));
    let p_scale = auto_scale(&p_values, 30.0);
    let any_pre = pre.iter().any(|c| !c.is_empty());

    let all_curves: Vec<&Curve> = a_lines.iter().map(|l| &l.curve).chain(&pre).collect();
    let (x, x_desc) = step_axis(all_curves, false);
    let a = Panel {
        title: "(a) Top-k Hessian eigenvalues".into(),
        x_desc: x_desc.clone(),
        y_desc: "eigenvalue λᵢ".into(),
        x: x.clone(),
        y: y_axis(scale, values, (0.1, 10.0)),
        lines: a_lines,
        refs: h_refs,
        empty_note: "no data",
    };
    let b = Panel {
        title: "(b) Preconditioned sharpness (adaptive optimizers)".into(),
        x_desc,
        y_desc: "λ₁ of P⁻¹H".into(),
        x,
        y: y_axis(p_scale, p_values, (0.1, 10.0)),
        lines: if any_pre {
            lines(&d.groups, pre).into_iter().chain(p_curves).collect()
        } else {
            vec![]
        },
        refs: if any_pre { p_refs } else { vec![] },
        empty_note: "no adaptive optimizer",
    };
    let mut entries = group_entries(&d.groups);
    entries.push(Entry::line(INK, LINE_W + 1, false, "λ₁ (thick)".into()));
    if k >= 1 {
        entries.push(Entry::line(
            lighter(INK),
            THIN_W + 1,
            false,
            format!("λ₂ … λ{} (thin)", subscript(k + 1)),
        ));
    }
    entries.push(Entry::line(
        REF_GREY,
        REF_W,
        true,
        crate::threshold::legend(h_marks.iter().chain(&p_marks)),
    ));
    entries.extend(Entry::seeds_note(d.groups.iter().any(|g| g.several())));
    write_figure(out_dir, "fig2_eigenvalues", LOOK, &entries, &[a, b], 2)
}

fn fig3(d: &Loaded, out_dir: &Path, along: XAxis) -> Result<Vec<String>, ReportError> {
    let all = |_: &Group| true;
    let mut disp = d.curves(|f| &f.displacement, "displacement", true, all)?;
    let mut rate = d.curves(|f| &f.displacement, "per_step", true, all)?;
    // The titles are the same: the x axis's title says which variant it is.
    let mut floor = None;
    let ((x, x_desc), name) = match along {
        XAxis::Step => (
            step_axis(disp.iter().chain(&rate), true),
            "fig3_displacement",
        ),
        XAxis::Loss => {
            disp = disp.iter().map(Curve::against_loss).collect();
            rate = rate.iter().map(Curve::against_loss).collect();
            floor = loss_floor(
                disp.iter()
                    .chain(&rate)
                    .flat_map(|c| c.step.iter().copied()),
            );
            disp = disp.iter().map(|c| c.at_least(floor)).collect();
            rate = rate.iter().map(|c| c.at_least(floor)).collect();
            (
                loss_axis(disp.iter().chain(&rate)),
                "fig3_displacement_loss",
            )
        }
    };
    let dy = y_axis(Scale::Log, curve_values(&disp), (1e-3, 1.0));
    let ry = y_axis(Scale::Log, curve_values(&rate), (1e-4, 1.0));
    let panels = [
        Panel {
            title: "(a) Consecutive eigenvector displacement".into(),
            x_desc: x_desc.clone(),
            y_desc: "mean over ranks of d(tₙ, tₙ₊₁)".into(),
            x: x.clone(),
            y: dy,
            lines: lines(&d.groups, disp),
            refs: vec![],
            empty_note: pairs_note(d.checkpoints),
        },
        Panel {
            title: "(b) Displacement rate per step".into(),
            x_desc,
            y_desc: "d(tₙ, tₙ₊₁) / (tₙ₊₁ − tₙ)".into(),
            x,
            y: ry,
            lines: lines(&d.groups, rate),
            refs: vec![],
            empty_note: pairs_note(d.checkpoints),
        },
    ];
    let mut entries = group_entries(&d.groups);
    let several = d.groups.iter().any(|g| g.several());
    entries.extend(Entry::seeds_note(several));
    if along == XAxis::Loss {
        entries.push(Entry::note(loss_note(several)));
        entries.extend(floor.map(|f| Entry::note(loss_cut_note(f))));
    }
    write_figure(out_dir, name, LOOK, &entries, &panels, 2)
}

fn fig9(d: &Loaded, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    let all = |_: &Group| true;
    let grad = d.curves(|f| &f.alignment, "grad_alignment", false, all)?;
    let update = d.curves(|f| &f.alignment, "update_alignment", false, all)?;
    let (x, x_desc) = step_axis(grad.iter().chain(&update), false);
    // Fractions in [0, 1]: a linear unit axis unless they span decades.
    let y = |curves: &[Curve]| {
        let values = curve_values(curves);
        match (auto_scale(&values, 30.0), finite_range(values, true)) {
            (Scale::Log, Some((lo, _))) => Axis::fit(Scale::Log, lo.min(0.5), 1.0, 0.03),
            _ => unit_axis(),
        }
    };
    let (gy, uy) = (y(&grad), y(&update));
    let panels = [
        Panel {
            title: "(a) Gradient alignment (analysis set)".into(),
            x_desc: x_desc.clone(),
            y_desc: "‖Vₖᵀg‖² / ‖g‖²".into(),
            x: x.clone(),
            y: gy,
            lines: lines(&d.groups, grad),
            refs: vec![],
            empty_note: "no data",
        },
        Panel {
            title: "(b) Update alignment".into(),
            x_desc,
            y_desc: "‖Vₖᵀu‖² / ‖u‖²".into(),
            x,
            y: uy,
            lines: lines(&d.groups, update),
            refs: vec![],
            empty_note: "no data",
        },
    ];
    let mut entries = group_entries(&d.groups);
    entries.extend(Entry::seeds_note(d.groups.iter().any(|g| g.several())));
    write_figure(out_dir, "fig9_alignment", LOOK, &entries, &panels, 2)
}

/// Writes the figures into out_dir, returns the relative file names written (PNG and SVG each).
pub fn render(input: &ReportInput, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    if input.runs.is_empty() {
        return Err(ReportError::NoRuns {
            experiment: input.experiment.clone(),
        });
    }
    crate::font::ensure_registered()?;
    let d = Loaded::load(input)?;
    let mut out = fig1(&d, out_dir)?;
    out.extend(fig2(&d, out_dir)?);
    out.extend(fig3(&d, out_dir, XAxis::Step)?);
    out.extend(fig3(&d, out_dir, XAxis::Loss)?);
    out.extend(fig9(&d, out_dir)?);
    Ok(out)
}
