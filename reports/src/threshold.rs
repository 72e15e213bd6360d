//! Stability thresholds as `metrics/spectrum.arrow` holds them, and how the
//! figures draw them: exactly the stored values, so that a line and the
//! file can never disagree.
//!
//! - A threshold that is the same at every checkpoint (a constant learning
//!   rate) is a labelled horizontal line.
//! - One that follows a learning-rate schedule is a dashed curve through the
//!   stored value at each checkpoint.
//! - A minibatch run's threshold is that of full-batch gradient descent at
//!   its learning rate (edge-of-stability theory is a full-batch statement):
//!   its label says "full-batch reference".

use std::path::Path;

use plotters::style::RGBColor;
use polars::prelude::*;

use crate::chart::{Line, RefLine};
use crate::data::{Curve, Kind, Table};
use crate::ReportError;

/// Width of a scheduled threshold's dashed curve.
const CURVE_W: u32 = 3;

/// One operator's threshold at each checkpoint (finite, positive values
/// only), in step order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Threshold {
    pub steps: Vec<f64>,
    pub values: Vec<f64>,
}

impl Threshold {
    /// The value, when it is the same at every checkpoint.
    pub(crate) fn constant(&self) -> Option<f64> {
        let first = *self.values.first()?;
        self.values
            .iter()
            .all(|v| (v / first - 1.0).abs() < 1e-12)
            .then_some(first)
    }

    /// Gradient descent's 2/η, for a run whose spectrum.arrow holds none.
    pub(crate) fn two_over_eta(lr: f64) -> Threshold {
        Threshold {
            steps: vec![0.0],
            values: vec![2.0 / lr],
        }
    }

    fn curve(&self) -> Curve {
        Curve {
            step: self.steps.clone(),
            mean: self.values.clone(),
            lo: self.values.clone(),
            hi: self.values.clone(),
            ..Curve::default()
        }
    }
}

/// The Hessian's and the preconditioned operator's thresholds in one
/// spectrum.arrow (None where it holds no finite, positive value).
pub(crate) fn load(path: &Path) -> Result<(Option<Threshold>, Option<Threshold>), ReportError> {
    let sp = Table::open(path)?;
    let (step, op, thr) = (
        sp.col("step", Kind::Int)?,
        sp.col("operator", Kind::Str)?,
        sp.col("threshold", Kind::Float)?,
    );
    let df = sp.query(|lf| {
        lf.filter(thr.clone().is_finite().and(thr.clone().gt(lit(0.0))))
            .select([op.alias("op"), step.alias("step"), thr.alias("thr")])
            .group_by([col("op"), col("step")])
            .agg([col("thr").first()])
            .sort(["op", "step"], SortMultipleOptions::default())
    })?;
    let bad = |e: PolarsError| ReportError::Data {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    let ops = df.column("op").map_err(bad)?.str().map_err(bad)?.clone();
    let steps = df
        .column("step")
        .map_err(bad)?
        .cast(&DataType::Float64)
        .map_err(bad)?;
    let steps = steps.f64().map_err(bad)?.clone();
    let thr = df.column("thr").map_err(bad)?.f64().map_err(bad)?.clone();
    let (mut h, mut p) = (Threshold::default(), Threshold::default());
    for i in 0..df.height() {
        let (Some(o), Some(s), Some(v)) = (ops.get(i), steps.get(i), thr.get(i)) else {
            continue;
        };
        let t = match o {
            "hessian" => &mut h,
            "preconditioned" => &mut p,
            _ => continue,
        };
        t.steps.push(s);
        t.values.push(v);
    }
    let some = |t: Threshold| (!t.values.is_empty()).then_some(t);
    Ok((some(h), some(p)))
}

/// One group's threshold to draw.
pub(crate) struct Mark {
    pub threshold: Threshold,
    pub color: RGBColor,
    pub minibatch: bool,
    /// The labels of a constant threshold: alone in its panel, and beside
    /// others (e.g. with η).
    pub short: String,
    pub long: String,
}

impl Mark {
    /// A group's threshold in its colour, labelled with [`label`] when it
    /// is constant.
    pub(crate) fn new(
        threshold: Threshold,
        color: RGBColor,
        minibatch: bool,
        lr: Option<f64>,
    ) -> Mark {
        let (short, long) = threshold
            .constant()
            .map(|v| label(v, lr))
            .unwrap_or_default();
        Mark {
            threshold,
            color,
            minibatch,
            short,
            long,
        }
    }
}

/// Horizontal lines for the constant thresholds (one per distinct value,
/// labelled), dashed curves for the scheduled ones.
/// When every threshold drawn is a minibatch run's, the legend alone says
/// "full-batch reference"; only in a mix does each such line say it too.
pub(crate) fn draw(marks: &[Mark]) -> (Vec<RefLine>, Vec<Line>) {
    let mut found: Vec<(f64, String, String, RGBColor)> = Vec::new();
    let mut curves = Vec::new();
    let mixed = marks.iter().any(|m| m.minibatch) && marks.iter().any(|m| !m.minibatch);
    for m in marks {
        match m.threshold.constant() {
            Some(v) => {
                if !found.iter().any(|f| (f.0 / v - 1.0).abs() < 1e-9) {
                    let note = if m.minibatch && mixed {
                        ", full-batch reference"
                    } else {
                        ""
                    };
                    found.push((
                        v,
                        format!("{}{note}", m.short),
                        format!("{}{note}", m.long),
                        m.color,
                    ));
                }
            }
            None => curves.push(Line {
                width: CURVE_W,
                dashed: true,
                markers: false,
                ..Line::new(m.threshold.curve(), m.color, false)
            }),
        }
    }
    let several = found.len() > 1;
    let refs = found
        .into_iter()
        .map(|(value, short, long, color)| RefLine {
            value,
            color,
            dashed: true,
            label: if several { long } else { short },
        })
        .collect();
    (refs, curves)
}

/// A constant threshold's labels (alone in its panel, beside others): `2/η`
/// or `38/η` (Adam's 2(1+β₁)/((1−β₁)η) at β₁ = 0.9) where the value is that
/// multiple of 1/η, else the value.
pub(crate) fn label(value: f64, lr: Option<f64>) -> (String, String) {
    let eta = lr.filter(|l| *l > 0.0 && l.is_finite());
    for k in [2.0, 38.0] {
        if let Some(l) = eta {
            if (value * l / k - 1.0).abs() < 1e-6 {
                let short = format!("{k}/η");
                let long = format!("{short}, η = {}", crate::axis::fmt_plain(l));
                return (short, long);
            }
        }
    }
    let text = format!("threshold = {}", crate::axis::fmt_plain(value));
    (text.clone(), text)
}

/// The legend's text for the thresholds drawn: dashed, and how to read a
/// curve and a minibatch run's line.
pub(crate) fn legend<'a>(marks: impl IntoIterator<Item = &'a Mark>) -> String {
    let (mut scheduled, mut minibatch) = (false, false);
    for m in marks {
        scheduled |= m.threshold.constant().is_none();
        minibatch |= m.minibatch;
    }
    match (scheduled, minibatch) {
        (false, false) => "stability threshold (dashed)".into(),
        (true, false) => "stability threshold at the scheduled η (dashed)".into(),
        (false, true) => "stability threshold (dashed; full-batch reference)".into(),
        (true, true) => {
            "stability threshold at the scheduled η (dashed; full-batch reference)".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: &[f64]) -> Threshold {
        Threshold {
            steps: (0..values.len()).map(|i| i as f64 * 10.0).collect(),
            values: values.to_vec(),
        }
    }

    fn mark(values: &[f64], minibatch: bool) -> Mark {
        Mark {
            threshold: t(values),
            color: RGBColor(0, 0, 0),
            minibatch,
            short: "2/η".into(),
            long: "2/η, η = 0.1".into(),
        }
    }

    #[test]
    fn constant_thresholds_are_lines_and_scheduled_ones_curves() {
        assert_eq!(t(&[20.0, 20.0, 20.0]).constant(), Some(20.0));
        assert_eq!(t(&[20.0, 25.0, 40.0]).constant(), None);
        let marks = vec![
            mark(&[20.0, 20.0], false),
            mark(&[20.0, 20.0], false),
            mark(&[20.0, 25.0, 40.0], false),
        ];
        assert_eq!(
            legend(&marks),
            "stability threshold at the scheduled η (dashed)"
        );
        let (refs, curves) = draw(&marks);
        assert_eq!(refs.len(), 1, "one line per distinct constant value");
        assert_eq!(refs[0].value, 20.0);
        assert_eq!(refs[0].label, "2/η");
        assert_eq!(curves.len(), 1);
        // The curve passes through exactly the stored values.
        assert_eq!(curves[0].curve.mean, vec![20.0, 25.0, 40.0]);
        assert!(curves[0].dashed);
    }

    #[test]
    fn a_minibatch_threshold_is_labelled_the_full_batch_reference() {
        // A mix: the minibatch run's line says so itself.
        let marks = vec![mark(&[20.0, 20.0], true), mark(&[10.0], false)];
        assert_eq!(
            legend(&marks),
            "stability threshold (dashed; full-batch reference)"
        );
        let (refs, _) = draw(&marks);
        assert_eq!(refs[0].label, "2/η, η = 0.1, full-batch reference");
        assert_eq!(refs[1].label, "2/η, η = 0.1");
        // All minibatch: the legend says it once.
        let marks = vec![mark(&[20.0, 20.0], true), mark(&[10.0], true)];
        assert_eq!(
            legend(&marks),
            "stability threshold (dashed; full-batch reference)"
        );
        let (refs, _) = draw(&marks);
        assert_eq!(refs[0].label, "2/η, η = 0.1");
    }

    #[test]
    fn labels_name_the_multiple_of_one_over_eta() {
        assert_eq!(label(760.0, Some(5e-3)).0, "threshold = 760");
        assert_eq!(label(40.0, Some(0.05)).0, "2/η");
        assert_eq!(label(38_000.0, Some(0.001)).1, "38/η, η = 0.001");
        assert_eq!(label(6666.666666666667, Some(3e-4)).1, "2/η, η = 0.0003");
        assert_eq!(label(12.0, None).0, "threshold = 12");
    }
}
