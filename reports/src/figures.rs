//! The optimizer-comparison figure: four panels and a shared legend, drawn
//! once on a bitmap (PNG) and once as SVG by the same code.

use std::path::Path;

use crate::axis::{Axis, Scale};
use crate::chart::{
    auto_scale, curve_values, distinct_steps, loss_axis, loss_cut_note, loss_floor, loss_note,
    pairs_note, step_axis, unit_axis, write_figure, y_axis, Line, Look, Panel, RefLine, INK,
    LINE_W, REF_GREY, REF_W,
};
use crate::data::{aggregate, group_runs, load_run, Curve, Group, RunFrames, RunSummary, Tagged};
use crate::error::ReportError;
use crate::legend::Entry;
use crate::palette::{darker, is_sgd_family};
use crate::threshold::{Mark, Threshold};
use crate::ReportInput;

/// A larger title than the other figures', and the empty note above the
/// middle, where a lone reference line does not run.
const LOOK: Look = Look { empty_at: 0.72 };

/// Every fixed string the figure draws (the font test checks its glyphs).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const TEXTS: &[&str] = &[
    "(a) Loss",
    "(b) Sharpness: top Hessian eigenvalue λ₁",
    "(c) Localization of the top eigenvector v₁",
    "(d) Consecutive subspace overlap",
    "cross-entropy loss",
    "λ₁",
    "P·IPR(v₁)",
    "q(tₙ, tₙ₊₁)",
    "step + 1",
    "step",
    "tₙ + 1",
    "tₙ",
    "2/η",
    "2/η, η = 0.05",
    "random vector (3)",
    "train",
    "test",
    "line: mean over seeds · band: min–max",
    crate::chart::UNTRUSTED_NOTE,
    "no data",
    "10⁻¹²³⁴⁵⁶⁷⁸⁹ 2×10⁰ −1",
];

/// Everything the figure draws, aggregated.
pub(crate) struct FigureData {
    groups: Vec<Group>,
    /// Per group: the Hessian's stability threshold from spectrum.arrow, per
    /// step (None: no spectrum file, or no threshold for this optimizer).
    thresholds: Vec<Option<Threshold>>,
    /// The most checkpoints any run has (its eigenvalues' steps).
    checkpoints: usize,
    train_loss: Vec<Curve>,
    test_loss: Vec<Curve>,
    sharpness: Vec<Curve>,
    localization: Vec<Curve>,
    overlap: Vec<Curve>,
}

impl FigureData {
    /// Loads every run and aggregates the seeds of each group.
    pub(crate) fn load(input: &ReportInput) -> Result<FigureData, ReportError> {
        let mut frames: Vec<RunFrames> = Vec::with_capacity(input.runs.len());
        for run in &input.runs {
            frames.push(load_run(
                &run.train,
                &run.values,
                &run.localization,
                &run.overlap,
                is_sgd_family(&run.optimizer),
            )?);
        }

        let summaries: Vec<RunSummary> = frames
            .iter()
            .map(|f| RunSummary {
                diverged: f.diverged,
                lr: f.lr,
            })
            .collect();
        let (sorted, group_of) = group_runs(input, &summaries);
        // The Hessian's stability threshold from the first run's spectrum.arrow.
        let thresholds = sorted
            .iter()
            .map(
                |g| match input.runs[g.runs[0]].files.get("metrics/spectrum.arrow") {
                    Some(p) => Ok(crate::threshold::load(p)?.0),
                    None => Ok(None),
                },
            )
            .collect::<Result<Vec<_>, ReportError>>()?;

        let tag = |pick: fn(&RunFrames) -> &polars::prelude::DataFrame| -> Vec<Tagged<'_>> {
            input
                .runs
                .iter()
                .zip(&frames)
                .zip(&group_of)
                .map(|((run, f), &g)| Tagged {
                    optimizer: &run.optimizer,
                    label: &sorted[g].label,
                    frame: pick(f),
                })
                .collect()
        };
        let in_order = |mut curves: std::collections::HashMap<(String, String), Curve>| {
            sorted
                .iter()
                .map(|g| {
                    curves
                        .remove(&(g.optimizer.clone(), g.label.clone()))
                        .unwrap_or_default()
                })
                .collect::<Vec<Curve>>()
        };
        let loss = tag(|f| &f.loss);
        let train_loss = in_order(aggregate(&loss, "train_loss", true)?);
        let test_loss = in_order(aggregate(&loss, "test_loss", true)?);
        let sharpness = in_order(aggregate(&tag(|f| &f.sharpness), "value", false)?);
        let localization = in_order(aggregate(&tag(|f| &f.localization), "value", true)?);
        let overlap = in_order(aggregate(&tag(|f| &f.overlap), "value", false)?);
        let checkpoints = frames
            .iter()
            .map(|f| distinct_steps(&f.sharpness))
            .max()
            .unwrap_or(0);
        Ok(FigureData {
            groups: sorted,
            thresholds,
            checkpoints,
            train_loss,
            test_loss,
            sharpness,
            localization,
            overlap,
        })
    }
}

impl FigureData {
    /// The SGD-family groups' thresholds, for panel (b).
    fn threshold_marks(&self) -> Vec<Mark> {
        self.groups
            .iter()
            .zip(&self.thresholds)
            .filter(|(g, _)| is_sgd_family(&g.optimizer))
            .filter_map(|(g, threshold)| {
                let lr = g.lr?;
                let threshold = threshold
                    .clone()
                    .unwrap_or_else(|| Threshold::two_over_eta(lr));
                Some(Mark::new(threshold, darker(g.color), g.minibatch, Some(lr)))
            })
            .collect()
    }

    fn panels(&self) -> Vec<Panel> {
        let all = || {
            [
                &self.train_loss,
                &self.test_loss,
                &self.sharpness,
                &self.localization,
                &self.overlap,
            ]
            .into_iter()
            .flatten()
        };
        let (x, x_step) = step_axis(all(), false);
        let (_, x_tn) = step_axis(all(), true);
        let several = |i: usize| self.groups[i].several();
        let lines = |curves: &[Curve]| -> Vec<Line> {
            curves
                .iter()
                .enumerate()
                .map(|(i, c)| Line::new(c.clone(), self.groups[i].color, several(i)))
                .collect()
        };

        // (a) loss
        let mut a_lines = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            for (curve, dashed) in [(&self.train_loss[i], false), (&self.test_loss[i], true)] {
                a_lines.push(Line {
                    dashed,
                    markers: false,
                    ..Line::new(curve.clone(), g.color, several(i))
                });
            }
        }
        let a = Panel {
            title: "(a) Loss".into(),
            x_desc: x_step.clone(),
            y_desc: "cross-entropy loss".into(),
            x: x.clone(),
            y: y_axis(
                Scale::Log,
                curve_values(self.train_loss.iter().chain(&self.test_loss)),
                (0.1, 10.0),
            ),
            lines: a_lines,
            refs: vec![],
            empty_note: "no data",
        };

        // (b) sharpness against the stability threshold of the SGD-family
        // runs: the values spectrum.arrow holds (2/η for plain GD, (2+2β)/η
        // with heavy-ball momentum, …, a curve under a schedule), 2/η where a
        // run has no spectrum file.
        let marks = self.threshold_marks();
        let (refs, threshold_curves) = crate::threshold::draw(&marks);
        let mut values = curve_values(&self.sharpness);
        values.extend(refs.iter().map(|r| r.value));
        values.extend(curve_values(threshold_curves.iter().map(|l| &l.curve)));
        let b = Panel {
            title: "(b) Sharpness: top Hessian eigenvalue λ₁".into(),
            x_desc: x_step.clone(),
            y_desc: "λ₁".into(),
            x: x.clone(),
            y: y_axis(auto_scale(&values, 30.0), values, (0.0, 1.0)),
            lines: lines(&self.sharpness)
                .into_iter()
                .chain(threshold_curves)
                .collect(),
            refs,
            empty_note: "no data",
        };

        let c = localization_panel("(c)", x.clone(), x_step, lines(&self.localization));
        let d = overlap_panel("(d)", x, x_tn, lines(&self.overlap), self.checkpoints);
        vec![a, b, c, d]
    }
}

/// v₁'s P·IPR against a random vector's 3 (the overview and its loss-axis
/// variant), on the x axis given.
fn localization_panel(letter: &str, x: Axis, x_desc: String, lines: Vec<Line>) -> Panel {
    let mut values = curve_values(lines.iter().map(|l| &l.curve));
    values.push(3.0);
    Panel {
        title: format!("{letter} Localization of the top eigenvector v₁"),
        x_desc,
        y_desc: "P·IPR(v₁)".into(),
        x,
        y: y_axis(Scale::Log, values, (1.0, 10.0)),
        lines,
        refs: vec![RefLine {
            value: 3.0,
            color: REF_GREY,
            dashed: false,
            label: "random vector (3)".to_string(),
        }],
        empty_note: "no data",
    }
}

/// The consecutive subspace overlap, in [0, 1], on the x axis given.
fn overlap_panel(
    letter: &str,
    x: Axis,
    x_desc: String,
    lines: Vec<Line>,
    checkpoints: usize,
) -> Panel {
    Panel {
        title: format!("{letter} Consecutive subspace overlap"),
        x_desc,
        y_desc: "q(tₙ, tₙ₊₁)".into(),
        x,
        y: unit_axis(),
        lines,
        refs: vec![],
        empty_note: pairs_note(checkpoints),
    }
}

fn legend_entries(fig: &FigureData) -> Vec<Entry> {
    let mut entries: Vec<Entry> = fig
        .groups
        .iter()
        .map(|g| Entry::line(g.color, LINE_W + 1, false, g.label.clone()))
        .collect();
    for (text, dashed) in [("train", false), ("test", true)] {
        entries.push(Entry::line(INK, LINE_W + 1, dashed, text.to_string()));
    }
    let marks = fig.threshold_marks();
    if !marks.is_empty() {
        entries.push(Entry::line(
            REF_GREY,
            REF_W,
            true,
            crate::threshold::legend(&marks),
        ));
    }
    entries.extend(Entry::seeds_note(fig.groups.iter().any(|g| g.several())));
    entries
}

/// The overview's localization and overlap panels against the train loss,
/// so that optimizers are compared at the same point of training:
/// `optimizer_comparison_loss`.
pub(crate) fn optimizer_comparison_loss(
    fig: &FigureData,
    out_dir: &Path,
) -> Result<Vec<String>, ReportError> {
    let on_loss =
        |curves: &[Curve]| -> Vec<Curve> { curves.iter().map(Curve::against_loss).collect() };
    let (loc, ovl) = (on_loss(&fig.localization), on_loss(&fig.overlap));
    let floor = loss_floor(loc.iter().chain(&ovl).flat_map(|c| c.step.iter().copied()));
    let cut = |cs: Vec<Curve>| -> Vec<Curve> { cs.iter().map(|c| c.at_least(floor)).collect() };
    let (loc, ovl) = (cut(loc), cut(ovl));
    let (x, x_desc) = loss_axis(loc.iter().chain(&ovl));
    let several = |i: usize| fig.groups[i].several();
    let lines = |curves: Vec<Curve>| -> Vec<Line> {
        curves
            .into_iter()
            .enumerate()
            .map(|(i, c)| Line::new(c, fig.groups[i].color, several(i)))
            .collect()
    };
    let c = localization_panel("(a)", x.clone(), x_desc.clone(), lines(loc));
    let d = overlap_panel("(b)", x, x_desc, lines(ovl), fig.checkpoints);
    let mut entries: Vec<Entry> = fig
        .groups
        .iter()
        .map(|g| Entry::line(g.color, LINE_W + 1, false, g.label.clone()))
        .collect();
    let any_several = fig.groups.iter().any(|g| g.several());
    entries.extend(Entry::seeds_note(any_several));
    entries.push(Entry::note(loss_note(any_several)));
    entries.extend(floor.map(|f| Entry::note(loss_cut_note(f))));
    write_figure(
        out_dir,
        "optimizer_comparison_loss",
        LOOK,
        &entries,
        &[c, d],
        2,
    )
}

/// Renders `optimizer_comparison.png` and `.svg` into `out_dir`.
pub(crate) fn optimizer_comparison(
    fig: &FigureData,
    out_dir: &Path,
) -> Result<Vec<String>, ReportError> {
    write_figure(
        out_dir,
        "optimizer_comparison",
        LOOK,
        &legend_entries(fig),
        &fig.panels(),
        2,
    )
}
