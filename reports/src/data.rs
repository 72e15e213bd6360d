//! Loading the Arrow IPC outputs and aggregating seeds, with polars.
//!
//! Each file is read once, its columns are checked (name and kind) and cast
//! to canonical types, and the rows a panel needs are selected, all as lazy
//! expressions collected per file so that any failure names its file. The
//! per-run frames of every run are then concatenated and reduced with one
//! lazy `group_by([optimizer, label, step])` per panel quantity.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars_io::prelude::*;

use crate::error::ReportError;
use crate::palette::{optimizer_color, sweep_order};
use crate::ReportInput;
use plotters::style::RGBColor;

/// The kind of values a column must hold, and the type it is cast to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// Any integer type, cast to i64.
    Int,
    /// Any numeric type, cast to f64.
    Float,
    /// Utf8 (or categorical), cast to String.
    Str,
    /// Boolean.
    Bool,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Int => "an integer type",
            Kind::Float => "a numeric type",
            Kind::Str => "utf8",
            Kind::Bool => "bool",
        }
    }

    fn accepts(self, dtype: &DataType) -> bool {
        match self {
            Kind::Int => dtype.is_integer(),
            Kind::Float => dtype.is_primitive_numeric(),
            Kind::Str => dtype.is_string() || dtype.is_categorical() || dtype.is_enum(),
            Kind::Bool => dtype.is_bool(),
        }
    }

    fn target(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Str => DataType::String,
            Kind::Bool => DataType::Boolean,
        }
    }
}

/// One Arrow IPC file, read eagerly, with the path kept for error messages.
pub(crate) struct Table {
    path: PathBuf,
    df: DataFrame,
}

impl Table {
    /// Reads an Arrow IPC file (the file format, any compression).
    pub(crate) fn open(path: &Path) -> Result<Table, ReportError> {
        let unreadable = |message: String| ReportError::Unreadable {
            file: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
        // A corrupt file must give an error, never take the caller down.
        let read = std::panic::catch_unwind(AssertUnwindSafe(|| IpcReader::new(file).finish()));
        match read {
            Ok(Ok(df)) => Ok(Table {
                path: path.to_path_buf(),
                df,
            }),
            Ok(Err(e)) => Err(unreadable(e.to_string())),
            Err(_) => Err(unreadable("the Arrow reader panicked on it".to_string())),
        }
    }

    /// An Arrow IPC file's bytes, read from memory (`path` names it in errors).
    pub(crate) fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Table, ReportError> {
        let read = std::panic::catch_unwind(AssertUnwindSafe(|| {
            IpcReader::new(std::io::Cursor::new(bytes)).finish()
        }));
        match read {
            Ok(Ok(df)) => Ok(Table {
                path: path.to_path_buf(),
                df,
            }),
            Ok(Err(e)) => Err(ReportError::Unreadable {
                file: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(_) => Err(ReportError::Unreadable {
                file: path.to_path_buf(),
                message: "the Arrow reader panicked on it".to_string(),
            }),
        }
    }

    pub(crate) fn frame(&self) -> &DataFrame {
        &self.df
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.df.schema().contains(name)
    }

    /// The metrics files' `trusted` column (a null entry is untrusted), or
    /// `true` for a file without it (stores written before it existed).
    pub(crate) fn trusted(&self) -> Result<Expr, ReportError> {
        Ok(if self.has("trusted") {
            self.col("trusted", Kind::Bool)?.fill_null(lit(false))
        } else {
            lit(true)
        })
    }

    /// `operator == "hessian"`: the Hessian's own rows, not the
    /// preconditioned operator's (every row for a file without the column).
    pub(crate) fn hessian(&self) -> Result<Expr, ReportError> {
        Ok(if self.has("operator") {
            self.col("operator", Kind::Str)?.eq(lit("hessian"))
        } else {
            lit(true)
        })
    }

    /// The trust of a pair of `eigen/values.arrow`: `converged` and
    /// `resolvable`, an absent column counting as true and a null entry as
    /// false (the metrics stage's rule).
    pub(crate) fn values_trusted(&self) -> Result<Expr, ReportError> {
        let mut e = lit(true);
        for name in ["converged", "resolvable"] {
            if self.has(name) {
                e = e.and(self.col(name, Kind::Bool)?.fill_null(lit(false)));
            }
        }
        Ok(e)
    }

    /// Checks that `name` exists and holds `kind` values; returns the
    /// expression that yields it cast to the canonical type.
    pub(crate) fn col(&self, name: &str, kind: Kind) -> Result<Expr, ReportError> {
        let schema = self.df.schema();
        let Some(dtype) = schema.get(name) else {
            let present: Vec<String> = schema.iter_names().map(|n| format!("`{n}`")).collect();
            return Err(ReportError::MissingColumn {
                file: self.path.clone(),
                column: name.to_string(),
                present: present.join(", "),
            });
        };
        if !kind.accepts(dtype) {
            return Err(ReportError::ColumnType {
                file: self.path.clone(),
                column: name.to_string(),
                found: dtype.to_string(),
                expected: kind.expected(),
            });
        }
        Ok(col(name).strict_cast(kind.target()))
    }

    /// Runs a lazy query over this table; failures name the file.
    pub(crate) fn query(
        &self,
        build: impl FnOnce(LazyFrame) -> LazyFrame,
    ) -> Result<DataFrame, ReportError> {
        build(self.df.clone().lazy())
            .collect()
            .map_err(|e| ReportError::Data {
                file: self.path.clone(),
                message: e.to_string(),
            })
    }
}

/// A data error naming the file.
pub(crate) fn data_err(file: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Data {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}

/// A column cast to f64; a null entry is NaN.
pub(crate) fn f64s(df: &DataFrame, name: &str, file: &Path) -> Result<Vec<f64>, ReportError> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(|e| data_err(file, e))?;
    Ok(c.f64()
        .map_err(|e| data_err(file, e))?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// A column cast to i64; a null entry is i64::MIN.
pub(crate) fn i64s(df: &DataFrame, name: &str, file: &Path) -> Result<Vec<i64>, ReportError> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::Int64))
        .map_err(|e| data_err(file, e))?;
    Ok(c.i64()
        .map_err(|e| data_err(file, e))?
        .iter()
        .map(|v| v.unwrap_or(i64::MIN))
        .collect())
}

/// A column cast to strings; a null entry is "".
pub(crate) fn strs(df: &DataFrame, name: &str, file: &Path) -> Result<Vec<String>, ReportError> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::String))
        .map_err(|e| data_err(file, e))?;
    Ok(c.str()
        .map_err(|e| data_err(file, e))?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

/// A bool column; a null entry is false.
pub(crate) fn bools(df: &DataFrame, name: &str, file: &Path) -> Result<Vec<bool>, ReportError> {
    let c = df.column(name).map_err(|e| data_err(file, e))?;
    Ok(c.bool()
        .map_err(|e| data_err(file, e))?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect())
}

/// Indices of the points of a loss-axis variant: those with a finite
/// ln(train loss) whose loss is at least `floor` (when given).
pub(crate) fn kept_at_loss(ln_loss: &[f64], len: usize, floor: Option<f64>) -> Vec<usize> {
    (0..len)
        .filter(|&i| {
            ln_loss
                .get(i)
                .is_some_and(|l| l.is_finite() && floor.is_none_or(|f| l.exp() >= f))
        })
        .collect()
}

/// What one run contributes to the figure, each frame already reduced to the
/// rows and columns a panel plots: `step` (i64) and one or two f64 columns.
pub(crate) struct RunFrames {
    /// `step`, `train_loss`, `test_loss`.
    pub loss: DataFrame,
    /// `step`, `value` = λ1 of the Hessian (operator "hessian", rank 0),
    /// `trusted`.
    pub sharpness: DataFrame,
    /// `step`, `value` = P·IPR of v1 (rank 0), `trusted`, `ln_loss`.
    pub localization: DataFrame,
    /// `step` = t_n, `value` = q(t_n, t_{n+1}), `trusted`, `ln_loss`.
    pub overlap: DataFrame,
    /// Any `diverged == true` (or, without that column, any non-finite train loss).
    pub diverged: bool,
    /// The first `lr` of train.arrow, when the column is there.
    pub lr: Option<f64>,
}

/// What the figures take from a run's train.arrow.
pub(crate) struct TrainFrame {
    /// `step` and the `columns` asked for, sorted by step.
    pub frame: DataFrame,
    /// Any `diverged == true` (or, without that column, any non-finite
    /// train loss).
    pub diverged: bool,
    /// The first `lr`, when the column is there.
    pub lr: Option<f64>,
}

/// Reads train.arrow: `step` and the float `columns`, whether the run
/// diverged, and its first `lr` (`need_lr`: the column is required).
pub(crate) fn load_train(
    train: &Path,
    columns: &[&str],
    need_lr: bool,
) -> Result<TrainFrame, ReportError> {
    let t = Table::open(train)?;
    let mut cols = vec![t.col("step", Kind::Int)?.alias("step")];
    for &name in columns {
        cols.push(t.col(name, Kind::Float)?.alias(name));
    }
    let frame = t.query(|lf| {
        lf.select(cols)
            .sort(["step"], SortMultipleOptions::default())
    })?;
    let diverged_expr = if t.has("diverged") {
        t.col("diverged", Kind::Bool)?
            .fill_null(lit(false))
            .any(true)
    } else {
        t.col("train_loss", Kind::Float)?
            .is_finite()
            .not()
            .any(true)
    };
    let mut summary_exprs = vec![diverged_expr.alias("diverged")];
    if need_lr || t.has("lr") {
        summary_exprs.push(t.col("lr", Kind::Float)?.first().alias("lr"));
    }
    let summary = t.query(|lf| lf.select(summary_exprs))?;
    let data_err = |message: String| ReportError::Data {
        file: train.to_path_buf(),
        message,
    };
    let diverged = summary
        .column("diverged")
        .and_then(|c| c.bool().map(|b| b.get(0).unwrap_or(false)))
        .map_err(|e| data_err(e.to_string()))?;
    let lr = match summary.column("lr") {
        Ok(c) => c.f64().map_err(|e| data_err(e.to_string()))?.get(0),
        Err(_) => None,
    };
    Ok(TrainFrame {
        frame,
        diverged,
        lr,
    })
}

/// Loads the four files of one run. `need_lr`: the `lr` column is required.
pub(crate) fn load_run(
    train: &Path,
    values: &Path,
    localization: &Path,
    overlap: &Path,
    need_lr: bool,
) -> Result<RunFrames, ReportError> {
    let TrainFrame {
        frame: loss,
        diverged,
        lr,
    } = load_train(train, &["train_loss", "test_loss"], need_lr)?;

    // eigen/values.arrow
    let v = Table::open(values)?;
    let (step, op, rank, ev) = (
        v.col("step", Kind::Int)?,
        v.col("operator", Kind::Str)?,
        v.col("rank", Kind::Int)?,
        v.col("eigenvalue", Kind::Float)?,
    );
    let v_trusted = v.values_trusted()?;
    let sharpness = v.query(|lf| {
        lf.filter(op.eq(lit("hessian")).and(rank.eq(lit(0i64))))
            .select([
                step.alias("step"),
                ev.alias("value"),
                v_trusted.alias("trusted"),
            ])
            .sort(["step"], SortMultipleOptions::default())
    })?;

    // metrics/localization.arrow
    let (localization_path, overlap_path) = (localization, overlap);
    let l = Table::open(localization)?;
    let (step, rank, pipr) = (
        l.col("step", Kind::Int)?,
        l.col("rank", Kind::Int)?,
        l.col("p_ipr", Kind::Float)?,
    );
    let l_hessian = l.hessian()?;
    let l_trusted = l.trusted()?;
    let localization = l.query(|lf| {
        lf.filter(rank.eq(lit(0i64)).and(l_hessian))
            .select([
                step.alias("step"),
                pipr.alias("value"),
                l_trusted.alias("trusted"),
            ])
            .sort(["step"], SortMultipleOptions::default())
    })?;

    // metrics/overlap.arrow
    let o = Table::open(overlap)?;
    let (t_w, q) = (
        o.col("t_w", Kind::Int)?,
        o.col("subspace_overlap", Kind::Float)?,
    );
    let consecutive = if o.has("consecutive") {
        o.col("consecutive", Kind::Bool)?
    } else {
        // Without the flag: the pair of t_w with the smallest later t.
        let t = o.col("t", Kind::Int)?;
        let next = t
            .clone()
            .filter(t.clone().gt(t_w.clone()))
            .min()
            .over([t_w.clone()])
            .map_err(|e| ReportError::Data {
                file: overlap.to_path_buf(),
                message: e.to_string(),
            })?;
        t.eq(next)
    };
    let o_hessian = o.hessian()?;
    let o_trusted = o.trusted()?;
    let overlap = o.query(|lf| {
        lf.filter(consecutive.and(o_hessian))
            .select([
                t_w.alias("step"),
                q.alias("value"),
                o_trusted.alias("trusted"),
            ])
            .sort(["step"], SortMultipleOptions::default())
    })?;

    // The loss-axis variants place these at the train loss of their step.
    let clock = LossClock::from_frame(&loss, train)?;
    let localization = clock.tag(localization, "step", localization_path)?;
    let overlap = clock.tag(overlap, "step", overlap_path)?;
    Ok(RunFrames {
        loss,
        sharpness,
        localization,
        overlap,
        diverged,
        lr,
    })
}

/// One aggregated curve: the mean over the runs of a group at each step,
/// with the min–max envelope, and whether every value behind a point came
/// from trusted eigenpairs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Curve {
    pub step: Vec<f64>,
    pub mean: Vec<f64>,
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// Per point: every input trusted. Shorter than `step` (e.g. empty):
    /// the missing points count as trusted.
    pub trusted: Vec<bool>,
    /// Per point: the mean over the seeds of ln(train loss) at the step
    /// (see [`LossClock`]); empty when the frames carry no `ln_loss`.
    pub ln_loss: Vec<f64>,
}

impl Curve {
    pub(crate) fn is_empty(&self) -> bool {
        self.step.is_empty()
    }

    /// Whether point i is built on trusted pairs only.
    pub(crate) fn is_trusted(&self, i: usize) -> bool {
        self.trusted.get(i).copied().unwrap_or(true)
    }

    /// The same points placed at the train loss instead of the step: x is
    /// the seeds' geometric-mean train loss at the step. Points without a
    /// loss (outside the logged curve) are dropped; the order stays the
    /// step order, so a loss that rises again draws back on itself.
    pub(crate) fn against_loss(&self) -> Curve {
        let mut c = Curve::default();
        for (i, &l) in self.ln_loss.iter().enumerate() {
            let x = l.exp();
            if !(x.is_finite() && x > 0.0) || i >= self.step.len() {
                continue;
            }
            c.step.push(x);
            c.mean.push(self.mean[i]);
            c.lo.push(self.lo[i]);
            c.hi.push(self.hi[i]);
            c.trusted.push(self.is_trusted(i));
            c.ln_loss.push(l);
        }
        c
    }
}

/// The runs drawn as one curve: the same optimizer and the same label, where
/// a diverged seed's label says so (which keeps it apart from the others).
/// Every figure groups through [`group_runs`], so the legends, colours and
/// seed counts agree across figures.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub optimizer: String,
    pub label: String,
    pub color: RGBColor,
    /// Indices into `input.runs`; the first is the "first seed".
    pub runs: Vec<usize>,
    /// The first run's `lr` from train.arrow, when it has the column.
    pub lr: Option<f64>,
    /// Trained on minibatches: its stability threshold is the full-batch
    /// reference.
    pub minibatch: bool,
}

impl Group {
    /// More than one seed: drawn as a mean with a band.
    pub fn several(&self) -> bool {
        self.runs.len() > 1
    }
}

/// Per run, what grouping needs from its train.arrow.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RunSummary {
    pub diverged: bool,
    pub lr: Option<f64>,
}

/// Groups `input.runs` (one [`RunSummary`] each) in legend order: the
/// palette order of the optimizer, and a sweep by learning rate on a
/// light-to-dark ramp of the optimizer's colour. Returns the groups and,
/// per run, the index of its group.
pub(crate) fn group_runs(input: &ReportInput, runs: &[RunSummary]) -> (Vec<Group>, Vec<usize>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut raw = Vec::with_capacity(runs.len());
    for (i, (run, sum)) in input.runs.iter().zip(runs).enumerate() {
        let label = if sum.diverged {
            format!("{} (diverged)", run.label)
        } else {
            run.label.clone()
        };
        let at = match groups
            .iter()
            .position(|g| g.optimizer == run.optimizer && g.label == label)
        {
            Some(at) => at,
            None => {
                groups.push(Group {
                    optimizer: run.optimizer.clone(),
                    label,
                    color: optimizer_color(&run.optimizer),
                    runs: Vec::new(),
                    lr: sum.lr,
                    minibatch: run.params.get("batch_size").is_some_and(|b| !b.is_null()),
                });
                groups.len() - 1
            }
        };
        groups[at].runs.push(i);
        raw.push(at);
    }
    // The configured learning rate of the group's first run orders a sweep.
    let keys: Vec<(&str, Option<f64>)> = groups
        .iter()
        .map(|g| {
            (
                g.optimizer.as_str(),
                input.runs[g.runs[0]].params["lr"].as_f64(),
            )
        })
        .collect();
    let (order, colors) = sweep_order(&keys);
    for (g, c) in groups.iter_mut().zip(colors) {
        g.color = c;
    }
    let mut new_index = vec![0; groups.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut slots: Vec<Option<Group>> = groups.into_iter().map(Some).collect();
    let groups = order.iter().filter_map(|&i| slots[i].take()).collect();
    (groups, raw.iter().map(|&i| new_index[i]).collect())
}

/// Whether a run diverged: any `diverged == true` in its train.arrow (or,
/// without that column, any non-finite train loss).
pub(crate) fn diverged(train: &Path) -> Result<bool, ReportError> {
    Ok(load_train(train, &[], false)?.diverged)
}

impl Curve {
    /// The points whose x (a loss) is at least `floor`.
    pub(crate) fn at_least(&self, floor: Option<f64>) -> Curve {
        let Some(f) = floor else {
            return self.clone();
        };
        let mut c = Curve::default();
        for i in 0..self.step.len() {
            if self.step[i] >= f {
                c.step.push(self.step[i]);
                c.mean.push(self.mean[i]);
                c.lo.push(self.lo[i]);
                c.hi.push(self.hi[i]);
                if let Some(&t) = self.trusted.get(i) {
                    c.trusted.push(t);
                }
                if let Some(&l) = self.ln_loss.get(i) {
                    c.ln_loss.push(l);
                }
            }
        }
        c
    }
}

/// A run's train loss as a function of step, for figures whose x axis is
/// the loss: ln L interpolated linearly in the step between the logged
/// points of `train.arrow` (exact at logged steps; exponential decay between
/// them is reproduced exactly). Non-finite and non-positive losses (a
/// diverged run) are not points of the curve, and steps outside the logged
/// range have no loss.
#[derive(Clone, Debug, Default)]
pub(crate) struct LossClock {
    step: Vec<f64>,
    ln_loss: Vec<f64>,
}

impl LossClock {
    /// From (step, train loss) pairs in any order.
    pub(crate) fn new(steps: &[f64], loss: &[f64]) -> LossClock {
        let mut pts: Vec<(f64, f64)> = steps
            .iter()
            .zip(loss)
            .filter(|(s, l)| s.is_finite() && l.is_finite() && **l > 0.0)
            .map(|(&s, &l)| (s, l.ln()))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts.dedup_by(|b, a| a.0 == b.0);
        LossClock {
            step: pts.iter().map(|p| p.0).collect(),
            ln_loss: pts.iter().map(|p| p.1).collect(),
        }
    }

    /// From a run's `train.arrow` (`step`, `train_loss`).
    pub(crate) fn load(train: &Path) -> Result<LossClock, ReportError> {
        let t = Table::open(train)?;
        let cols = [
            t.col("step", Kind::Int)?.alias("step"),
            t.col("train_loss", Kind::Float)?.alias("train_loss"),
        ];
        let df = t.query(|lf| lf.select(cols))?;
        LossClock::from_frame(&df, train)
    }

    /// From a frame with `step` (i64) and `train_loss` (f64).
    pub(crate) fn from_frame(df: &DataFrame, file: &Path) -> Result<LossClock, ReportError> {
        let steps = f64s(df, "step", file)?;
        let loss = f64s(df, "train_loss", file)?;
        Ok(LossClock::new(&steps, &loss))
    }

    /// The logged points: steps (ascending) and ln L.
    pub(crate) fn points(&self) -> (&[f64], &[f64]) {
        (&self.step, &self.ln_loss)
    }

    /// ln L at `step`, NaN outside the logged range.
    pub(crate) fn ln_at(&self, step: f64) -> f64 {
        let (s, l) = (&self.step, &self.ln_loss);
        if s.is_empty() || !(s[0]..=s[s.len() - 1]).contains(&step) {
            return f64::NAN;
        }
        let j = s.partition_point(|&x| x < step);
        if s[j] == step {
            return l[j];
        }
        let f = (step - s[j - 1]) / (s[j] - s[j - 1]);
        l[j - 1] + f * (l[j] - l[j - 1])
    }

    /// `df` with an `ln_loss` column: ln L at each row's `step_col`.
    pub(crate) fn tag(
        &self,
        df: DataFrame,
        step_col: &str,
        file: &Path,
    ) -> Result<DataFrame, ReportError> {
        let err = |e: PolarsError| ReportError::Data {
            file: file.to_path_buf(),
            message: e.to_string(),
        };
        let steps = df
            .column(step_col)
            .and_then(|c| c.cast(&DataType::Float64))
            .map_err(err)?;
        let ln: Vec<f64> = steps
            .f64()
            .map_err(err)?
            .iter()
            .map(|v| v.map_or(f64::NAN, |s| self.ln_at(s)))
            .collect();
        let mut df = df;
        df.with_column(Column::new("ln_loss".into(), ln))
            .map_err(err)?;
        Ok(df)
    }
}

/// One run's frame with its group identity.
pub(crate) struct Tagged<'a> {
    pub optimizer: &'a str,
    pub label: &'a str,
    pub frame: &'a DataFrame,
}

/// Averages `column` over the runs of each (optimizer, label) group at each
/// step, with polars lazy expressions. Non-finite values (diverged steps) are
/// dropped, and so are values ≤ 0 when `positive` (for log axes). A frame
/// with a bool `trusted` column marks its rows; a mean over any untrusted
/// row is untrusted (a frame without the column is trusted).
/// Returns the curves keyed by (optimizer, label).
pub(crate) fn aggregate(
    runs: &[Tagged<'_>],
    column: &str,
    positive: bool,
) -> Result<HashMap<(String, String), Curve>, ReportError> {
    let mut out = HashMap::new();
    if runs.is_empty() {
        return Ok(out);
    }
    let frames: Vec<LazyFrame> = runs
        .iter()
        .map(|r| {
            r.frame.clone().lazy().select([
                lit(r.optimizer).alias("optimizer"),
                lit(r.label).alias("label"),
                col("step").cast(DataType::Float64),
                col(column).alias("value"),
                if r.frame.schema().contains("trusted") {
                    col("trusted").fill_null(lit(false))
                } else {
                    lit(true)
                }
                .alias("trusted"),
                if r.frame.schema().contains("ln_loss") {
                    col("ln_loss")
                } else {
                    lit(f64::NAN)
                }
                .alias("ln_loss"),
            ])
        })
        .collect();
    let mut keep = col("value").is_finite();
    if positive {
        keep = keep.and(col("value").gt(lit(0.0)));
    }
    let aggregate_err = |e: PolarsError| ReportError::Data {
        file: PathBuf::from(format!("<{column} of all runs>")),
        message: e.to_string(),
    };
    let df = concat(frames, UnionArgs::default())
        .map_err(aggregate_err)?
        .filter(keep)
        .group_by([col("optimizer"), col("label"), col("step")])
        .agg([
            col("value").mean().alias("mean"),
            col("value").min().alias("lo"),
            col("value").max().alias("hi"),
            col("trusted").all(true).alias("trusted"),
            // NaN when any seed has no loss there: the point is dropped
            // from the loss-axis variant.
            col("ln_loss").mean().alias("ln_loss"),
        ])
        .sort(
            ["optimizer", "label", "step"],
            SortMultipleOptions::default(),
        )
        .collect()
        .map_err(aggregate_err)?;

    let get_f64 = |name: &str| -> Result<Vec<f64>, ReportError> {
        let c = df.column(name).map_err(aggregate_err)?;
        Ok(c.f64()
            .map_err(aggregate_err)?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    };
    let get_str = |name: &str| -> Result<Vec<String>, ReportError> {
        let c = df.column(name).map_err(aggregate_err)?;
        Ok(c.str()
            .map_err(aggregate_err)?
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let (opt, label) = (get_str("optimizer")?, get_str("label")?);
    let (step, mean, lo, hi, ln_loss) = (
        get_f64("step")?,
        get_f64("mean")?,
        get_f64("lo")?,
        get_f64("hi")?,
        get_f64("ln_loss")?,
    );
    let any_loss = runs.iter().any(|r| r.frame.schema().contains("ln_loss"));
    // Trust is recorded for quantities built on eigenpairs only (a loss
    // curve has none), so that "no point is trusted" can be told.
    let any_trust = runs.iter().any(|r| r.frame.schema().contains("trusted"));
    let trusted: Vec<bool> = df
        .column("trusted")
        .map_err(aggregate_err)?
        .bool()
        .map_err(aggregate_err)?
        .iter()
        .map(|v| v.unwrap_or(true))
        .collect();
    for i in 0..step.len() {
        let c: &mut Curve = out.entry((opt[i].clone(), label[i].clone())).or_default();
        c.step.push(step[i]);
        c.mean.push(mean[i]);
        c.lo.push(lo[i]);
        c.hi.push(hi[i]);
        if any_trust {
            c.trusted.push(trusted[i]);
        }
        if any_loss {
            c.ln_loss.push(ln_loss[i]);
        }
    }
    Ok(out)
}

/// Per input column, the largest |z| over the train rows of `data.arrow`.
pub(crate) fn max_abs_z(path: &Path) -> Result<Vec<f64>, ReportError> {
    let ds = stages::dataset::read(path).map_err(|e| data_err(path, e))?;
    let mut m = vec![0f64; ds.dim];
    for (i, &train) in ds.is_train.iter().enumerate() {
        if train {
            for (j, v) in m.iter_mut().enumerate() {
                *v = v.max(f64::from(ds.features[i * ds.dim + j]).abs());
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exponential decay L = 2 e^{−t/50}, logged every 10 steps: ln L is
    /// linear in t, so the interpolation is exact between logged steps.
    #[test]
    fn the_loss_clock_interpolates_ln_loss_linearly_in_step() {
        let steps: Vec<f64> = (0..=10).map(|i| f64::from(i) * 10.0).collect();
        let loss: Vec<f64> = steps.iter().map(|t| 2.0 * (-t / 50.0).exp()).collect();
        let clock = LossClock::new(&steps, &loss);
        for t in [0.0, 3.0, 17.5, 55.0, 99.0, 100.0] {
            let want = 2f64.ln() - t / 50.0;
            assert!((clock.ln_at(t) - want).abs() < 1e-12, "t = {t}");
        }
        // Outside the logged range there is no loss.
        assert!(clock.ln_at(-1.0).is_nan() && clock.ln_at(100.5).is_nan());
        // A diverged tail (NaN, inf) is not part of the curve.
        let mut bad = loss.clone();
        bad[9] = f64::NAN;
        bad[10] = f64::INFINITY;
        let clock = LossClock::new(&steps, &bad);
        assert!((clock.ln_at(80.0) - (2f64.ln() - 1.6)).abs() < 1e-12);
        assert!(clock.ln_at(85.0).is_nan());
        // Between two logged points of a non-exponential curve: the
        // geometric interpolation, √(L₀ L₁) at the midpoint.
        let clock = LossClock::new(&[0.0, 10.0], &[1.0, 0.01]);
        assert!((clock.ln_at(5.0).exp() - 0.1).abs() < 1e-12);
    }

    /// A loss axis spans at most six decades below the largest loss: a run
    /// falling to 1e-20 does not squeeze the others into a sliver.
    #[test]
    fn a_loss_axis_is_cut_six_decades_down() {
        use crate::chart::loss_floor;
        assert_eq!(loss_floor([2.0, 0.1, 1e-3]), None);
        let f = loss_floor([2.0, 1e-4, 1e-20]).unwrap();
        assert!((f - 2e-6).abs() < 1e-18);
        let c = Curve {
            step: vec![2.0, 1e-3, 1e-9],
            mean: vec![1.0, 2.0, 3.0],
            lo: vec![1.0, 2.0, 3.0],
            hi: vec![1.0, 2.0, 3.0],
            trusted: vec![true, false, true],
            ln_loss: vec![],
        };
        let cut = c.at_least(Some(f));
        assert_eq!(
            (cut.step, cut.mean, cut.trusted),
            (vec![2.0, 1e-3], vec![1.0, 2.0], vec![true, false])
        );
    }

    /// Two seeds at one step with losses 0.5 and 0.02: the loss-axis point
    /// sits at their geometric mean, 0.1; a step one seed has no loss for
    /// is dropped from the variant but kept on the step axis.
    #[test]
    fn the_loss_axis_point_is_the_seeds_geometric_mean_loss() {
        let a = df!("step" => [0i64, 10], "value" => [1.0, 2.0],
            "ln_loss" => [0.5f64.ln(), 0.3f64.ln()])
        .unwrap();
        let b = df!("step" => [0i64, 10], "value" => [3.0, 4.0],
            "ln_loss" => [0.02f64.ln(), f64::NAN])
        .unwrap();
        let runs = [
            Tagged {
                optimizer: "sgd",
                label: "SGD",
                frame: &a,
            },
            Tagged {
                optimizer: "sgd",
                label: "SGD",
                frame: &b,
            },
        ];
        let curves = aggregate(&runs, "value", false).unwrap();
        let c = &curves[&("sgd".to_string(), "SGD".to_string())];
        assert_eq!(c.step, [0.0, 10.0]);
        assert_eq!(c.mean, [2.0, 3.0]);
        let l = c.against_loss();
        assert_eq!(l.step.len(), 1);
        assert!((l.step[0] - 0.1).abs() < 1e-12, "{:?}", l.step);
        assert_eq!((l.mean[0], l.lo[0], l.hi[0]), (2.0, 1.0, 3.0));
    }
}
