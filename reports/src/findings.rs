//! The findings stage: the study's three claims tested on the runs' own
//! metrics, at matched steps and at matched train loss, with per-seed
//! values, sample statistics and the decision rule beside every verdict.
//!
//! Outputs (see docs/science.md, "Findings"):
//! - `findings.arrow`: one row per setting × measure × window (a step window,
//!   a loss level, or a phase statistic): the per-seed values, n, mean, sd
//!   (ddof = 1), the 95% t interval, and the null's quantiles where the
//!   measure has a null;
//! - `findings_tests.arrow`: one row per test behind a verdict: the claim,
//!   the setting and its reference, the statistic, Welch's t, its degrees of
//!   freedom and two-sided p, the decision rule and the verdict;
//! - `findings.md`: the claims, each test and its verdict, and the tables.
//!
//! Only trusted pairs enter (a row the metrics flag untrusted is left out).

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;
use polars_io::prelude::*;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::aging;
use crate::data::{data_err, f64s, i64s, strs, Kind, LossClock, Table};
use crate::{ReportError, ReportInput, RunInput};

// The findings' code version lives in the stage table
// (experiment/src/stage.rs): bump it there when the findings can change.

/// Matched progress: the train loss as a fraction of its value at step 0.
pub const LOSS_LEVELS: [f64; 4] = [0.5, 0.1, 1e-2, 1e-3];
/// The "falling" phase ends where the loss first reaches this fraction of
/// its initial value (two decades down).
pub const FALLING_UNTIL: f64 = 1e-2;
/// Step windows, as fractions of the run's last step.
pub const EARLY_BEFORE: f64 = 0.2;
pub const LATE_FROM: f64 = 0.6;
/// The significance level of every test, two-sided.
pub const ALPHA: f64 = 0.05;
/// The loosest `null.tol` at which the null band was measured to stay put
/// (README, "The null model's tolerance": at 784-512-512-10 and at
/// quick.toml's size, 1e-3 moved the band's mean P·IPR by at most 0.1% and
/// 1e-2 by 4–6%). A null computed at a looser tolerance is flagged wherever
/// its quantiles are used.
pub const NULL_TOL_MEASURED: f64 = 1e-3;

// ------------------------------------------------------------ statistics

/// Sample statistics of a set of per-seed values.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); NaN for n < 2.
    pub sd: f64,
    /// The 95% t interval mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n; NaN for n < 2.
    pub ci: (f64, f64),
}

/// The two-sided quantile t₁₋α/₂ of Student's t with `df` degrees of freedom.
pub fn t_quantile(df: f64, alpha: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => t.inverse_cdf(1.0 - alpha / 2.0),
        Err(_) => f64::NAN,
    }
}

pub fn summarize(values: &[f64]) -> Summary {
    let n = values.len();
    let mean = if n == 0 {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / n as f64
    };
    if n < 2 {
        return Summary {
            n,
            mean,
            sd: f64::NAN,
            ci: (f64::NAN, f64::NAN),
        };
    }
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let half = t_quantile((n - 1) as f64, ALPHA) * sd / (n as f64).sqrt();
    Summary {
        n,
        mean,
        sd,
        ci: (mean - half, mean + half),
    }
}

/// Welch's unequal-variance t test of mean(a) − mean(b): (t, df, two-sided p).
/// NaN when either side has fewer than two values or both have no spread.
pub fn welch(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let (sa, sb) = (summarize(a), summarize(b));
    if sa.n < 2 || sb.n < 2 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let (va, vb) = (sa.sd.powi(2) / sa.n as f64, sb.sd.powi(2) / sb.n as f64);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let t = (sa.mean - sb.mean) / se2.sqrt();
    let df = se2.powi(2) / (va.powi(2) / (sa.n - 1) as f64 + vb.powi(2) / (sb.n - 1) as f64);
    let p = match StudentsT::new(0.0, 1.0, df) {
        Ok(d) => 2.0 * (1.0 - d.cdf(t.abs())),
        Err(_) => f64::NAN,
    };
    (t, df, p)
}

/// The q-quantile of `values` with linear interpolation between order
/// statistics (NumPy's default, "type 7").
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// D of two independent uniformly random unit vectors in P dimensions:
/// 1 − E|⟨u, v⟩| with E|⟨u, v⟩| = Γ(P/2) / (√π Γ((P+1)/2)) (the first
/// coordinate of a uniform point on S^{P−1} has density ∝ (1 − x²)^{(P−3)/2};
/// ≈ √(2/(πP)) for large P). The displacement a vector has when its new
/// direction is unrelated to its old one.
pub fn random_displacement(p: f64) -> f64 {
    use statrs::function::gamma::ln_gamma;
    if p < 1.0 {
        return f64::NAN;
    }
    1.0 - (ln_gamma(p / 2.0) - ln_gamma((p + 1.0) / 2.0)).exp() / std::f64::consts::PI.sqrt()
}

/// Spearman's rank correlation (ties get their average rank; Pearson's r
/// of the ranks). NaN with fewer than two values or no spread.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0 + 1.0;
            for &k in &idx[i..=j] {
                r[k] = avg;
            }
            i = j + 1;
        }
        r
    }
    let n = a.len().min(b.len());
    if n < 2 {
        return f64::NAN;
    }
    let (ra, rb) = (ranks(&a[..n]), ranks(&b[..n]));
    let (ma, mb) = (
        ra.iter().sum::<f64>() / n as f64,
        rb.iter().sum::<f64>() / n as f64,
    );
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va <= 0.0 || vb <= 0.0 {
        return f64::NAN;
    }
    cov / (va * vb).sqrt()
}

/// How many of the columns with the largest max |z| the input-mass share
/// is taken over.
pub const TOP_Z_COLUMNS: usize = 8;

/// E[P·IPR] of the layer-mass-matched null: a random direction with mass
/// m_l on block l of n_l parameters, spread uniformly on that block's
/// sphere. With E[Σᵢ uᵢ⁴] = 3/(n + 2) for u uniform on S^{n−1},
/// E[P·IPR] = 3P Σ_l m_l² / (n_l + 2).
pub fn layer_matched_p_ipr(blocks: &[(f64, f64)]) -> f64 {
    let p: f64 = blocks.iter().map(|b| b.1).sum();
    let m: f64 = blocks.iter().map(|b| b.0).sum();
    if m <= 0.0 || p <= 0.0 {
        return f64::NAN;
    }
    3.0 * p
        * blocks
            .iter()
            .map(|&(mass, n)| (mass / m).powi(2) / (n + 2.0))
            .sum::<f64>()
}

// ------------------------------------------------------------ per run

/// A quantity at checkpoints: (step, value), trusted rows only, by step.
type Points = Vec<(f64, f64)>;

/// What the findings read from one run.
struct RunSeries {
    run_id: String,
    clock: LossClock,
    /// Train loss at step 0 (the first logged row).
    l0: f64,
    last_step: f64,
    /// Per consecutive pair (t_w, t): the per-step displacement, mean over
    /// the isolated ranks, at t_w (trusted pairs only).
    disp: Vec<(f64, f64, f64)>,
    /// Every trusted pair (t_w, t): D, mean over the isolated ranks.
    pairs: BTreeMap<(i64, i64), f64>,
    /// The fixed lag of `displacement_lag` (the linear grid's step).
    lag: i64,
    /// P·IPR per rank (0 = v₁).
    p_ipr: BTreeMap<i64, Points>,
    /// frac50 and frac90 of v₁.
    frac50: Points,
    frac90: Points,
    /// Every trusted pair (t_w, t > t_w): the top-k subspace overlap q.
    overlap: BTreeMap<(i64, i64), f64>,
    /// E[P·IPR] of the layer-mass-matched null for v₁, per step.
    layer_null: Points,
    /// The architecture null's P·IPR per rank over its replicas.
    null_p_ipr: BTreeMap<i64, Vec<f64>>,
    /// The null's v₁ per replica: frac50, frac90 and the mass on the first
    /// layer's weights.
    null_frac50: Vec<f64>,
    null_frac90: Vec<f64>,
    null_input_mass: Vec<f64>,
    /// Between every pair of null replicas (a, b): the mean matched D.
    null_pairs: Vec<((i64, i64), f64)>,
    /// Why the null's quantiles cannot be taken at face value, from
    /// `null_band.arrow` ([`null_caveat`]); None when they can.
    null_caveat: Option<String>,
    /// Classes C (the output layer's width): v₁ … v_{C−1} are the outliers.
    classes: usize,
    /// Parameters P.
    params: f64,
    /// v₁'s mass per input column (first-layer weights from it), per step;
    /// empty for a store without metrics/input_mass.arrow.
    input_mass: BTreeMap<i64, Vec<f64>>,
    /// Per input column: the largest |z| over the train rows (data.arrow).
    max_z: Vec<f64>,
}

/// Why a null band cannot be taken at face value: computed at a `null.tol`
/// looser than [`NULL_TOL_MEASURED`], or with replicas left out because a
/// pair of theirs was not converged or not resolvable. None when neither
/// (or for a store whose band predates the `tol` and `replicas` columns).
fn null_caveat(path: &Path) -> Result<Option<String>, ReportError> {
    let t = Table::open(path)?;
    if !(t.has("replicas") && t.has("untrusted")) {
        return Ok(None);
    }
    let Some(tol) = null_tol(&t, path)? else {
        return Ok(None);
    };
    let sel = [
        t.col("rank", Kind::Int)?.alias("rank"),
        t.col("replicas", Kind::Int)?.alias("replicas"),
        t.col("untrusted", Kind::Int)?.alias("untrusted"),
    ];
    let df = t.query(|lf| lf.select(sel))?;
    let rank = i64s(&df, "rank", path)?;
    let (n, out) = (i64s(&df, "replicas", path)?, i64s(&df, "untrusted", path)?);
    let mut why = Vec::new();
    if tol > NULL_TOL_MEASURED {
        why.push(format!(
            "the null was computed at null.tol = {}, looser than {}, the loosest measured to leave its band unchanged; a loose tolerance can stop before the top k are found (README, \"The null model's tolerance\")",
            g3(tol),
            g3(NULL_TOL_MEASURED)
        ));
    }
    let left: Vec<String> = (0..rank.len())
        .filter(|&i| out[i] > 0)
        .map(|i| format!("v{}: {} of {}", rank[i] + 1, out[i], n[i] + out[i]))
        .collect();
    if !left.is_empty() {
        why.push(format!(
            "null replicas whose pair was not converged or not resolvable are left out of its quantiles ({})",
            left.join(", ")
        ));
    }
    Ok((!why.is_empty()).then(|| why.join("; ")))
}

/// The tolerance a null band was computed at (`null_band.arrow`, read as
/// `t`, its `tol`); None for a store whose band predates the column.
pub(crate) fn null_tol(t: &Table, band: &Path) -> Result<Option<f64>, ReportError> {
    if !t.has("tol") {
        return Ok(None);
    }
    let sel = [t.col("tol", Kind::Float)?.alias("tol")];
    let df = t.query(|lf| lf.select(sel))?;
    Ok(Some(
        f64s(&df, "tol", band)?.into_iter().fold(f64::NAN, f64::max),
    ))
}

/// The Hessian's trusted rows of a metrics file, with `cols`.
fn hessian_trusted(path: &Path, cols: &[(&str, Kind)]) -> Result<DataFrame, ReportError> {
    let t = Table::open(path)?;
    let mut sel = Vec::new();
    for (c, k) in cols {
        sel.push(t.col(c, *k)?.alias(*c));
    }
    let keep = t.trusted()?.and(t.hessian()?);
    t.query(|lf| lf.filter(keep).select(sel))
}

/// The mean of `v` per pair (t_w, t), finite means only, summed in the
/// file's row order: the same bits on every run (a parallel group-by sums
/// in an order that varies, and findings.arrow with it).
fn mean_per_pair(tw: &[i64], t: &[i64], v: &[f64]) -> BTreeMap<(i64, i64), f64> {
    let mut acc: BTreeMap<(i64, i64), (f64, usize)> = BTreeMap::new();
    for i in 0..v.len() {
        let e = acc.entry((tw[i], t[i])).or_default();
        e.0 += v[i];
        e.1 += 1;
    }
    acc.into_iter()
        .map(|(k, (sum, n))| (k, sum / n as f64))
        .filter(|(_, m)| m.is_finite())
        .collect()
}

/// Reads one run; `max_z` caches each dataset file's columns' largest |z|
/// (every run of an experiment usually shares one).
fn load_series(
    run: &RunInput,
    max_z: &mut BTreeMap<std::path::PathBuf, Vec<f64>>,
) -> Result<RunSeries, ReportError> {
    // train.arrow: the loss clock.
    let path = run.file("train.arrow")?;
    let df = crate::data::load_train(path, &["train_loss"], false)?.frame;
    let clock = LossClock::from_frame(&df, path)?;
    let steps = f64s(&df, "step", path)?;
    let losses = f64s(&df, "train_loss", path)?;
    let l0 = losses.first().copied().unwrap_or(f64::NAN);
    let last_step = steps.last().copied().unwrap_or(0.0);

    // Displacement: consecutive pairs, mean over isolated ranks per t_w.
    let path = run.file("metrics/displacement.arrow")?;
    let t = Table::open(path)?;
    let keep = t
        .trusted()?
        .and(t.col("consecutive", Kind::Bool)?)
        .and(t.col("per_step", Kind::Float)?.is_not_null())
        .and(t.hessian()?);
    let sel = [
        t.col("t_w", Kind::Int)?.alias("t_w"),
        t.col("t", Kind::Int)?.alias("t"),
        t.col("per_step", Kind::Float)?.alias("per_step"),
    ];
    let df = t.query(|lf| lf.filter(keep).select(sel))?;
    let disp: Vec<(f64, f64, f64)> = mean_per_pair(
        &i64s(&df, "t_w", path)?,
        &i64s(&df, "t", path)?,
        &f64s(&df, "per_step", path)?,
    )
    .into_iter()
    .map(|((a, b), v)| (a as f64, b as f64, v))
    .collect();
    // Every trusted pair's matched displacement, mean over isolated ranks.
    let keep = t
        .trusted()?
        .and(t.col("matched_displacement", Kind::Float)?.is_not_null())
        .and(t.hessian()?);
    let sel = [
        t.col("t_w", Kind::Int)?.alias("t_w"),
        t.col("t", Kind::Int)?.alias("t"),
        t.col("matched_displacement", Kind::Float)?.alias("d"),
    ];
    let df = t.query(|lf| lf.filter(keep).select(sel))?;
    let pairs = mean_per_pair(
        &i64s(&df, "t_w", path)?,
        &i64s(&df, "t", path)?,
        &f64s(&df, "d", path)?,
    );
    // The lag: the most common gap between consecutive checkpoints (the
    // linear grid's step), the smaller on a tie.
    let mut gaps: BTreeMap<i64, usize> = BTreeMap::new();
    for d in &disp {
        *gaps.entry((d.1 - d.0) as i64).or_default() += 1;
    }
    let lag = gaps
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map_or(0, |g| *g.0);

    // Localization.
    let path = run.file("metrics/localization.arrow")?;
    let df = hessian_trusted(
        path,
        &[
            ("step", Kind::Int),
            ("rank", Kind::Int),
            ("p_ipr", Kind::Float),
            ("frac50", Kind::Float),
            ("frac90", Kind::Float),
        ],
    )?;
    let (st, rk, pi, f5, f9) = (
        f64s(&df, "step", path)?,
        i64s(&df, "rank", path)?,
        f64s(&df, "p_ipr", path)?,
        f64s(&df, "frac50", path)?,
        f64s(&df, "frac90", path)?,
    );
    let mut p_ipr: BTreeMap<i64, Points> = BTreeMap::new();
    let (mut frac50, mut frac90) = (Points::new(), Points::new());
    for i in 0..st.len() {
        if rk[i] >= 0 && pi[i].is_finite() {
            p_ipr.entry(rk[i]).or_default().push((st[i], pi[i]));
        }
        if rk[i] == 0 && f5[i].is_finite() {
            frac50.push((st[i], f5[i]));
        }
        if rk[i] == 0 && f9[i].is_finite() {
            frac90.push((st[i], f9[i]));
        }
    }
    for s in p_ipr.values_mut() {
        s.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    frac50.sort_by(|a, b| a.0.total_cmp(&b.0));
    frac90.sort_by(|a, b| a.0.total_cmp(&b.0));

    // The two-time overlap q of every trusted pair.
    let path = run.file("metrics/overlap.arrow")?;
    let df = hessian_trusted(
        path,
        &[
            ("t_w", Kind::Int),
            ("t", Kind::Int),
            ("subspace_overlap", Kind::Float),
        ],
    )?;
    let (tw, tt, q) = (
        i64s(&df, "t_w", path)?,
        i64s(&df, "t", path)?,
        f64s(&df, "subspace_overlap", path)?,
    );
    let overlap: BTreeMap<(i64, i64), f64> = (0..tw.len())
        .filter(|&i| tt[i] > tw[i] && q[i].is_finite())
        .map(|i| ((tw[i], tt[i]), q[i]))
        .collect();

    // Layer mass of v₁ per weight/bias block, and the blocks' sizes.
    let pm_path = run.file("param_map.arrow")?;
    let pm = Table::open(pm_path)?;
    // One read: each block's layer, kind, size and first dimension.
    let sel = [
        pm.col("layer", Kind::Int)?.alias("layer"),
        pm.col("kind", Kind::Str)?.alias("kind"),
        pm.col("numel", Kind::Int)?.alias("numel"),
        col("shape")
            .list()
            .first()
            .cast(DataType::Int64)
            .alias("rows"),
    ];
    let pmd = pm.query(|lf| lf.select(sel))?;
    let (pl, pk, pn, rows) = (
        i64s(&pmd, "layer", pm_path)?,
        strs(&pmd, "kind", pm_path)?,
        f64s(&pmd, "numel", pm_path)?,
        i64s(&pmd, "rows", pm_path)?,
    );
    let numel: BTreeMap<(i64, String), f64> = (0..pl.len())
        .map(|i| ((pl[i], pk[i].clone()), pn[i]))
        .collect();
    let params = pn.iter().sum::<f64>();
    // The output layer's width: the first dimension of the last weight block.
    let classes = (0..pk.len())
        .rev()
        .find(|&i| pk[i] == "weight")
        .map_or(0, |i| rows[i].max(0) as usize);
    let path = run.file("metrics/layer_mass.arrow")?;
    let t = Table::open(path)?;
    let keep = t
        .trusted()?
        .and(t.col("rank", Kind::Int)?.eq(lit(0i64)))
        .and(t.col("block", Kind::Str)?.neq(lit("all")))
        .and(t.hessian()?);
    let sel = [
        t.col("step", Kind::Int)?.alias("step"),
        t.col("layer", Kind::Int)?.alias("layer"),
        t.col("block", Kind::Str)?.alias("block"),
        t.col("mass", Kind::Float)?.alias("mass"),
    ];
    let df = t.query(|lf| lf.filter(keep).select(sel))?;
    let (ls, ll, lb, lm) = (
        f64s(&df, "step", path)?,
        i64s(&df, "layer", path)?,
        strs(&df, "block", path)?,
        f64s(&df, "mass", path)?,
    );
    let mut blocks: BTreeMap<i64, Vec<(f64, f64)>> = BTreeMap::new();
    for i in 0..ls.len() {
        if let Some(&n) = numel.get(&(ll[i], lb[i].clone())) {
            blocks.entry(ls[i] as i64).or_default().push((lm[i], n));
        }
    }
    let layer_null: Points = blocks
        .iter()
        .map(|(s, b)| (*s as f64, layer_matched_p_ipr(b)))
        .filter(|(_, v)| v.is_finite())
        .collect();

    // The architecture null, per replica.
    let mut null_p_ipr: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    let (mut null_frac50, mut null_frac90) = (Vec::new(), Vec::new());
    if let Some(path) = run.files.get("metrics/null_localization.arrow") {
        let df = hessian_trusted(
            path,
            &[
                ("rank", Kind::Int),
                ("p_ipr", Kind::Float),
                ("frac50", Kind::Float),
                ("frac90", Kind::Float),
            ],
        )?;
        let (rk, pi) = (i64s(&df, "rank", path)?, f64s(&df, "p_ipr", path)?);
        let (f5, f9) = (f64s(&df, "frac50", path)?, f64s(&df, "frac90", path)?);
        for i in 0..rk.len() {
            if pi[i].is_finite() {
                null_p_ipr.entry(rk[i]).or_default().push(pi[i]);
            }
            if rk[i] == 0 {
                null_frac50.extend(Some(f5[i]).filter(|v| v.is_finite()));
                null_frac90.extend(Some(f9[i]).filter(|v| v.is_finite()));
            }
        }
    }
    let mut null_input_mass = Vec::new();
    if let Some(path) = run.files.get("metrics/null_layer_mass.arrow") {
        let t = Table::open(path)?;
        let keep = t
            .col("rank", Kind::Int)?
            .eq(lit(0i64))
            .and(t.col("layer", Kind::Int)?.eq(lit(0i64)))
            .and(t.col("block", Kind::Str)?.eq(lit("weight")))
            .and(t.hessian()?)
            .and(t.trusted()?);
        let sel = [t.col("mass", Kind::Float)?.alias("mass")];
        let df = t.query(|lf| lf.filter(keep).select(sel))?;
        null_input_mass = f64s(&df, "mass", path)?
            .into_iter()
            .filter(|v| v.is_finite())
            .collect();
    }
    let mut null_pairs = Vec::new();
    if let Some(path) = run.files.get("metrics/null_overlap.arrow") {
        let t = Table::open(path)?;
        // Stores from before METRICS 8 have no matched displacement.
        if t.has("matched_displacement") {
            let sel = [
                t.col("replica_a", Kind::Int)?.alias("a"),
                t.col("replica_b", Kind::Int)?.alias("b"),
                t.col("matched_displacement", Kind::Float)?.alias("d"),
            ];
            let keep = t.trusted()?;
            let df = t.query(|lf| lf.filter(keep).select(sel))?;
            let (a, b, d) = (
                i64s(&df, "a", path)?,
                i64s(&df, "b", path)?,
                f64s(&df, "d", path)?,
            );
            null_pairs = (0..a.len())
                .filter(|&i| d[i].is_finite())
                .map(|i| ((a[i], b[i]), d[i]))
                .collect();
        }
    }

    let null_caveat = match run.files.get("metrics/null_band.arrow") {
        Some(path) => null_caveat(path)?,
        None => None,
    };

    // v₁'s mass per input column, and the columns' largest |z|.
    let mut input_mass: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    if let Some(path) = run.files.get("metrics/input_mass.arrow") {
        let t = Table::open(path)?;
        let keep = t
            .trusted()?
            .and(t.col("rank", Kind::Int)?.eq(lit(0i64)))
            .and(t.hessian()?);
        let sel = [
            t.col("step", Kind::Int)?.alias("step"),
            t.col("column", Kind::Int)?.alias("column"),
            t.col("mass", Kind::Float)?.alias("mass"),
        ];
        let df = t.query(|lf| {
            lf.filter(keep)
                .select(sel)
                .sort(["step", "column"], SortMultipleOptions::default())
        })?;
        let (s, c, m) = (
            i64s(&df, "step", path)?,
            i64s(&df, "column", path)?,
            f64s(&df, "mass", path)?,
        );
        for i in 0..s.len() {
            let e = input_mass.entry(s[i]).or_default();
            let j = c[i].max(0) as usize;
            if e.len() <= j {
                e.resize(j + 1, 0.0);
            }
            e[j] = m[i];
        }
    }
    let max_z = match run.files.get("data.arrow") {
        Some(path) => match max_z.get(path) {
            Some(z) => z.clone(),
            None => {
                let z = crate::data::max_abs_z(path)?;
                max_z.insert(path.clone(), z.clone());
                z
            }
        },
        None => Vec::new(),
    };

    Ok(RunSeries {
        run_id: run.run_id.clone(),
        clock,
        l0,
        last_step,
        disp,
        pairs,
        lag,
        p_ipr,
        frac50,
        frac90,
        overlap,
        layer_null,
        null_p_ipr,
        null_frac50,
        null_frac90,
        null_input_mass,
        null_pairs,
        null_caveat,
        classes,
        params,
        input_mass,
        max_z,
    })
}

impl RunSeries {
    /// The first step where the train loss reaches `level`·L₀ (ln L
    /// interpolated linearly in step between logged rows); None if never.
    fn step_at_level(&self, level: f64) -> Option<f64> {
        let target = (level * self.l0).ln();
        if !target.is_finite() {
            return None;
        }
        let (s, l) = self.clock.points();
        if s.is_empty() {
            return None;
        }
        if l[0] <= target {
            return Some(s[0]);
        }
        for i in 1..s.len() {
            if l[i] <= target {
                let f = (l[i - 1] - target) / (l[i - 1] - l[i]);
                return Some(s[i - 1] + f * (s[i] - s[i - 1]));
            }
        }
        None
    }

    /// The per-step displacement of the consecutive pair whose interval
    /// [t_w, t) holds `step`.
    fn disp_at(&self, step: f64) -> Option<f64> {
        self.disp
            .iter()
            .find(|(a, b, _)| *a <= step && step < *b)
            .map(|d| d.2)
    }

    /// D(t_w, t) at about the fixed lag from the last checkpoint t_w ≤
    /// `step`: the pair whose t is nearest t_w + lag, within half a lag.
    /// Unlike the per-step rate, it compares like with like where the
    /// checkpoint spacing differs (log-spaced early, linear late).
    fn lag_at(&self, step: f64) -> Option<f64> {
        if self.lag <= 0 {
            return None;
        }
        let t_w = self
            .pairs
            .keys()
            .map(|k| k.0)
            .filter(|&w| w as f64 <= step)
            .max()?;
        self.pairs
            .range((t_w, i64::MIN)..=(t_w, i64::MAX))
            .map(|((_, t), d)| ((t - t_w - self.lag).abs(), *d))
            .filter(|(off, _)| 2 * off <= self.lag)
            .min_by_key(|(off, _)| *off)
            .map(|(_, d)| d)
    }

    /// The mean fixed-lag D over checkpoints t_w in [lo, hi).
    fn lag_window(&self, lo: f64, hi: f64) -> Option<f64> {
        let mut w: Vec<i64> = self.pairs.keys().map(|k| k.0).collect();
        w.dedup();
        let v: Vec<f64> = w
            .into_iter()
            .filter(|&t| t as f64 >= lo && (t as f64) < hi)
            .filter_map(|t| self.lag_at(t as f64))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// The mean per-step displacement over pairs whose t_w is in [lo, hi).
    fn disp_window(&self, lo: f64, hi: f64) -> Option<f64> {
        let v: Vec<f64> = self
            .disp
            .iter()
            .filter(|(a, _, _)| *a >= lo && *a < hi)
            .map(|d| d.2)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// The value of a checkpoint series at `step`, linearly interpolated
/// between the trusted checkpoints around it.
fn series_at(s: &Points, step: f64) -> Option<f64> {
    let j = s.iter().position(|p| p.0 >= step)?;
    if s[j].0 == step || j == 0 {
        return (s[j].0 == step).then_some(s[j].1);
    }
    let (a, b) = (s[j - 1], s[j]);
    Some(a.1 + (step - a.0) / (b.0 - a.0) * (b.1 - a.1))
}

/// The mean of a series over checkpoints in [lo, hi).
fn series_window(s: &Points, lo: f64, hi: f64) -> Option<f64> {
    let v: Vec<f64> = s
        .iter()
        .filter(|p| p.0 >= lo && p.0 < hi)
        .map(|p| p.1)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

// ------------------------------------------------------------ the table

/// One row of findings.arrow.
#[derive(Clone, Debug)]
pub struct Row {
    pub setting: String,
    pub optimizer: String,
    pub measure: String,
    pub window: String,
    pub seeds: Vec<String>,
    pub values: Vec<f64>,
    pub summary: Summary,
    /// For peaks: the mean step and the geometric-mean loss where they are.
    pub at_step: f64,
    pub at_loss: f64,
    /// The architecture null's 5/50/95% quantiles of the same measure.
    pub null_q: (f64, f64, f64),
    /// Why those quantiles are flagged (docs/science.md, "Findings"); None
    /// when they are not, or the row has none.
    pub null_caveat: Option<String>,
}

/// One row of findings_tests.arrow: a test behind a verdict.
#[derive(Clone, Debug)]
pub struct Test {
    pub claim: String,
    pub setting: String,
    pub reference: String,
    pub measure: String,
    pub window: String,
    pub statistic: String,
    pub t: f64,
    pub df: f64,
    pub p: f64,
    pub rule: String,
    pub verdict: Verdict,
    /// What the verdict rests on, in words (the aging regime); may be empty.
    pub detail: String,
    /// Why the verdict is flagged: it rests on a null that cannot be taken
    /// at face value ([`Row::null_caveat`]). None when it is not.
    pub caveat: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    DoesNotHold,
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A setting (label) and its runs.
struct Setting {
    label: String,
    optimizer: String,
    runs: Vec<RunSeries>,
}

/// Welch's rule for "a is above b": holds when mean(a) > mean(b) at
/// p < α, does not hold when mean(a) < mean(b) at p < α, else inconclusive.
fn above(a: &[f64], b: &[f64]) -> (f64, f64, f64, Verdict) {
    let (t, df, p) = welch(a, b);
    let v = if !p.is_finite() {
        Verdict::Inconclusive
    } else if p < ALPHA && t > 0.0 {
        Verdict::Holds
    } else if p < ALPHA && t < 0.0 {
        Verdict::DoesNotHold
    } else {
        Verdict::Inconclusive
    };
    (t, df, p, v)
}

fn level_name(level: f64) -> String {
    format!("L/L0={}", crate::axis::fmt_plain(level))
}

/// Everything the stage computes.
pub struct Findings {
    pub rows: Vec<Row>,
    pub tests: Vec<Test>,
}

impl Findings {
    /// Reads every run and computes the table and the tests.
    pub fn compute(input: &ReportInput) -> Result<Findings, ReportError> {
        let mut settings: Vec<Setting> = Vec::new();
        let mut max_z = BTreeMap::new();
        for run in &input.runs {
            let s = load_series(run, &mut max_z)?;
            match settings.iter_mut().find(|g| g.label == run.label) {
                Some(g) => g.runs.push(s),
                None => settings.push(Setting {
                    label: run.label.clone(),
                    // The optimizer's name (the label may be anything).
                    optimizer: run.params["optimizer"]
                        .as_str()
                        .unwrap_or(&run.optimizer)
                        .to_string(),
                    runs: vec![s],
                }),
            }
        }
        let mut rows = Vec::new();
        for g in &settings {
            // The null's caveat goes with every row that carries its
            // quantiles, from the run the quantiles come from.
            let caveat = g
                .runs
                .iter()
                .find(|r| !r.null_p_ipr.is_empty() || r.null_caveat.is_some())
                .and_then(|r| r.null_caveat.clone());
            rows.extend(setting_rows(g).into_iter().map(|mut r| {
                let uses_null = [r.null_q.0, r.null_q.1, r.null_q.2]
                    .iter()
                    .any(|q| q.is_finite())
                    || r.measure == "displacement_null_pairs"
                    || r.measure == "peak_p_ipr_v1";
                if uses_null {
                    r.null_caveat = caveat.clone();
                }
                r
            }));
        }
        let tests = claims(&settings, &rows);
        Ok(Findings { rows, tests })
    }

    fn row(&self, setting: &str, measure: &str, window: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.setting == setting && r.measure == measure && r.window == window)
    }
}

/// One row from per-seed values (None: the seed has no value there).
fn row(g: &Setting, measure: &str, window: &str, per_seed: Vec<Option<f64>>) -> Row {
    let mut seeds = Vec::new();
    let mut values = Vec::new();
    for (r, v) in g.runs.iter().zip(per_seed) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            seeds.push(r.run_id.clone());
            values.push(v);
        }
    }
    let summary = summarize(&values);
    Row {
        setting: g.label.clone(),
        optimizer: g.optimizer.clone(),
        measure: measure.to_string(),
        window: window.to_string(),
        seeds,
        values,
        summary,
        at_step: f64::NAN,
        at_loss: f64::NAN,
        null_q: (f64::NAN, f64::NAN, f64::NAN),
        null_caveat: None,
    }
}

/// The architecture null's quantiles of P·IPR at `rank`, from the first of
/// the setting's runs that has the null (one null per architecture: every
/// run of a setting reads the same file).
fn null_quantiles(g: &Setting, rank: i64) -> (f64, f64, f64) {
    let v: Vec<f64> = g
        .runs
        .iter()
        .find_map(|r| r.null_p_ipr.get(&rank).cloned())
        .unwrap_or_default();
    (quantile(&v, 0.05), quantile(&v, 0.5), quantile(&v, 0.95))
}

/// The 5/50/95% quantiles of the architecture null's values `pick`, from
/// the first of the setting's runs that has them.
fn null_q_of(g: &Setting, pick: fn(&RunSeries) -> &Vec<f64>) -> (f64, f64, f64) {
    let v: &[f64] = g
        .runs
        .iter()
        .map(pick)
        .find(|v| !v.is_empty())
        .map_or(&[], |v| v);
    (quantile(v, 0.05), quantile(v, 0.5), quantile(v, 0.95))
}

/// A step window: its name and its [lo, hi) bounds in a run.
type Window = (&'static str, fn(&RunSeries) -> (f64, f64));

fn setting_rows(g: &Setting) -> Vec<Row> {
    let mut out = Vec::new();
    let windows: [Window; 3] = [
        ("early", |r| (0.0, EARLY_BEFORE * r.last_step)),
        ("late", |r| (LATE_FROM * r.last_step, f64::INFINITY)),
        // A run whose loss never falls two decades has no falling window
        // (an empty one): it is left out, not given its whole run.
        ("falling", |r| {
            (
                0.0,
                r.step_at_level(FALLING_UNTIL).unwrap_or(f64::NEG_INFINITY),
            )
        }),
    ];
    let null_v1 = null_quantiles(g, 0);
    let null_f50 = null_q_of(g, |r| &r.null_frac50);
    let null_f90 = null_q_of(g, |r| &r.null_frac90);
    let null_input = null_q_of(g, |r| &r.null_input_mass);
    // Matched steps (windows) and the falling phase.
    for (name, bounds) in windows {
        out.push(row(
            g,
            "displacement_lag",
            name,
            g.runs
                .iter()
                .map(|r| {
                    let (lo, hi) = bounds(r);
                    r.lag_window(lo, hi)
                })
                .collect(),
        ));
        out.push(row(
            g,
            "displacement_rate",
            name,
            g.runs
                .iter()
                .map(|r| {
                    let (lo, hi) = bounds(r);
                    r.disp_window(lo, hi)
                })
                .collect(),
        ));
        let mut p = row(
            g,
            "p_ipr_v1",
            name,
            g.runs
                .iter()
                .map(|r| {
                    let (lo, hi) = bounds(r);
                    series_window(r.p_ipr.get(&0)?, lo, hi)
                })
                .collect(),
        );
        p.null_q = null_v1;
        out.push(p);
        for (measure, pick, null) in [
            (
                "frac50_v1",
                (|r| &r.frac50) as fn(&RunSeries) -> &Points,
                null_f50,
            ),
            ("frac90_v1", |r| &r.frac90, null_f90),
        ] {
            let mut f = row(
                g,
                measure,
                name,
                g.runs
                    .iter()
                    .map(|r| {
                        let (lo, hi) = bounds(r);
                        series_window(pick(r), lo, hi)
                    })
                    .collect(),
            );
            f.null_q = null;
            out.push(f);
        }
        out.push(row(
            g,
            "p_ipr_v1_over_layer_null",
            name,
            g.runs
                .iter()
                .map(|r| {
                    let (lo, hi) = bounds(r);
                    let ratio: Points = r
                        .p_ipr
                        .get(&0)?
                        .iter()
                        .filter_map(|&(s, v)| Some((s, v / series_at(&r.layer_null, s)?)))
                        .collect();
                    series_window(&ratio, lo, hi)
                })
                .collect(),
        ));
    }
    // v₁'s mass on the input layer, and how it sits against the columns'
    // largest |z| (item 5 of issue 16: standardized near-constant pixels).
    if g.runs
        .iter()
        .any(|r| !r.input_mass.is_empty() && !r.max_z.is_empty())
    {
        type InputStat = fn(&[f64], &[f64]) -> Option<f64>;
        let stats: [(&str, InputStat); 3] = [
            ("input_mass_v1", |m, _| Some(m.iter().sum())),
            ("input_share_top_z_v1", |m, z| {
                let total: f64 = m.iter().sum();
                let mut idx: Vec<usize> = (0..z.len().min(m.len())).collect();
                idx.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
                let top: f64 = idx.iter().take(TOP_Z_COLUMNS).map(|&j| m[j]).sum();
                (total > 0.0).then(|| top / total)
            }),
            ("input_spearman_z_v1", |m, z| {
                let r = spearman(m, z);
                r.is_finite().then_some(r)
            }),
        ];
        for (wname, bounds) in windows {
            for (measure, stat) in stats {
                let mut r = row(
                    g,
                    measure,
                    wname,
                    g.runs
                        .iter()
                        .map(|r| {
                            let (lo, hi) = bounds(r);
                            let vals: Vec<f64> = r
                                .input_mass
                                .iter()
                                .filter(|(s, _)| (**s as f64) >= lo && (**s as f64) < hi)
                                .filter_map(|(_, m)| stat(m, &r.max_z))
                                .collect();
                            (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
                        })
                        .collect(),
                );
                if measure == "input_mass_v1" {
                    r.null_q = null_input;
                }
                out.push(r);
            }
        }
    }
    // The random baseline of D: unrelated directions (one value per run).
    out.push(row(
        g,
        "displacement_random",
        "baseline",
        g.runs
            .iter()
            .map(|r| Some(random_displacement(r.params)))
            .collect(),
    ));
    // The empirical baseline of D: the mean matched D between every pair
    // of the architecture null's replicas (unrelated Hessians of the same
    // architecture), one value per pair.
    if let Some(r) = g.runs.iter().find(|r| !r.null_pairs.is_empty()) {
        let values: Vec<f64> = r.null_pairs.iter().map(|p| p.1).collect();
        let summary = summarize(&values);
        out.push(Row {
            setting: g.label.clone(),
            optimizer: g.optimizer.clone(),
            measure: "displacement_null_pairs".into(),
            window: "baseline".into(),
            seeds: r
                .null_pairs
                .iter()
                .map(|((a, b), _)| format!("replicas {a}×{b}"))
                .collect(),
            null_q: (
                quantile(&values, 0.05),
                quantile(&values, 0.5),
                quantile(&values, 0.95),
            ),
            values,
            summary,
            // Set with every row that uses the null (Findings::compute).
            null_caveat: None,
            at_step: f64::NAN,
            at_loss: f64::NAN,
        });
    }
    out.extend(aging_rows(g));
    // Matched progress: at each loss level.
    for level in LOSS_LEVELS {
        let name = level_name(level);
        let at: Vec<Option<f64>> = g.runs.iter().map(|r| r.step_at_level(level)).collect();
        let mut r = row(g, "step", &name, at.clone());
        r.at_step = r.summary.mean;
        out.push(r);
        out.push(row(
            g,
            "displacement_lag",
            &name,
            g.runs
                .iter()
                .zip(&at)
                .map(|(r, s)| r.lag_at((*s)?))
                .collect(),
        ));
        out.push(row(
            g,
            "displacement_rate",
            &name,
            g.runs
                .iter()
                .zip(&at)
                .map(|(r, s)| r.disp_at((*s)?))
                .collect(),
        ));
        let mut p = row(
            g,
            "p_ipr_v1",
            &name,
            g.runs
                .iter()
                .zip(&at)
                .map(|(r, s)| series_at(r.p_ipr.get(&0)?, (*s)?))
                .collect(),
        );
        p.null_q = null_v1;
        out.push(p);
        for (measure, pick, null) in [
            (
                "frac50_v1",
                (|r| &r.frac50) as fn(&RunSeries) -> &Points,
                null_f50,
            ),
            ("frac90_v1", |r| &r.frac90, null_f90),
        ] {
            let mut f = row(
                g,
                measure,
                &name,
                g.runs
                    .iter()
                    .zip(&at)
                    .map(|(r, s)| series_at(pick(r), (*s)?))
                    .collect(),
            );
            f.null_q = null;
            out.push(f);
        }
    }
    // Phase statistics: the peak P·IPR of v₁ … v_{C−1}, where it is, and the
    // time above the null's 95th percentile.
    let classes = g.runs.iter().map(|r| r.classes).max().unwrap_or(2);
    for rank in 0..(classes.max(2) - 1) as i64 {
        let peaks: Vec<Option<(f64, f64)>> = g
            .runs
            .iter()
            .map(|r| {
                r.p_ipr
                    .get(&rank)?
                    .iter()
                    .copied()
                    .max_by(|a, b| a.1.total_cmp(&b.1))
            })
            .collect();
        if peaks.iter().all(Option::is_none) {
            continue;
        }
        let v = format!("v{}", rank + 1);
        let mut p = row(
            g,
            &format!("peak_p_ipr_{v}"),
            "peak",
            peaks.iter().map(|p| p.map(|p| p.1)).collect(),
        );
        let at: Vec<(f64, f64)> = g
            .runs
            .iter()
            .zip(&peaks)
            .filter_map(|(r, p)| {
                let p = (*p)?;
                Some((p.0, r.clock.ln_at(p.0)))
            })
            .collect();
        if !at.is_empty() {
            p.at_step = at.iter().map(|a| a.0).sum::<f64>() / at.len() as f64;
            p.at_loss = (at.iter().map(|a| a.1).sum::<f64>() / at.len() as f64).exp();
        }
        let nq = null_quantiles(g, rank);
        p.null_q = nq;
        out.push(p);
        // Steps above the null's 95th percentile: the intervals between
        // consecutive trusted checkpoints that start above it.
        if nq.2.is_finite() {
            out.push(row(
                g,
                &format!("steps_above_null95_{v}"),
                "all",
                g.runs
                    .iter()
                    .map(|r| {
                        let s = r.p_ipr.get(&rank)?;
                        Some(
                            s.windows(2)
                                .filter(|w| w[0].1 > nq.2)
                                .map(|w| w[1].0 - w[0].0)
                                .sum(),
                        )
                    })
                    .collect(),
            ));
        }
    }
    out
}

/// The aging windows: by waiting time t_w, the whole run, the falling
/// phase, and after it.
const AGING_WINDOWS: [Window; 3] = [
    ("all", |_| (0.0, f64::INFINITY)),
    ("falling", |r| {
        (
            0.0,
            r.step_at_level(FALLING_UNTIL).unwrap_or(f64::NEG_INFINITY),
        )
    }),
    ("after_falling", |r| {
        (
            r.step_at_level(FALLING_UNTIL).unwrap_or(f64::INFINITY),
            f64::INFINITY,
        )
    }),
];

/// Per aging window: every seed's collapse exponent μ, its residual there
/// and at μ = 0, and the seeds' scatter of q (one pooled value).
fn aging_rows(g: &Setting) -> Vec<Row> {
    let mut out = Vec::new();
    for (name, bounds) in AGING_WINDOWS {
        let fit = aging::fit_setting(
            &g.runs
                .iter()
                .map(|r| {
                    let (lo, hi) = bounds(r);
                    aging::curves_of(&r.overlap, lo, hi)
                })
                .collect::<Vec<_>>(),
        );
        let fits = &fit.fits;
        if fits.iter().all(Option::is_none) {
            continue;
        }
        for (measure, pick) in [
            (
                "aging_mu",
                (|f: &aging::Fit| f.mu) as fn(&aging::Fit) -> f64,
            ),
            ("aging_residual", |f| f.residual),
            ("aging_unscaled_residual", |f| f.unscaled),
        ] {
            out.push(row(
                g,
                measure,
                name,
                fits.iter().map(|f| f.as_ref().map(pick)).collect(),
            ));
        }
        let scatter = fit.scatter;
        let mut r = row(g, "aging_seed_scatter", name, vec![]);
        if scatter.is_finite() {
            r.seeds = vec!["seeds pooled".into()];
            r.values = vec![scatter];
            r.summary = summarize(&r.values);
        }
        out.push(r);
    }
    out
}

fn claims(settings: &[Setting], rows: &[Row]) -> Vec<Test> {
    let find = |s: &str, m: &str, w: &str| {
        rows.iter()
            .find(|r| r.setting == s && r.measure == m && r.window == w)
    };
    let mut tests = Vec::new();
    // The reference: plain SGD. Settings of optimizer `sgd` include its
    // momentum variants, so the one labelled "sgd" is preferred.
    let is_sgd = |g: &&Setting| g.optimizer.eq_ignore_ascii_case("sgd");
    let sgd = settings
        .iter()
        .filter(is_sgd)
        .find(|g| g.label.to_ascii_lowercase().starts_with("sgd"))
        .or_else(|| settings.iter().find(is_sgd));
    let windows: Vec<String> = ["falling".to_string()]
        .into_iter()
        .chain(LOSS_LEVELS.iter().map(|l| level_name(*l)))
        .collect();
    // (a) SGD-family: the displacement falls along training. Primary: D
    // at the fixed lag (like with like); then the per-step rate, whose
    // intervals differ between early (log-spaced) and late checkpoints.
    for g in settings.iter().filter(is_sgd) {
        for (measure, early, late) in [
            ("displacement_lag", "early".to_string(), "late".to_string()),
            ("displacement_lag", level_name(0.5), level_name(1e-2)),
            ("displacement_rate", "early".to_string(), "late".to_string()),
            ("displacement_rate", level_name(0.5), level_name(1e-2)),
        ] {
            let (Some(a), Some(b)) = (
                find(&g.label, measure, &early),
                find(&g.label, measure, &late),
            ) else {
                continue;
            };
            let (t, df, p, v) = above(&a.values, &b.values);
            tests.push(Test {
                claim: "a".into(),
                setting: g.label.clone(),
                reference: g.label.clone(),
                measure: measure.into(),
                window: format!("{early} vs {late}"),
                statistic: "Welch's t, earlier minus later".into(),
                t,
                df,
                p,
                rule: format!(
                    "holds if the earlier value is above the later at p < {ALPHA}; does not hold if below at p < {ALPHA}; else inconclusive"
                ),
                verdict: v,
                detail: String::new(),
                caveat: None,
            });
        }
    }
    // (c) against the architecture null, the claim's primary test: the
    // peak's 95% CI against the null's 95th percentile.
    for g in settings {
        let Some(r) = find(&g.label, "peak_p_ipr_v1", "peak") else {
            continue;
        };
        let q95 = r.null_q.2;
        let (lo, hi) = r.summary.ci;
        let verdict = if !(q95.is_finite() && lo.is_finite()) {
            Verdict::Inconclusive
        } else if lo > q95 {
            Verdict::Holds
        } else if hi < q95 {
            Verdict::DoesNotHold
        } else {
            Verdict::Inconclusive
        };
        tests.push(Test {
            claim: "c".into(),
            setting: g.label.clone(),
            reference: "architecture null".into(),
            measure: "peak_p_ipr_v1".into(),
            window: "peak".into(),
            statistic: "95% t interval of the peak against the null's 95th percentile".into(),
            t: f64::NAN,
            df: (r.summary.n.max(1) - 1) as f64,
            p: f64::NAN,
            rule: "holds if the interval lies above the null's 95th percentile; does not hold if below it; else inconclusive".into(),
            verdict,
            detail: String::new(),
            caveat: r.null_caveat.clone(),
        });
    }
    // (b), and (c) against SGD: every other setting against SGD.
    if let Some(sgd) = sgd {
        for g in settings.iter().filter(|g| g.label != sgd.label) {
            // Primary: the fixed-lag D in the falling phase.
            let cases = ["displacement_lag", "displacement_rate"]
                .into_iter()
                .flat_map(|m| windows.iter().map(move |w| (m, w)));
            for (measure, w) in cases {
                let (Some(a), Some(b)) = (find(&g.label, measure, w), find(&sgd.label, measure, w))
                else {
                    continue;
                };
                let (t, df, p, v) = above(&a.values, &b.values);
                tests.push(Test {
                    claim: "b".into(),
                    setting: g.label.clone(),
                    reference: sgd.label.clone(),
                    measure: measure.into(),
                    window: w.clone(),
                    statistic: "Welch's t, setting minus SGD".into(),
                    t,
                    df,
                    p,
                    rule: format!(
                        "holds if above SGD at p < {ALPHA}; does not hold if below at p < {ALPHA}; else inconclusive"
                    ),
                    verdict: v,
                    detail: String::new(),
                    caveat: None,
                });
            }
            if let (Some(a), Some(b)) = (
                find(&g.label, "peak_p_ipr_v1", "peak"),
                find(&sgd.label, "peak_p_ipr_v1", "peak"),
            ) {
                let (t, df, p, v) = above(&a.values, &b.values);
                tests.push(Test {
                    claim: "c".into(),
                    setting: g.label.clone(),
                    reference: sgd.label.clone(),
                    measure: "peak_p_ipr_v1".into(),
                    window: "peak".into(),
                    statistic: "Welch's t, setting minus SGD".into(),
                    t,
                    df,
                    p,
                    rule: format!(
                        "holds if above SGD at p < {ALPHA}; does not hold if below at p < {ALPHA}; else inconclusive"
                    ),
                    verdict: v,
                    detail: String::new(),
                    caveat: None,
                });
            }
        }
    }
    // Aging: does q(t_w, t_w + τ) collapse against τ/t_w^μ, and with which
    // μ? One test per setting and window.
    for g in settings {
        for (w, _) in AGING_WINDOWS {
            let (Some(mu), Some(res), Some(uns)) = (
                find(&g.label, "aging_mu", w),
                find(&g.label, "aging_residual", w),
                find(&g.label, "aging_unscaled_residual", w),
            ) else {
                continue;
            };
            let scatter =
                find(&g.label, "aging_seed_scatter", w).map_or(f64::NAN, |r| r.summary.mean);
            let regime = aging::regime(&res.values, &uns.values, mu.summary.ci, scatter);
            let verdict = match regime {
                aging::Regime::Simple | aging::Regime::Sub | aging::Regime::Super => Verdict::Holds,
                aging::Regime::NoAging => Verdict::DoesNotHold,
                aging::Regime::NoCollapse | aging::Regime::Inconclusive => Verdict::Inconclusive,
            };
            let mut detail = regime.as_str().to_string();
            if mu
                .values
                .iter()
                .any(|m| *m >= aging::MU_MAX - aging::MU_STEP)
            {
                detail.push_str(&format!(
                    " (some seed's μ at the search bound {})",
                    aging::MU_MAX
                ));
            }
            tests.push(Test {
                claim: "aging".into(),
                setting: g.label.clone(),
                reference: "collapse".into(),
                measure: "aging_mu".into(),
                window: w.into(),
                statistic: format!(
                    "μ minimizing the mean |Δq| between curves against τ/t_w^μ (Bhattacharjee–Seno), per seed; its 95% t interval; the residuals against {}× the seeds' scatter of q",
                    aging::COLLAPSE_FACTOR
                ),
                t: f64::NAN,
                df: (mu.summary.n.max(1) - 1) as f64,
                p: f64::NAN,
                rule: format!(
                    "no aging (does not hold) if the unscaled curves already agree within {f}× the scatter; no collapse (inconclusive) if the best μ leaves them further apart; else simple aging if μ's interval contains 1, subaging if it lies in (0, 1), superaging if above 1 (each: holds); inconclusive if it reaches 0",
                    f = aging::COLLAPSE_FACTOR
                ),
                verdict,
                detail,
                caveat: None,
            });
        }
    }
    tests
}

// ------------------------------------------------------------ outputs

fn str_col(name: &str, v: Vec<String>) -> Column {
    Column::new(name.into(), v)
}

fn f64_col(name: &str, v: Vec<f64>) -> Column {
    Column::new(name.into(), v)
}

fn write_ipc(path: &Path, mut df: DataFrame) -> Result<(), ReportError> {
    let mut f = std::fs::File::create(path).map_err(|e| data_err(path, e))?;
    IpcWriter::new(&mut f)
        .finish(&mut df)
        .map_err(|e| data_err(path, e))
}

fn list_col<T: Clone>(
    name: &str,
    rows: &[Row],
    pick: impl Fn(&Row) -> Vec<T>,
    to_series: impl Fn(Vec<T>) -> Series,
) -> Result<Column, PolarsError> {
    let series: Vec<Series> = rows.iter().map(|r| to_series(pick(r))).collect();
    let mut list = ListChunked::from_iter(series.into_iter().map(Some));
    list.rename(name.into());
    Ok(list.into_series().into())
}

impl Findings {
    fn table(&self) -> Result<DataFrame, PolarsError> {
        let r = &self.rows;
        let s = |f: fn(&Row) -> String| r.iter().map(f).collect::<Vec<String>>();
        let x = |f: fn(&Row) -> f64| r.iter().map(f).collect::<Vec<f64>>();
        DataFrame::new_infer_height(vec![
            str_col("setting", s(|r| r.setting.clone())),
            str_col("optimizer", s(|r| r.optimizer.clone())),
            str_col("measure", s(|r| r.measure.clone())),
            str_col("window", s(|r| r.window.clone())),
            list_col(
                "seeds",
                r,
                |r| r.seeds.clone(),
                |v| Series::new("".into(), v),
            )?,
            list_col(
                "values",
                r,
                |r| r.values.clone(),
                |v| Series::new("".into(), v),
            )?,
            Column::new(
                "n".into(),
                r.iter().map(|r| r.summary.n as u32).collect::<Vec<u32>>(),
            ),
            f64_col("mean", x(|r| r.summary.mean)),
            f64_col("sd", x(|r| r.summary.sd)),
            f64_col("ci_lo", x(|r| r.summary.ci.0)),
            f64_col("ci_hi", x(|r| r.summary.ci.1)),
            f64_col("at_step", x(|r| r.at_step)),
            f64_col("at_loss", x(|r| r.at_loss)),
            f64_col("null_q05", x(|r| r.null_q.0)),
            f64_col("null_q50", x(|r| r.null_q.1)),
            f64_col("null_q95", x(|r| r.null_q.2)),
            Column::new(
                "null_caveat".into(),
                r.iter()
                    .map(|r| r.null_caveat.clone())
                    .collect::<Vec<Option<String>>>(),
            ),
        ])
    }

    fn tests_table(&self) -> Result<DataFrame, PolarsError> {
        let t = &self.tests;
        let s = |f: fn(&Test) -> String| t.iter().map(f).collect::<Vec<String>>();
        let x = |f: fn(&Test) -> f64| t.iter().map(f).collect::<Vec<f64>>();
        DataFrame::new_infer_height(vec![
            str_col("claim", s(|t| t.claim.clone())),
            str_col("setting", s(|t| t.setting.clone())),
            str_col("reference", s(|t| t.reference.clone())),
            str_col("measure", s(|t| t.measure.clone())),
            str_col("window", s(|t| t.window.clone())),
            str_col("statistic", s(|t| t.statistic.clone())),
            f64_col("t", x(|t| t.t)),
            f64_col("df", x(|t| t.df)),
            f64_col("p", x(|t| t.p)),
            str_col("rule", s(|t| t.rule.clone())),
            str_col("verdict", s(|t| t.verdict.as_str().to_string())),
            str_col("detail", s(|t| t.detail.clone())),
            Column::new(
                "caveat".into(),
                t.iter()
                    .map(|t| t.caveat.clone())
                    .collect::<Vec<Option<String>>>(),
            ),
        ])
    }

    /// Writes findings.arrow, findings_tests.arrow and findings.md into
    /// `out_dir`; returns their names.
    pub fn write(&self, experiment: &str, out_dir: &Path) -> Result<Vec<String>, ReportError> {
        let arrow = out_dir.join("findings.arrow");
        let df = self.table().map_err(|e| data_err(&arrow, e))?;
        write_ipc(&arrow, df)?;
        let tests = out_dir.join("findings_tests.arrow");
        let df = self.tests_table().map_err(|e| data_err(&tests, e))?;
        write_ipc(&tests, df)?;
        let md = out_dir.join("findings.md");
        std::fs::write(&md, self.markdown(experiment)).map_err(|e| data_err(&md, e))?;
        Ok(vec![
            "findings.arrow".into(),
            "findings_tests.arrow".into(),
            "findings.md".into(),
        ])
    }
}

// ------------------------------------------------------------ findings.md

fn g3(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        // A typeset minus, as fmt_plain writes it.
        format!("{v:.2e}").replacen('-', "\u{2212}", usize::from(v < 0.0))
    } else {
        crate::axis::fmt_plain(v)
    }
}

fn mean_ci(r: &Row) -> String {
    let s = &r.summary;
    if s.n == 0 {
        return "–".into();
    }
    if s.n < 2 {
        return format!("{} (n = 1)", g3(s.mean));
    }
    format!("{} [{}, {}]", g3(s.mean), g3(s.ci.0), g3(s.ci.1))
}

impl Findings {
    fn verdict_of(&self, claim: &str, setting: &str) -> Option<Verdict> {
        let vs: Vec<Verdict> = self
            .tests
            .iter()
            .filter(|t| t.claim == claim && t.setting == setting)
            .map(|t| t.verdict)
            .collect();
        if vs.is_empty() {
            return None;
        }
        // The primary test decides: the first one listed for the claim.
        Some(vs[0])
    }

    pub fn markdown(&self, experiment: &str) -> String {
        let mut settings: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !settings.contains(&r.setting.as_str()) {
                settings.push(&r.setting);
            }
        }
        let mut md = String::new();
        md.push_str(&format!(
            "# Findings: {experiment}\n\n\
             Computed by eigentrace's `findings` stage from the runs' trusted pairs only. \
             Every number is a mean over seeds with its 95% t interval [lo, hi] (sd with ddof = 1); \
             n is the number of seeds with a value. Windows: *early* t < {}·T, *late* t ≥ {}·T \
             (T the last step), *falling* the steps before the train loss first reaches \
             {}·L₀; *L/L0 = x* the first step where the train loss reaches x·L₀ \
             (ln L interpolated in step between logged rows). `displacement_lag` is D(t_w, t) \
             at a fixed lag (the linear checkpoint grid's step: t the checkpoint nearest \
             t_w + lag, within half a lag), averaged over the isolated ranks: the primary \
             measure of (a) and (b). `displacement_rate`, the consecutive pair's \
             D(tₙ, tₙ₊₁)/(tₙ₊₁ − tₙ), is shown too, but its intervals are short where \
             checkpoints are log-spaced (early) and long on the linear grid (late), and D ≤ 1 \
             does not grow linearly with the interval: comparing rates across spacings favours \
             the run with the shorter intervals. `displacement_random` is D of two independent \
             random directions in P dimensions, 1 − E|⟨u, v⟩| (the value of a vector that \
             forgot its past); `displacement_null_pairs` the empirical baseline, the matched D \
             between the top-k of two of the architecture null's replicas. `input_mass_v1` is v₁'s mass on the first layer's weights; \
             `input_share_top_z_v1` the share of that mass on the 8 input columns with the \
             largest max |z| over the train rows (standardized near-constant pixels reach \
             z ≈ 42 on the digits); `input_spearman_z_v1` the rank correlation between a \
             column's mass and its max |z|. \
             Tests are two-sided at α = {ALPHA}. Definitions: docs/science.md.\n\n",
            EARLY_BEFORE,
            LATE_FROM,
            FALLING_UNTIL
        ));
        // The claims.
        let claims = [
            (
                "a",
                "(a) SGD's leading Hessian directions stabilize: their displacement falls along training.",
            ),
            (
                "b",
                "(b) Adam keeps reorganizing: its displacement stays above SGD's while the loss falls.",
            ),
            (
                "c",
                "(c) Adam's leading eigenvectors localize beyond the null model: v₁'s peak P·IPR lies above the architecture null's 95th percentile (and above SGD's).",
            ),
        ];
        for (c, text) in claims {
            md.push_str(&format!("## {text}\n\n"));
            let tests: Vec<&Test> = self.tests.iter().filter(|t| t.claim == c).collect();
            if tests.is_empty() {
                md.push_str("No test: the runs lack the settings this claim compares.\n\n");
                continue;
            }
            if let Some(rule) = tests.first().map(|t| t.rule.clone()) {
                md.push_str(&format!(
                    "Statistic: {}. Decision rule: {rule}.\n\n",
                    tests[0].statistic
                ));
            }
            // The paper's claim is about Adam (SGD for (a)): its verdict first.
            let subject = if c == "a" { "sgd" } else { "adam" };
            let main: Vec<&&Test> = tests
                .iter()
                .filter(|t| {
                    self.rows.iter().any(|r| {
                        r.setting == t.setting && r.optimizer.eq_ignore_ascii_case(subject)
                    })
                })
                .collect();
            if let Some(t) = main.first() {
                let v = self
                    .verdict_of(c, &t.setting)
                    .unwrap_or(Verdict::Inconclusive);
                md.push_str(&format!(
                    "**Verdict for {}: {}** (primary test: {} {}).\n\n",
                    t.setting,
                    v.as_str(),
                    t.measure,
                    t.window
                ));
                if t.caveat.is_some() {
                    md.push_str(
                        "⚠ **Flagged:** this verdict rests on an architecture null that cannot be taken at face value (why: below the table).\n\n",
                    );
                }
            }
            md.push_str("| setting | against | measure | window | setting's value | reference's value | t | df | p | verdict |\n");
            md.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
            for t in &tests {
                let (w_a, w_b) = match t.window.split_once(" vs ") {
                    Some((a, b)) => (a.to_string(), b.to_string()),
                    None => (t.window.clone(), t.window.clone()),
                };
                let a = self.row(&t.setting, &t.measure, &w_a).map(mean_ci);
                let b = if t.reference == "architecture null" {
                    self.row(&t.setting, &t.measure, &w_a)
                        .map(|r| format!("q95 = {}", g3(r.null_q.2)))
                } else {
                    self.row(&t.reference, &t.measure, &w_b).map(mean_ci)
                };
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    t.setting,
                    t.reference,
                    t.measure,
                    t.window,
                    a.unwrap_or_else(|| "–".into()),
                    b.unwrap_or_else(|| "–".into()),
                    g3(t.t),
                    g3(t.df),
                    g3(t.p),
                    t.verdict.as_str().to_string() + if t.caveat.is_some() { " ⚠" } else { "" }
                ));
            }
            md.push('\n');
            let mut flagged: Vec<&String> =
                tests.iter().filter_map(|t| t.caveat.as_ref()).collect();
            flagged.dedup();
            for c in flagged {
                md.push_str(&format!(
                    "⚠ These verdicts rest on the architecture null, which is flagged: {c}.\n\n"
                ));
            }
        }
        // Aging.
        let aging: Vec<&Test> = self.tests.iter().filter(|t| t.claim == "aging").collect();
        if !aging.is_empty() {
            md.push_str(&format!(
                "## Aging: do the curves q(t_w, t_w + τ) collapse against τ/t_w^μ?\n\n\
                 μ = 1 is simple aging (the relaxation time grows like the age t_w), 0 < μ < 1 \
                 subaging, μ > 1 superaging, μ = 0 no aging (q depends on τ alone). Per seed, \
                 μ minimizes the collapse residual, the mean |Δq| between every curve's points and \
                 every other curve (interpolated linearly in ln x) inside its range, \
                 x = τ/t_w^μ (Bhattacharjee and Seno 2001), over μ ∈ [0, {}]; the waiting times \
                 t_w > 0 whose curves have at least {} trusted lags enter, grouped by t_w: *all*, \
                 *falling* (t_w before L/L₀ = {}) and *after_falling*. The tolerance is {}× the \
                 seeds' scatter of q (the mean sample sd of q over the seeds at each (t_w, t)). \
                 Decision rule: {}.\n\n",
                aging::MU_MAX,
                aging::MIN_POINTS,
                FALLING_UNTIL,
                aging::COLLAPSE_FACTOR,
                aging[0].rule
            ));
            md.push_str("| setting | window | μ [95% CI] (n) | residual at μ (median) | residual at μ = 0 (median) | tolerance | regime | verdict |\n");
            md.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
            for t in aging {
                let get = |m: &str| self.row(&t.setting, m, &t.window);
                let med = |m: &str| get(m).map_or(f64::NAN, |r| quantile(&r.values, 0.5));
                let tol = get("aging_seed_scatter")
                    .map_or(f64::NAN, |r| aging::COLLAPSE_FACTOR * r.summary.mean);
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    t.setting,
                    t.window,
                    get("aging_mu")
                        .map(|r| format!("{} ({})", mean_ci(r), r.summary.n))
                        .unwrap_or_else(|| "–".into()),
                    g3(med("aging_residual")),
                    g3(med("aging_unscaled_residual")),
                    g3(tol),
                    t.detail,
                    t.verdict.as_str()
                ));
            }
            md.push('\n');
        }
        // The measures.
        md.push_str("## Measures\n\nPer setting: mean [95% CI] (n).\n\n");
        let mut measures: Vec<(&str, &str)> = Vec::new();
        for r in &self.rows {
            if !measures.contains(&(r.measure.as_str(), r.window.as_str())) {
                measures.push((&r.measure, &r.window));
            }
        }
        md.push_str("| measure | window |");
        for s in &settings {
            md.push_str(&format!(" {s} |"));
        }
        md.push_str("\n| --- | --- |");
        for _ in &settings {
            md.push_str(" --- |");
        }
        md.push('\n');
        for (m, w) in &measures {
            md.push_str(&format!("| {m} | {w} |"));
            for s in &settings {
                let cell = self
                    .row(s, m, w)
                    .map(|r| {
                        let mut c = mean_ci(r);
                        if r.summary.n > 0 {
                            c.push_str(&format!(" ({})", r.summary.n));
                        }
                        if r.at_loss.is_finite() {
                            c.push_str(&format!(
                                " at t ≈ {}, L ≈ {}",
                                g3(r.at_step),
                                g3(r.at_loss)
                            ));
                        }
                        c
                    })
                    .unwrap_or_else(|| "–".into());
                md.push_str(&format!(" {cell} |"));
            }
            md.push('\n');
        }
        // The null.
        md.push_str("\n## The architecture null\n\nP·IPR of the null model's vectors (fresh initializations), per rank: 5%, 50% and 95% quantiles over replicas, and the layer-mass-matched null (a random direction with v₁'s mass per parameter block, uniform within each block: E[P·IPR] = 3P Σ_l m_l²/(n_l + 2)), reported as the ratio P·IPR(v₁)/E[P·IPR] (`p_ipr_v1_over_layer_null`: above 1, v₁ is localized within its blocks beyond what its split across blocks explains).\n\n");
        md.push_str("Every null column is the 5% / 50% / 95% quantiles over the replicas (pairs of replicas for D). `displacement_null_pairs` is the matched D between two replicas' top-k after Hungarian matching, mean over ranks: the D of a Hessian's top-k against an unrelated Hessian's of the same architecture (its interval in the measures table treats the pairs as independent, which they are not: each replica is in R − 1 pairs; the quantiles are the baseline).\n\n");
        md.push_str("| settings | P·IPR(v₁) | frac50(v₁) | frac90(v₁) | first-layer weight mass of v₁ | matched D between replicas |\n| --- | --- | --- | --- | --- | --- |\n");
        let q3 = |q: (f64, f64, f64)| format!("{} / {} / {}", g3(q.0), g3(q.1), g3(q.2));
        // One null per architecture: settings with the same null share a row.
        let mut lines: Vec<(Vec<&str>, String)> = Vec::new();
        for s in &settings {
            let nq = |m: &str, w: &str| {
                self.row(s, m, w)
                    .map_or_else(|| "–".to_string(), |r| q3(r.null_q))
            };
            if self.row(s, "peak_p_ipr_v1", "peak").is_some() {
                let cells = format!(
                    "{} | {} | {} | {} | {}",
                    nq("peak_p_ipr_v1", "peak"),
                    nq("frac50_v1", "late"),
                    nq("frac90_v1", "late"),
                    nq("input_mass_v1", "late"),
                    nq("displacement_null_pairs", "baseline"),
                );
                match lines.iter_mut().find(|l| l.1 == cells) {
                    Some(l) => l.0.push(s),
                    None => lines.push((vec![s], cells)),
                }
            }
        }
        for (names, cells) in lines {
            md.push_str(&format!("| {} | {cells} |\n", names.join(", ")));
        }
        md
    }
}

/// Renders findings.md's Markdown (headings, paragraphs, tables, bold) as
/// HTML for index.html.
pub fn markdown_to_html(md: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let inline = |s: &str| {
        let mut out = String::new();
        for (i, part) in esc(s).split("**").enumerate() {
            if i % 2 == 1 {
                out.push_str(&format!("<b>{part}</b>"));
            } else {
                out.push_str(part);
            }
        }
        out
    };
    let mut html = String::new();
    let mut in_table = false;
    for line in md.lines() {
        let l = line.trim();
        if l.starts_with('|') {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            if cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
                continue;
            }
            let tag = if in_table { "td" } else { "th" };
            if !in_table {
                html.push_str("<table>\n");
                in_table = true;
            }
            html.push_str("<tr>");
            for c in cells {
                html.push_str(&format!("<{tag} class=\"l\">{}</{tag}>", inline(c)));
            }
            html.push_str("</tr>\n");
            continue;
        }
        if in_table {
            html.push_str("</table>\n");
            in_table = false;
        }
        if let Some(h) = l.strip_prefix("## ") {
            html.push_str(&format!("<h3>{}</h3>\n", inline(h)));
        } else if let Some(h) = l.strip_prefix("# ") {
            html.push_str(&format!("<h2>{}</h2>\n", inline(h)));
        } else if !l.is_empty() {
            html.push_str(&format!("<p>{}</p>\n", inline(l)));
        }
    }
    if in_table {
        html.push_str("</table>\n");
    }
    html
}

/// The stage: computes and writes the findings of `input` into `out_dir`.
pub fn run(input: &ReportInput, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    if input.runs.is_empty() {
        return Err(ReportError::NoRuns {
            experiment: input.experiment.clone(),
        });
    }
    let f = Findings::compute(input)?;
    f.write(&input.experiment, out_dir)
}
