//! The metrics stage: how the leading Hessian eigenvectors move and where
//! they live. Every definition is docs/science.md's; the files are docs/design.md's.
//!
//! Outputs, under `metrics/`:
//! - `localization.arrow`: step, operator, rank, ipr, p_ipr, pr, frac50,
//!   frac90 (the smallest fraction of parameters holding 50% / 90% of v²),
//!   trusted;
//! - `layer_mass.arrow`: step, operator, rank, layer, block (`weight`,
//!   `bias` or `all`), mass, trusted;
//! - `input_mass.arrow`: step, operator, rank, column, mass (the first
//!   layer's weights from input feature `column`: Σ_o W₀[o, column]²), trusted;
//! - `neuron_mass.arrow`: step, operator, rank, layer, neuron, mass (a hidden
//!   neuron's incoming weights, its bias and its outgoing weights), trusted;
//! - `overlap.arrow`: operator, t_w, t, subspace_overlap, grassmann,
//!   principal_angles (list), consecutive, trusted — the full upper
//!   triangle t_w < t, over all top-k pairs whatever their trust;
//! - `displacement.arrow`: operator, t_w, t, rank, matched_rank,
//!   matched_displacement, same_rank_displacement, consecutive,
//!   per_step (the matched displacement divided by t − t_w), trusted; the
//!   three displacements are null where the vector is not isolated (below);
//! - `spectrum.arrow`: step, operator, rank, eigenvalue, rel_gap,
//!   degenerate (both null where unknown, below), threshold (see
//!   [`stability_threshold`]: SGD's on the Hessian, with momentum,
//!   Nesterov, dampening and weight decay; the adaptive methods' on their
//!   preconditioned operators; at the learning rate scheduled at that
//!   step), over_threshold, trusted;
//! - `operator_overlap.arrow`, only with `hessian.operators` beyond the
//!   Hessian: step, operator, other, subspace_overlap, grassmann,
//!   principal_angles, chance, trusted (see [`operator_overlap`]);
//! - `alignment.arrow`: step, grad_alignment (the analysis-set gradient of
//!   the hessian stage's `eigen/gradient.arrow`: the same rows as the
//!   Hessian), grad_alignment_train (the train-split gradient the checkpoint
//!   holds), update_alignment (the realized update), trusted;
//! - with a null model: `null_localization.arrow` (replica, rank, ipr,
//!   p_ipr, pr, frac50, frac90, trusted), `null_layer_mass.arrow` (with
//!   trusted) and `null_overlap.arrow` (replica_a, replica_b,
//!   subspace_overlap, matched_displacement: the mean over ranks of D after
//!   Hungarian matching between the two replicas' top-k; trusted), and
//!   `null_band.arrow` (rank, p_ipr_min, p_ipr_mean, p_ipr_max, frac50_…,
//!   replicas, untrusted, tol). The null's pairs are trusted by the null's
//!   own `values.arrow` (its `replica` in place of `step`), as the run's
//!   are; the band is made of trusted replicas only, `replicas` counts
//!   them, `untrusted` counts those left out, and `tol` is the residual
//!   tolerance the null's Lanczos stopped at (`null.tol`), so that a band
//!   computed at a loose tolerance can be flagged where it is used.
//!
//! # Trust
//!
//! A pair (operator, step, rank) is *trusted* when `values.arrow` says it is
//! `converged` and `resolvable` (its eigenvalue stands clear of the
//! operator's rounding level). Stores written before those columns existed
//! lack `resolvable` (and test fixtures may lack `converged`): an absent
//! column counts as true; a null entry as false. A vector without a row in
//! `values.arrow` is untrusted.
//!
//! - One-pair rows (localization, layer_mass, neuron_mass, spectrum) carry
//!   the pair's trust.
//! - A step of an operator is trusted when every one of its top-k pairs
//!   (rank ≥ 0) is. `alignment.arrow` carries the Hessian's step trust.
//! - Two-time rows are trusted when both ends are: an overlap row when both
//!   steps are trusted (all k pairs at t_w and at t); a displacement row
//!   when the pair at t_w and its matched pair at t are.
//!
//! What "trusted pairs by default" means (`include_untrusted = false`):
//! every row is still computed and written, with the same values either
//! way, so that figures can draw untrusted points hollow; what the default
//! changes is the chain of `consecutive` pairs (the curves of consecutive
//! displacement and overlap, and the aging reference): it links each
//! trusted step to the next trusted step of the same operator, skipping
//! untrusted steps, whose rows all have `consecutive = false`. With
//! `include_untrusted = true` it links every step to the next computed one
//! (the behaviour before trust existed), untrusted links flagged
//! `trusted = false`. The Hungarian matching and the subspace measures
//! always use all k pairs at both ends (the top-k subspace is what Lanczos
//! returns); a pair's trust never changes another pair's numbers.
//!
//! # Degeneracy
//!
//! `rel_gap` is (λ_i − λ_{i+1})/|λ_1| within the top ranks (sorted by
//! eigenvalue) and `degenerate` is rel_gap < `degeneracy_threshold`. The
//! last computed rank has no λ_{i+1}: its rel_gap and degenerate are null
//! (unknown), not false. With `both_ends`, the negative ranks are handled
//! the same way from the bottom: the gap to the next more inward pair, null
//! for the innermost. A vector is *isolated* when its gaps to both
//! neighbours are known and not degenerate (rank 0 needs only the gap
//! below); a vector in a near-degenerate cluster, or the last rank, has no
//! well-defined individual direction. Per-vector displacement is therefore
//! reported only for isolated vectors: `matched_displacement` and
//! `per_step` when the vector at t_w and its matched vector at t are both
//! isolated, `same_rank_displacement` when rank i is isolated at t_w and at
//! t; otherwise null (the row is kept, with its `matched_rank`). The
//! subspace measures (`overlap.arrow`) cover every rank.

use crate::arrow_io::{col_bool, col_f64, col_i32, col_i64, col_str, list_f32, write_batch, Table};
use crate::error::{fmt_err, StageError, StageResult};
use crate::mlp::Arch;
use crate::optim::{OptName, OptimizerParams};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

fn d_degeneracy() -> f64 {
    1e-3
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsParams {
    /// Pairs with (λ_i − λ_{i+1})/|λ_1| below this are flagged degenerate.
    #[serde(default = "d_degeneracy")]
    pub degeneracy_threshold: f64,
    /// Whether the `consecutive` chains run through untrusted steps too (see
    /// the module doc, Trust). Left out of the JSON when false, so that the
    /// default's key is the one it had before this field existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_untrusted: bool,
}

impl Default for MetricsParams {
    fn default() -> Self {
        MetricsParams {
            degeneracy_threshold: d_degeneracy(),
            include_untrusted: false,
        }
    }
}

impl MetricsParams {
    /// The ranges the stage accepts (the config checks them first).
    pub fn check(&self) -> StageResult<()> {
        let t = self.degeneracy_threshold;
        if !(t > 0.0 && t < 1.0) {
            return Err(StageError::Param {
                field: "metrics.degeneracy_threshold".into(),
                msg: format!("must be in (0, 1), got {t}"),
            });
        }
        Ok(())
    }
}

/// What `values.arrow` says about one pair, and what its spectrum implies.
#[derive(Clone, Debug, PartialEq)]
pub struct PairInfo {
    pub eigenvalue: f64,
    pub converged: bool,
    pub resolvable: bool,
    /// The gap to the next pair inwards over |λ_1|; None for the last one.
    pub rel_gap: Option<f64>,
    /// rel_gap < the threshold; None where rel_gap is.
    pub degenerate: Option<bool>,
    /// Both gaps (one for the outermost pair) known and not degenerate.
    pub isolated: bool,
}

impl PairInfo {
    pub fn trusted(&self) -> bool {
        self.converged && self.resolvable
    }
}

/// Every pair of `values.arrow`: operator → (step, rank) → its information.
#[derive(Clone, Debug, Default)]
pub struct Pairs(pub BTreeMap<String, BTreeMap<(i64, i32), PairInfo>>);

impl Pairs {
    pub fn get(&self, op: &str, step: i64, rank: i32) -> Option<&PairInfo> {
        self.0.get(op)?.get(&(step, rank))
    }
    /// Converged and resolvable; a pair `values.arrow` lacks is not.
    pub fn trusted(&self, op: &str, step: i64, rank: i32) -> bool {
        self.get(op, step, rank).is_some_and(PairInfo::trusted)
    }
    /// A step of `op` is trusted when every top-k pair (rank ≥ 0) among its
    /// vectors `vs` is (module doc, Trust).
    pub fn step_trusted(&self, op: &str, step: i64, vs: &[(i32, Vec<f64>)]) -> bool {
        vs.iter()
            .filter(|(r, _)| *r >= 0)
            .all(|(r, _)| self.trusted(op, step, *r))
    }
    pub fn isolated(&self, op: &str, step: i64, rank: i32) -> bool {
        self.get(op, step, rank).is_some_and(|p| p.isolated)
    }
}

/// A boolean column that may be absent (None) in older stores.
fn optional_bool<'t>(t: &'t Table<'_>, name: &str) -> StageResult<Option<&'t BooleanArray>> {
    if t.batch.column_by_name(name).is_none() {
        return Ok(None);
    }
    t.bool(name).map(Some)
}

/// Reads `values.arrow`: each pair's trust (an absent `converged` or
/// `resolvable` column counts as true, a null entry as false) and its
/// degeneracy (module doc, Degeneracy).
pub fn read_pairs(values: &Path, degeneracy_threshold: f64) -> StageResult<Pairs> {
    read_pairs_by(values, "step", degeneracy_threshold)
}

/// [`read_pairs`] of a file indexed by `index` instead of `step` (the null
/// model's `replica`).
pub fn read_pairs_by(values: &Path, index: &str, degeneracy_threshold: f64) -> StageResult<Pairs> {
    let t = Table::open(values)?;
    let (step, op, rank, ev) = (
        t.i64(index)?,
        t.str("operator")?,
        t.i32("rank")?,
        t.f64("eigenvalue")?,
    );
    let converged = optional_bool(&t, "converged")?;
    let resolvable = optional_bool(&t, "resolvable")?;
    let flag = |c: Option<&BooleanArray>, i: usize| c.is_none_or(|c| c.is_valid(i) && c.value(i));
    let mut out: BTreeMap<String, BTreeMap<(i64, i32), PairInfo>> = BTreeMap::new();
    for i in 0..t.len() {
        let info = PairInfo {
            eigenvalue: ev.value(i),
            converged: flag(converged, i),
            resolvable: flag(resolvable, i),
            rel_gap: None,
            degenerate: None,
            isolated: false,
        };
        let key = (step.value(i), rank.value(i));
        if out
            .entry(op.value(i).to_string())
            .or_default()
            .insert(key, info)
            .is_some()
        {
            return Err(fmt_err(
                values,
                format!(
                    "row {i}: a second pair for operator {}, step {}, rank {}",
                    op.value(i),
                    key.0,
                    key.1
                ),
            ));
        }
    }
    for pairs in out.values_mut() {
        let steps: Vec<i64> = pairs.keys().map(|k| k.0).collect();
        let mut steps = steps;
        steps.dedup();
        for st in steps {
            let ranks: Vec<i32> = pairs
                .range((st, i32::MIN)..=(st, i32::MAX))
                .map(|(k, _)| k.1)
                .collect();
            let ev = |r: i32| pairs[&(st, r)].eigenvalue;
            // The top ranks from the largest down, the bottom ones (both_ends)
            // from the most negative up: each pair's gap is to the next one inwards.
            let mut top: Vec<i32> = ranks.iter().copied().filter(|r| *r >= 0).collect();
            top.sort_by(|a, b| ev(*b).total_cmp(&ev(*a)));
            let mut bottom: Vec<i32> = ranks.iter().copied().filter(|r| *r < 0).collect();
            bottom.sort_by(|a, b| ev(*a).total_cmp(&ev(*b)));
            let lam1 = top
                .first()
                .or(bottom.last())
                .map(|r| ev(*r).abs())
                .unwrap_or(0.0)
                .max(f64::MIN_POSITIVE);
            let mut found = Vec::new();
            for side in [top, bottom] {
                let gaps: Vec<Option<f64>> = (0..side.len())
                    .map(|j| side.get(j + 1).map(|n| (ev(side[j]) - ev(*n)).abs() / lam1))
                    .collect();
                let deg: Vec<Option<bool>> = gaps
                    .iter()
                    .map(|g| g.map(|g| g < degeneracy_threshold))
                    .collect();
                for (j, r) in side.iter().enumerate() {
                    let isolated = deg[j] == Some(false) && (j == 0 || deg[j - 1] == Some(false));
                    found.push((*r, gaps[j], deg[j], isolated));
                }
            }
            for (r, gap, deg, isolated) in found {
                let p = pairs.get_mut(&(st, r)).expect("a rank of this step");
                p.rel_gap = gap;
                p.degenerate = deg;
                p.isolated = isolated;
            }
        }
    }
    Ok(Pairs(out))
}

/// IPR = Σ_j v_j⁴ of the unit vector along `v` (v is normalized here).
pub fn ipr(v: &[f64]) -> f64 {
    let n2: f64 = v.iter().map(|x| x * x).sum();
    v.iter().map(|x| x.powi(4)).sum::<f64>() / (n2 * n2)
}

/// The smallest fraction of coordinates that holds `share` of Σ v²: the
/// fewest largest v_j² whose sum reaches share·Σ v². Found by a weighted
/// quickselect (expected O(P), no full sort): split around the median,
/// keep the upper half whole when its mass is not enough, else descend.
pub fn mass_fraction(v: &[f64], share: f64) -> f64 {
    let mut sq: Vec<f64> = v.iter().map(|x| x * x).collect();
    let total: f64 = sq.iter().sum();
    let mut target = share * total * (1.0 - 1e-12);
    let mut count = 0usize;
    let mut part: &mut [f64] = &mut sq;
    while !part.is_empty() && target > 0.0 {
        if part.len() <= 32 {
            part.sort_by(|a, b| b.total_cmp(a));
            for x in part.iter() {
                count += 1;
                target -= x;
                if target <= 0.0 {
                    break;
                }
            }
            break;
        }
        let mid = part.len() / 2;
        // Descending: [0, mid) are the mid largest.
        part.select_nth_unstable_by(mid, |a, b| b.total_cmp(a));
        let upper: f64 = part[..mid].iter().sum();
        if upper >= target {
            part = &mut part[..mid];
        } else {
            count += mid;
            target -= upper;
            part = &mut part[mid..];
        }
    }
    count.max(1) as f64 / v.len() as f64
}

/// Subspace overlap q = ‖AᵀB‖_F² / k, the Grassmann distance ‖θ‖₂ and the
/// principal angles θ_i = arccos σ_i(M), from the cross-Gram M = AᵀB of two
/// orthonormal bases (Gur-Ari et al. 2018 for q).
pub fn overlap_from_gram(m: &DMatrix<f64>) -> (f64, f64, Vec<f64>) {
    let k = m.nrows().min(m.ncols()) as f64;
    let q = m.iter().map(|x| x * x).sum::<f64>() / k;
    let sv = m.clone().svd(false, false).singular_values;
    let mut angles: Vec<f64> = sv.iter().map(|s| s.clamp(0.0, 1.0).acos()).collect();
    angles.sort_by(|a, b| a.total_cmp(b));
    let g = angles.iter().map(|a| a * a).sum::<f64>().sqrt();
    (q, g, angles)
}

/// The assignment π maximizing Σ_i w[i][π(i)] (a square matrix), by the
/// Hungarian algorithm (Kuhn–Munkres, O(k³), the shortest-augmenting-path form).
/// The mean over ranks of D_i = 1 − |⟨a_i, b_π(i)⟩| after Hungarian
/// matching on |M| (M = AᵀB, k = min of its sides): the matched
/// displacement between two unrelated top-k sets, the null's baseline for
/// `matched_displacement`.
pub fn mean_matched_displacement(m: &DMatrix<f64>) -> f64 {
    let (r, c) = (m.nrows(), m.ncols());
    let k = r.min(c);
    if k == 0 {
        return f64::NAN;
    }
    // Square by zero padding: a padded row or column matches at weight 0,
    // and only real pairs enter the mean.
    let n = r.max(c);
    let w: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| if i < r && j < c { m[(i, j)].abs() } else { 0.0 })
                .collect()
        })
        .collect();
    let pi = hungarian_max(&w);
    (0..n)
        .filter(|&i| i < r && pi[i] < c)
        .map(|i| 1.0 - w[i][pi[i]])
        .sum::<f64>()
        / k as f64
}

pub fn hungarian_max(w: &[Vec<f64>]) -> Vec<usize> {
    let n = w.len();
    if n == 0 {
        return vec![];
    }
    let big = w.iter().flatten().fold(0f64, |a, &b| a.max(b.abs())) + 1.0;
    // Minimize cost = big − w, 1-indexed potentials (e-maxx formulation).
    let cost = |i: usize, j: usize| big - w[i - 1][j - 1];
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost(i0, j) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assign = vec![0; n];
    for j in 1..=n {
        if p[j] > 0 {
            assign[p[j] - 1] = j - 1;
        }
    }
    assign
}

/// The layer structure of θ needed for the mass metrics.
struct Layout {
    /// (layer, is_weight, offset, rows, cols) per block, in flat order.
    blocks: Vec<(usize, bool, usize, usize, usize)>,
    layers: usize,
}

impl Layout {
    fn of(arch: &Arch) -> Layout {
        Layout {
            blocks: arch
                .param_map()
                .iter()
                .map(|b| {
                    (
                        b.layer,
                        b.is_weight,
                        b.offset,
                        b.shape[0],
                        *b.shape.get(1).unwrap_or(&1),
                    )
                })
                .collect(),
            layers: arch.layers(),
        }
    }
    /// Mass (Σ v²) per (layer, block kind).
    fn block_mass(&self, v: &[f64]) -> Vec<(usize, &'static str, f64)> {
        self.blocks
            .iter()
            .map(|&(l, w, off, r, c)| {
                let n = if w { r * c } else { r };
                (
                    l,
                    if w { "weight" } else { "bias" },
                    v[off..off + n].iter().map(|x| x * x).sum(),
                )
            })
            .collect()
    }
    /// Mass per input column: the first layer's weights from input feature j,
    /// Σ_o W₀[o, j]².
    fn input_mass(&self, v: &[f64]) -> Vec<f64> {
        let Some(&(_, true, off, rows, cols)) = self.blocks.first() else {
            return Vec::new();
        };
        (0..cols)
            .map(|j| (0..rows).map(|o| v[off + o * cols + j].powi(2)).sum())
            .collect()
    }

    /// Mass per hidden neuron: its incoming weights and bias (layer l) and its
    /// outgoing weights (layer l+1). Returns (layer, neuron, mass).
    fn neuron_mass(&self, v: &[f64]) -> Vec<(usize, usize, f64)> {
        let mut out = Vec::new();
        for l in 0..self.layers.saturating_sub(1) {
            let (_, _, w_off, rows, cols) = self.blocks[2 * l];
            let (_, _, b_off, _, _) = self.blocks[2 * l + 1];
            let (_, _, nw_off, nrows, ncols) = self.blocks[2 * (l + 1)];
            debug_assert_eq!(ncols, rows);
            for j in 0..rows {
                let mut m: f64 = (0..cols).map(|i| v[w_off + j * cols + i].powi(2)).sum();
                m += v[b_off + j].powi(2);
                m += (0..nrows)
                    .map(|o| v[nw_off + o * ncols + j].powi(2))
                    .sum::<f64>();
                out.push((l, j, m));
            }
        }
        out
    }
}

/// One operator's unit vectors by step (or replica), with their ranks.
type StepVectors = BTreeMap<i64, Vec<(i32, Vec<f64>)>>;
/// Unit vectors by operator, then by step (or replica), with their ranks.
type Bases = BTreeMap<String, StepVectors>;

fn load(vectors: &Path, index: &str) -> StageResult<Bases> {
    let t = Table::open(vectors)?;
    let step = t.i64(index)?;
    let op = t.str("operator")?;
    let rank = t.i32("rank")?;
    let mut out: Bases = BTreeMap::new();
    for i in 0..t.len() {
        let v = t.vector_row("vector", i)?;
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n.is_nan() || n <= 0.0 {
            return Err(fmt_err(
                vectors,
                format!("row {i}: a zero or non-finite vector"),
            ));
        }
        let v = v.iter().map(|x| x / n).collect();
        out.entry(op.value(i).to_string())
            .or_default()
            .entry(step.value(i))
            .or_default()
            .push((rank.value(i), v));
    }
    for steps in out.values_mut() {
        for vs in steps.values_mut() {
            vs.sort_by_key(|(r, _)| if *r >= 0 { *r } else { i32::MAX + *r });
        }
    }
    Ok(out)
}

/// The top-k (rank ≥ 0) vectors of each step, in rank order.
fn tops(steps: &BTreeMap<i64, Vec<(i32, Vec<f64>)>>) -> Vec<(i64, Vec<&Vec<f64>>)> {
    steps
        .iter()
        .map(|(s, vs)| {
            (
                *s,
                vs.iter()
                    .filter(|(r, _)| *r >= 0)
                    .map(|(_, v)| v)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, vs)| !vs.is_empty())
        .collect()
}

/// Computes the Gram matrix G = VᵀV of the columns `cols` (unit vectors, f64
/// accumulation). Only the blocks on and above the diagonal — rows of block
/// a against columns from block a on, `offs` giving each block's first
/// column — need to be filled; the rest may be left zero.
pub type GramFn<'a> = &'a dyn Fn(&[&Vec<f64>], &[usize]) -> DMatrix<f64>;

/// The Gram matrix in plain Rust (nalgebra): fine for small P; the worker
/// passes a BLAS-backed one.
pub fn nalgebra_gram(cols: &[&Vec<f64>], _offs: &[usize]) -> DMatrix<f64> {
    let p = cols[0].len();
    let all = DMatrix::<f64>::from_fn(p, cols.len(), |r, c| cols[c][r]);
    all.tr_mul(&all)
}

/// The Gram matrix of all columns, and each step's first column.
fn gram(tops: &[(i64, Vec<&Vec<f64>>)], gram_fn: GramFn<'_>) -> (DMatrix<f64>, Vec<usize>) {
    let cols: Vec<&Vec<f64>> = tops.iter().flat_map(|(_, vs)| vs.iter().copied()).collect();
    let mut offs = Vec::new();
    let mut o = 0;
    for (_, vs) in tops {
        offs.push(o);
        o += vs.len();
    }
    (gram_fn(&cols, &offs), offs)
}

#[derive(Default)]
struct Loc {
    index: Vec<i64>,
    op: Vec<String>,
    rank: Vec<i32>,
    ipr: Vec<f64>,
    p_ipr: Vec<f64>,
    pr: Vec<f64>,
    f50: Vec<f64>,
    f90: Vec<f64>,
    trusted: Vec<bool>,
    /// Whether the files carry `trusted` (not the null model's).
    flagged: bool,
    // layer mass
    m_index: Vec<i64>,
    m_op: Vec<String>,
    m_rank: Vec<i32>,
    m_layer: Vec<i64>,
    m_block: Vec<&'static str>,
    m_mass: Vec<f64>,
    m_trusted: Vec<bool>,
}

/// Everything the localization files say about one vector.
struct VectorStats {
    ipr: f64,
    p: f64,
    f50: f64,
    f90: f64,
    blocks: Vec<(usize, &'static str, f64)>,
    neurons: Vec<(usize, usize, f64)>,
    /// Per input column: the first layer's weight mass from it.
    inputs: Vec<f64>,
    layers: usize,
}

impl VectorStats {
    fn of(v: &[f64], layout: &Layout) -> VectorStats {
        VectorStats {
            ipr: ipr(v),
            p: v.len() as f64,
            f50: mass_fraction(v, 0.5),
            f90: mass_fraction(v, 0.9),
            blocks: layout.block_mass(v),
            neurons: layout.neuron_mass(v),
            inputs: layout.input_mass(v),
            layers: layout.layers,
        }
    }
}

impl Loc {
    fn push_stats(&mut self, index: i64, op: &str, rank: i32, s: &VectorStats, trusted: bool) {
        self.trusted.push(trusted);
        self.index.push(index);
        self.op.push(op.to_string());
        self.rank.push(rank);
        self.ipr.push(s.ipr);
        self.p_ipr.push(s.p * s.ipr);
        self.pr.push(1.0 / (s.p * s.ipr));
        self.f50.push(s.f50);
        self.f90.push(s.f90);
        let mut per_layer = vec![0.0; s.layers];
        for &(l, block, m) in &s.blocks {
            per_layer[l] += m;
            self.m_push(index, op, rank, l, block, m, trusted);
        }
        for (l, m) in per_layer.into_iter().enumerate() {
            self.m_push(index, op, rank, l, "all", m, trusted);
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn m_push(
        &mut self,
        index: i64,
        op: &str,
        rank: i32,
        l: usize,
        block: &'static str,
        m: f64,
        trusted: bool,
    ) {
        self.m_trusted.push(trusted);
        self.m_index.push(index);
        self.m_op.push(op.to_string());
        self.m_rank.push(rank);
        self.m_layer.push(l as i64);
        self.m_block.push(block);
        self.m_mass.push(m);
    }
    fn write(self, out: &Path, prefix: &str, index: &str) -> StageResult<()> {
        let mut loc = vec![
            (index, col_i64(self.index)),
            ("operator", col_str(&self.op)),
            ("rank", col_i32(self.rank)),
            ("ipr", col_f64(self.ipr)),
            ("p_ipr", col_f64(self.p_ipr)),
            ("pr", col_f64(self.pr)),
            ("frac50", col_f64(self.f50)),
            ("frac90", col_f64(self.f90)),
        ];
        let mut mass = vec![
            (index, col_i64(self.m_index)),
            ("operator", col_str(&self.m_op)),
            ("rank", col_i32(self.m_rank)),
            ("layer", col_i64(self.m_layer)),
            ("block", col_str(&self.m_block)),
            ("mass", col_f64(self.m_mass)),
        ];
        if self.flagged {
            loc.push(("trusted", col_bool(self.trusted)));
            mass.push(("trusted", col_bool(self.m_trusted)));
        }
        write_batch(
            &out.join(format!("metrics/{prefix}localization.arrow")),
            loc,
            false,
        )?;
        write_batch(
            &out.join(format!("metrics/{prefix}layer_mass.arrow")),
            mass,
            false,
        )
    }
}

/// What the metrics stage reads.
pub struct MetricsInputs<'a> {
    pub values: &'a Path,
    pub vectors: &'a Path,
    pub arch: &'a Arch,
    pub optimizer: &'a OptimizerParams,
    /// The learning-rate schedule and the run's length: the thresholds use
    /// the learning rate scheduled at each checkpoint.
    pub schedule: &'a crate::train::Schedule,
    pub steps: u64,
    /// (step, checkpoint path), for the train-split gradient and the update
    /// alignment.
    pub checkpoints: Vec<(u64, &'a Path)>,
    /// The hessian stage's `eigen/gradient.arrow` (the analysis-set
    /// gradient); without it `grad_alignment` is NaN.
    pub gradients: Option<&'a Path>,
    /// The null model, if any.
    pub null: Option<NullInputs<'a>>,
}

/// The null stage's outputs and the tolerance it ran at.
pub struct NullInputs<'a> {
    /// `null/values.arrow`: the trust of each replica's pairs.
    pub values: &'a Path,
    /// `null/vectors.arrow`.
    pub vectors: &'a Path,
    /// The residual tolerance of the null's Lanczos (`null.tol`).
    pub tol: f64,
}

pub fn run(
    p: &MetricsParams,
    input: &MetricsInputs<'_>,
    out: &Path,
) -> StageResult<serde_json::Value> {
    run_with(p, input, out, &nalgebra_gram)
}

/// The metrics stage with a given Gram-matrix routine.
pub fn run_with(
    p: &MetricsParams,
    input: &MetricsInputs<'_>,
    out: &Path,
    gram_fn: GramFn<'_>,
) -> StageResult<serde_json::Value> {
    p.check()?;
    let layout = Layout::of(input.arch);
    let bases = load(input.vectors, "step")?;
    let pairs = read_pairs(input.values, p.degeneracy_threshold)?;

    // Localization and mass.
    let mut loc = Loc {
        flagged: true,
        ..Loc::default()
    };
    let (mut n_step, mut n_op, mut n_rank, mut n_layer, mut n_neuron, mut n_mass, mut n_trusted) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    // The per-vector statistics are independent: computed in parallel, then
    // gathered in order (the output does not depend on the thread count).
    let items: Vec<(&String, i64, i32, &Vec<f64>)> = bases
        .iter()
        .flat_map(|(op, steps)| {
            steps
                .iter()
                .flat_map(move |(s, vs)| vs.iter().map(move |(r, v)| (op, *s, *r, v)))
        })
        .collect();
    use rayon::prelude::*;
    let stats: Vec<VectorStats> = items
        .par_iter()
        .map(|(_, _, _, v)| VectorStats::of(v, &layout))
        .collect();
    let (mut n_pairs, mut n_trusted_pairs) = (0u64, 0u64);
    let (mut i_step, mut i_op, mut i_rank, mut i_col, mut i_mass, mut i_trusted) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for ((op, step, rank, _), st) in items.iter().zip(stats) {
        let (op, step, rank) = (*op, *step, *rank);
        let trusted = pairs.trusted(op, step, rank);
        n_pairs += 1;
        n_trusted_pairs += trusted as u64;
        loc.push_stats(step, op, rank, &st, trusted);
        for (j, &m) in st.inputs.iter().enumerate() {
            i_step.push(step);
            i_op.push(op.clone());
            i_rank.push(rank);
            i_col.push(j as i64);
            i_mass.push(m);
            i_trusted.push(trusted);
        }
        for &(l, j, m) in &st.neurons {
            n_step.push(step);
            n_op.push(op.clone());
            n_rank.push(rank);
            n_layer.push(l as i64);
            n_neuron.push(j as i64);
            n_mass.push(m);
            n_trusted.push(trusted);
        }
    }
    loc.write(out, "", "step")?;
    write_batch(
        &out.join("metrics/input_mass.arrow"),
        vec![
            ("step", col_i64(i_step)),
            ("operator", col_str(&i_op)),
            ("rank", col_i32(i_rank)),
            ("column", col_i64(i_col)),
            ("mass", col_f64(i_mass)),
            ("trusted", col_bool(i_trusted)),
        ],
        false,
    )?;
    write_batch(
        &out.join("metrics/neuron_mass.arrow"),
        vec![
            ("step", col_i64(n_step)),
            ("operator", col_str(&n_op)),
            ("rank", col_i32(n_rank)),
            ("layer", col_i64(n_layer)),
            ("neuron", col_i64(n_neuron)),
            ("mass", col_f64(n_mass)),
            ("trusted", col_bool(n_trusted)),
        ],
        false,
    )?;

    // Two-time overlaps and displacements over the upper triangle.
    let mut ov = OverlapRows::default();
    let mut dp = DisplacementRows::default();
    for (op, steps) in &bases {
        let tops = tops(steps);
        if tops.is_empty() {
            continue;
        }
        let ranks_of = |s: i64| -> Vec<i32> {
            steps[&s]
                .iter()
                .filter(|(r, _)| *r >= 0)
                .map(|(r, _)| *r)
                .collect()
        };
        let step_trusted: Vec<bool> = tops
            .iter()
            .map(|(s, _)| pairs.step_trusted(op, *s, &steps[s]))
            .collect();
        // The `consecutive` chain: each step linked to the next one it runs through.
        let chain: Vec<usize> = (0..tops.len())
            .filter(|&a| p.include_untrusted || step_trusted[a])
            .collect();
        let mut next_in_chain = vec![None; tops.len()];
        for w in chain.windows(2) {
            next_in_chain[w[0]] = Some(w[1]);
        }
        let (g, offs) = gram(&tops, gram_fn);
        // The preconditioned operator's stored vectors are parameter-space
        // directions D^{-1/2}u, unit but not orthogonal: its subspace
        // measures use the cross-Gram of orthonormalized bases,
        // L_a^{-1} G_ab L_b^{-T} with G_aa = L_a L_aᵀ. (The Hessian's are
        // orthonormal already.)
        let whiten: Vec<Option<nalgebra::Cholesky<f64, nalgebra::Dyn>>> = tops
            .iter()
            .enumerate()
            .map(|(a, (_, vs))| {
                if op != "preconditioned" {
                    return None;
                }
                let gaa = g
                    .view((offs[a], offs[a]), (vs.len(), vs.len()))
                    .into_owned();
                nalgebra::Cholesky::new((&gaa + gaa.transpose()) * 0.5)
            })
            .collect();
        for a in 0..tops.len() {
            let ranks_a = ranks_of(tops[a].0);
            for b in a + 1..tops.len() {
                let ranks_b = ranks_of(tops[b].0);
                let (ka, kb) = (tops[a].1.len(), tops[b].1.len());
                let m = g.view((offs[a], offs[b]), (ka, kb)).into_owned();
                let (q, gr, angles) = match (&whiten[a], &whiten[b]) {
                    (Some(la), Some(lb)) => {
                        let left = la.l().solve_lower_triangular(&m).unwrap_or(m.clone());
                        let both = lb
                            .l()
                            .solve_lower_triangular(&left.transpose())
                            .map(|x| x.transpose())
                            .unwrap_or(left);
                        overlap_from_gram(&both)
                    }
                    _ => overlap_from_gram(&m),
                };
                let consecutive = next_in_chain[a] == Some(b);
                let (tw, t) = (tops[a].0, tops[b].0);
                let trusted = step_trusted[a] && step_trusted[b];
                ov.push(op, tw, t, q, gr, &angles, consecutive, trusted);
                // Per-vector displacement, matched by the Hungarian algorithm on |⟨·,·⟩|.
                let k = ka.min(kb);
                let w: Vec<Vec<f64>> = (0..k)
                    .map(|i| (0..k).map(|j| m[(i, j)].abs()).collect())
                    .collect();
                let pi = hungarian_max(&w);
                for i in 0..k {
                    let (ra, rb, rs) = (ranks_a[i], ranks_b[pi[i]], ranks_b[i]);
                    let isolated_a = pairs.isolated(op, tw, ra);
                    let matched =
                        (isolated_a && pairs.isolated(op, t, rb)).then(|| 1.0 - w[i][pi[i]]);
                    let same = (isolated_a && pairs.isolated(op, t, rs)).then(|| 1.0 - w[i][i]);
                    dp.push(DisplacementRow {
                        op,
                        tw,
                        t,
                        rank: ra,
                        matched_rank: rb,
                        matched,
                        same,
                        consecutive,
                        trusted: pairs.trusted(op, tw, ra) && pairs.trusted(op, t, rb),
                    });
                }
            }
        }
    }
    ov.write(&out.join("metrics/overlap.arrow"))?;
    dp.write(&out.join("metrics/displacement.arrow"))?;
    // The Hessian's top-k subspace against the GGN's and the Fisher's.
    operator_overlap(&bases, &pairs, out)?;

    // Spectrum: degeneracy and the stability thresholds.
    spectrum(&pairs, input, out)?;
    // Gradient and update alignment with the Hessian's top-k subspace.
    alignment(input, bases.get("hessian"), &pairs, out)?;
    // The null model, as bands.
    let mut meta = serde_json::json!({
        "pairs": n_pairs,
        "trusted_pairs": n_trusted_pairs,
    });
    if let Some(n) = &input.null {
        let null = load(n.vectors, "replica")?;
        let null_pairs = read_pairs_by(n.values, "replica", p.degeneracy_threshold)?;
        let (replicas, trusted) = null_metrics(&null, &null_pairs, n.tol, &layout, out, gram_fn)?;
        meta["null_replicas"] = serde_json::json!(replicas);
        meta["null_trusted_replicas"] = serde_json::json!(trusted);
    }
    Ok(meta)
}

/// `metrics/operator_overlap.arrow`, written when the hessian stage
/// computed operators besides the Hessian (`hessian.operators`): at each
/// step both have, the Hessian's top-k subspace against the other
/// operator's, from their cross-Gram M = V_Hᵀ V_O (both orthonormal, from
/// one symmetric Lanczos each). Columns: step, operator ("hessian"), other
/// ("ggn", "fisher"), subspace_overlap q = ‖M‖_F²/k, grassmann,
/// principal_angles, chance (E[q] for a uniformly random k_O-dimensional
/// subspace: k_O/P), trusted (every top-k pair of both trusted).
///
/// Papyan (2019, 2020) traces the Hessian's C outliers to the GGN's class
/// structure: q near 1 says the top of H is the GGN's.
fn operator_overlap(bases: &Bases, pairs: &Pairs, out: &Path) -> StageResult<()> {
    let Some(hess) = bases.get("hessian") else {
        return Ok(());
    };
    let others: Vec<(&String, &StepVectors)> = bases
        .iter()
        .filter(|(op, _)| !matches!(op.as_str(), "hessian" | "preconditioned"))
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    let top = |vs: &[(i32, Vec<f64>)]| -> Vec<(i32, Vec<f64>)> {
        vs.iter().filter(|(r, _)| *r >= 0).cloned().collect()
    };
    let (mut step, mut op, mut other, mut q, mut g, mut angles, mut chance, mut trusted) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (name, steps) in others {
        for (s, vs) in steps {
            let Some(hv) = hess.get(s) else { continue };
            let (a, b) = (top(hv), top(vs));
            if a.is_empty() || b.is_empty() {
                continue;
            }
            let m = DMatrix::<f64>::from_fn(a.len(), b.len(), |i, j| {
                a[i].1.iter().zip(&b[j].1).map(|(x, y)| x * y).sum()
            });
            let (qq, gg, ang) = overlap_from_gram(&m);
            step.push(*s);
            op.push("hessian".to_string());
            other.push(name.clone());
            q.push(qq);
            g.push(gg);
            angles.push(ang.iter().map(|&x| x as f32).collect::<Vec<f32>>());
            chance.push(b.len() as f64 / a[0].1.len() as f64);
            trusted.push(pairs.step_trusted("hessian", *s, &a) && pairs.step_trusted(name, *s, &b));
        }
    }
    write_batch(
        &out.join("metrics/operator_overlap.arrow"),
        vec![
            ("step", col_i64(step)),
            ("operator", col_str(&op)),
            ("other", col_str(&other)),
            ("subspace_overlap", col_f64(q)),
            ("grassmann", col_f64(g)),
            ("principal_angles", list_f32(&angles)),
            ("chance", col_f64(chance)),
            ("trusted", col_bool(trusted)),
        ],
        false,
    )
}

/// The stability threshold of `operator`'s top eigenvalue for the update
/// that follows a checkpoint (learning rate `lr`, as scheduled there; `t`
/// updates taken): the value above which gradient descent's linearization
/// along the top eigenvector diverges. None where no linear threshold
/// exists (sign and orthogonalized updates: Lion, Muon), or for an operator
/// the update does not follow (the raw Hessian of an adaptive method).
///
/// - SGD (Cohen et al. 2021): 2/η; heavy ball (2+2β)/η, divided by (1−τ)
///   with dampening τ; Nesterov (2+2β)/((1+2β)η). With L2 weight decay wd
///   the update sees H + wd·I, so the threshold on λ(H) is lowered by wd.
/// - Adam/AdamW, on the preconditioned operator (Cohen et al. 2022,
///   arXiv 2207.14484): 2(1+β1)/((1−β1)η) (38/η at β1 = 0.9).
/// - RMSprop, on its preconditioned operator: 2/η, or (2+2β)/η with momentum.
/// - Adagrad, on its preconditioned operator: 2/η_t with
///   η_t = η/(1 + (t−1)·lr_decay), as torch applies lr_decay.
///
/// The preconditioned operators carry their coupled weight decay inside
/// (the hessian stage applies D^{-1/2}(H + wd·I)D^{-1/2}), so no shift here.
pub fn stability_threshold(opt: &OptimizerParams, operator: &str, lr: f64, t: u64) -> Option<f64> {
    let o = opt.resolved();
    let beta = o.momentum.unwrap_or(0.0);
    match (operator, o.name) {
        ("hessian", OptName::Sgd) => {
            let damp = o.dampening.unwrap_or(0.0);
            let base = if beta == 0.0 {
                2.0 / lr
            } else if o.nesterov == Some(true) {
                (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * lr)
            } else {
                (2.0 + 2.0 * beta) / ((1.0 - damp) * lr)
            };
            Some(base - o.weight_decay.unwrap_or(0.0))
        }
        ("preconditioned", OptName::Adam | OptName::Adamw) => {
            let b1 = o.beta1.unwrap_or(0.9);
            Some(2.0 * (1.0 + b1) / ((1.0 - b1) * lr))
        }
        ("preconditioned", OptName::Rmsprop) => Some((2.0 + 2.0 * beta) / lr),
        ("preconditioned", OptName::Adagrad) => {
            let decay = o.lr_decay.unwrap_or(0.0);
            Some(2.0 * (1.0 + (t.max(1) - 1) as f64 * decay) / lr)
        }
        _ => None,
    }
}

fn spectrum(pairs: &Pairs, input: &MetricsInputs<'_>, out: &Path) -> StageResult<()> {
    let thresholds = |operator: &str, st: i64| -> Option<f64> {
        let t = (st.max(0) as u64).min(input.steps.saturating_sub(1));
        let lr = input.schedule.lr(input.optimizer.lr, t, input.steps);
        stability_threshold(input.optimizer, operator, lr, t)
    };
    let (mut s_step, mut s_op, mut s_rank, mut s_ev) = (vec![], vec![], vec![], vec![]);
    let (mut s_gap, mut s_deg, mut s_thr, mut s_over, mut s_trusted) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (operator, by) in &pairs.0 {
        let mut steps: Vec<i64> = by.keys().map(|k| k.0).collect();
        steps.dedup();
        for st in steps {
            // Each step's pairs from the largest eigenvalue down.
            let mut rows: Vec<(i32, &PairInfo)> = by
                .range((st, i32::MIN)..=(st, i32::MAX))
                .map(|(k, v)| (k.1, v))
                .collect();
            rows.sort_by(|a, b| b.1.eigenvalue.total_cmp(&a.1.eigenvalue));
            let thr = thresholds(operator, st);
            for (r, info) in rows {
                s_step.push(st);
                s_op.push(operator.clone());
                s_rank.push(r);
                s_ev.push(info.eigenvalue);
                s_gap.push(info.rel_gap);
                s_deg.push(info.degenerate);
                s_thr.push(thr.unwrap_or(f64::NAN));
                s_over.push(thr.map(|t| r == 0 && info.eigenvalue > t).unwrap_or(false));
                s_trusted.push(info.trusted());
            }
        }
    }
    write_batch(
        &out.join("metrics/spectrum.arrow"),
        vec![
            ("step", col_i64(s_step)),
            ("operator", col_str(&s_op)),
            ("rank", col_i32(s_rank)),
            ("eigenvalue", col_f64(s_ev)),
            ("rel_gap", col_opt_f64(s_gap)),
            ("degenerate", col_opt_bool(s_deg)),
            ("threshold", col_f64(s_thr)),
            ("over_threshold", col_bool(s_over)),
            ("trusted", col_bool(s_trusted)),
        ],
        false,
    )
}

/// A nullable f64 column (None → null).
fn col_opt_f64(v: Vec<Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from(v))
}

/// A nullable bool column (None → null).
fn col_opt_bool(v: Vec<Option<bool>>) -> ArrayRef {
    Arc::new(BooleanArray::from(v))
}

/// ‖V_kᵀ g‖² / ‖g‖² (Gur-Ari et al. 2018), for g = ∇L(θ_t) on the analysis
/// set (the rows V_k is the Hessian of), on the train split, and for the
/// realized update Δθ_t; trusted when every top-k pair of the Hessian at t is.
fn alignment(
    input: &MetricsInputs<'_>,
    hessian: Option<&StepVectors>,
    pairs: &Pairs,
    out: &Path,
) -> StageResult<()> {
    let analysis = match input.gradients {
        Some(path) => read_gradients(path)?,
        None => BTreeMap::new(),
    };
    let (mut a_step, mut a_grad, mut a_train, mut a_upd, mut a_trusted) =
        (vec![], vec![], vec![], vec![], vec![]);
    if let Some(steps) = hessian {
        for (step, path) in &input.checkpoints {
            let Some(vs) = steps.get(&(*step as i64)) else {
                continue;
            };
            let ck = crate::train::read_checkpoint(path)?;
            let frac = |g: Option<&Vec<f64>>| -> f64 {
                let Some(g) = g else { return f64::NAN };
                let gg: f64 = g.iter().map(|x| x * x).sum();
                if gg.is_nan() || gg <= 0.0 {
                    return f64::NAN;
                }
                let proj: f64 = vs
                    .iter()
                    .filter(|(r, _)| *r >= 0)
                    .map(|(_, v)| v.iter().zip(g).map(|(a, b)| a * b).sum::<f64>().powi(2))
                    .sum();
                proj / gg
            };
            a_step.push(*step as i64);
            a_grad.push(frac(analysis.get(&(*step as i64))));
            a_train.push(frac(ck.get("grad")));
            a_upd.push(frac(ck.get("update")));
            a_trusted.push(pairs.step_trusted("hessian", *step as i64, vs));
        }
    }
    write_batch(
        &out.join("metrics/alignment.arrow"),
        vec![
            ("step", col_i64(a_step)),
            ("grad_alignment", col_f64(a_grad)),
            ("grad_alignment_train", col_f64(a_train)),
            ("update_alignment", col_f64(a_upd)),
            ("trusted", col_bool(a_trusted)),
        ],
        false,
    )
}

/// step → the analysis-set gradient, from the hessian stage's
/// `eigen/gradient.arrow` (its null rows, where `hessian.keep_vectors` kept
/// no vectors, left out).
fn read_gradients(path: &Path) -> StageResult<BTreeMap<i64, Vec<f64>>> {
    let t = Table::open(path)?;
    let steps = t.i64("step")?;
    let mut out = BTreeMap::new();
    for i in 0..t.len() {
        if let Some(g) = t.list_f64_opt_row("gradient", i)? {
            out.insert(steps.value(i), g);
        }
    }
    Ok(out)
}

/// The null model's metrics (module doc); returns (replicas, replicas whose
/// every top-k pair is trusted).
fn null_metrics(
    null: &Bases,
    pairs: &Pairs,
    tol: f64,
    layout: &Layout,
    out: &Path,
    gram_fn: GramFn<'_>,
) -> StageResult<(usize, usize)> {
    let Some(reps) = null.get("hessian") else {
        return Ok((0, 0));
    };
    let mut loc = Loc {
        flagged: true,
        ..Loc::default()
    };
    // Bands per rank over the trusted replicas: (p_ipr, frac50, frac90),
    // and the count of those left out.
    #[derive(Default)]
    struct Band {
        /// (P·IPR, frac50, frac90) per trusted replica.
        trusted: Vec<(f64, f64, f64)>,
        left_out: i64,
    }
    let mut per_rank: BTreeMap<i32, Band> = BTreeMap::new();
    for (r, vs) in reps {
        for (rank, v) in vs {
            let s = VectorStats::of(v, layout);
            let trusted = pairs.trusted("hessian", *r, *rank);
            let e = per_rank.entry(*rank).or_default();
            if trusted {
                e.trusted.push((s.p * s.ipr, s.f50, s.f90));
            } else {
                e.left_out += 1;
            }
            loc.push_stats(*r, "hessian", *rank, &s, trusted);
        }
    }
    loc.write(out, "null_", "replica")?;
    let (mut b_rank, mut b_n, mut b_out, mut cols) = (vec![], vec![], vec![], vec![Vec::new(); 9]);
    for (r, band) in &per_rank {
        let xs = &band.trusted;
        b_rank.push(*r);
        b_n.push(xs.len() as i64);
        b_out.push(band.left_out);
        for (c, f) in [
            |x: &(f64, f64, f64)| x.0,
            |x: &(f64, f64, f64)| x.1,
            |x: &(f64, f64, f64)| x.2,
        ]
        .iter()
        .enumerate()
        {
            let vals: Vec<f64> = xs.iter().map(f).collect();
            // No trusted replica at this rank: no band (NaN), not ±inf.
            let (lo, mean, hi) = if vals.is_empty() {
                (f64::NAN, f64::NAN, f64::NAN)
            } else {
                (
                    vals.iter().cloned().fold(f64::INFINITY, f64::min),
                    vals.iter().sum::<f64>() / vals.len() as f64,
                    vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                )
            };
            cols[3 * c].push(lo);
            cols[3 * c + 1].push(mean);
            cols[3 * c + 2].push(hi);
        }
    }
    let names = [
        "p_ipr_min",
        "p_ipr_mean",
        "p_ipr_max",
        "frac50_min",
        "frac50_mean",
        "frac50_max",
        "frac90_min",
        "frac90_mean",
        "frac90_max",
    ];
    let n_bands = b_rank.len();
    let mut columns = vec![("rank", col_i32(b_rank))];
    for (name, c) in names.iter().zip(cols) {
        columns.push((name, col_f64(c)));
    }
    columns.push(("replicas", col_i64(b_n)));
    columns.push(("untrusted", col_i64(b_out)));
    columns.push(("tol", col_f64(vec![tol; n_bands])));
    write_batch(&out.join("metrics/null_band.arrow"), columns, false)?;
    // A replica is trusted as a step is: every one of its top-k pairs.
    let replica_trusted = |r: i64| pairs.step_trusted("hessian", r, &reps[&r]);
    let n_trusted = reps.keys().filter(|r| replica_trusted(**r)).count();
    // Overlaps between replicas' top-k subspaces.
    let tops = tops(reps);
    let (mut ra, mut rb, mut rq, mut rd, mut rt) = (vec![], vec![], vec![], vec![], vec![]);
    if !tops.is_empty() {
        let (g, offs) = gram(&tops, gram_fn);
        for a in 0..tops.len() {
            for b in a + 1..tops.len() {
                let m = g
                    .view((offs[a], offs[b]), (tops[a].1.len(), tops[b].1.len()))
                    .into_owned();
                ra.push(tops[a].0);
                rb.push(tops[b].0);
                rq.push(overlap_from_gram(&m).0);
                rd.push(mean_matched_displacement(&m));
                rt.push(replica_trusted(tops[a].0) && replica_trusted(tops[b].0));
            }
        }
    }
    write_batch(
        &out.join("metrics/null_overlap.arrow"),
        vec![
            ("replica_a", col_i64(ra)),
            ("replica_b", col_i64(rb)),
            ("subspace_overlap", col_f64(rq)),
            ("matched_displacement", col_f64(rd)),
            ("trusted", col_bool(rt)),
        ],
        false,
    )?;
    Ok((reps.len(), n_trusted))
}

#[derive(Default)]
struct OverlapRows {
    op: Vec<String>,
    tw: Vec<i64>,
    t: Vec<i64>,
    q: Vec<f64>,
    g: Vec<f64>,
    angles: Vec<Vec<f32>>,
    consecutive: Vec<bool>,
    trusted: Vec<bool>,
}

impl OverlapRows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        op: &str,
        tw: i64,
        t: i64,
        q: f64,
        g: f64,
        angles: &[f64],
        consecutive: bool,
        trusted: bool,
    ) {
        self.op.push(op.to_string());
        self.tw.push(tw);
        self.t.push(t);
        self.q.push(q);
        self.g.push(g);
        self.angles.push(angles.iter().map(|&a| a as f32).collect());
        self.consecutive.push(consecutive);
        self.trusted.push(trusted);
    }
    fn write(self, path: &Path) -> StageResult<()> {
        write_batch(
            path,
            vec![
                ("operator", col_str(&self.op)),
                ("t_w", col_i64(self.tw)),
                ("t", col_i64(self.t)),
                ("subspace_overlap", col_f64(self.q)),
                ("grassmann", col_f64(self.g)),
                ("principal_angles", list_f32(&self.angles)),
                ("consecutive", col_bool(self.consecutive)),
                ("trusted", col_bool(self.trusted)),
            ],
            false,
        )
    }
}

/// One row of `displacement.arrow`; the displacements are None where the
/// vectors are not isolated (module doc, Degeneracy).
struct DisplacementRow<'a> {
    op: &'a str,
    tw: i64,
    t: i64,
    rank: i32,
    matched_rank: i32,
    matched: Option<f64>,
    same: Option<f64>,
    consecutive: bool,
    trusted: bool,
}

#[derive(Default)]
struct DisplacementRows {
    op: Vec<String>,
    tw: Vec<i64>,
    t: Vec<i64>,
    rank: Vec<i32>,
    matched_rank: Vec<i32>,
    matched: Vec<Option<f64>>,
    same: Vec<Option<f64>>,
    consecutive: Vec<bool>,
    per_step: Vec<Option<f64>>,
    trusted: Vec<bool>,
}

impl DisplacementRows {
    fn push(&mut self, r: DisplacementRow<'_>) {
        self.op.push(r.op.to_string());
        self.tw.push(r.tw);
        self.t.push(r.t);
        self.rank.push(r.rank);
        self.matched_rank.push(r.matched_rank);
        self.matched.push(r.matched);
        self.same.push(r.same);
        self.consecutive.push(r.consecutive);
        self.per_step
            .push(r.matched.map(|m| m / (r.t - r.tw).max(1) as f64));
        self.trusted.push(r.trusted);
    }
    fn write(self, path: &Path) -> StageResult<()> {
        write_batch(
            path,
            vec![
                ("operator", col_str(&self.op)),
                ("t_w", col_i64(self.tw)),
                ("t", col_i64(self.t)),
                ("rank", col_i32(self.rank)),
                ("matched_rank", col_i32(self.matched_rank)),
                ("matched_displacement", col_opt_f64(self.matched)),
                ("same_rank_displacement", col_opt_f64(self.same)),
                ("consecutive", col_bool(self.consecutive)),
                ("per_step", col_opt_f64(self.per_step)),
                ("trusted", col_bool(self.trusted)),
            ],
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn unit(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
        let v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
        let s = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter().map(|x| x / s).collect()
    }

    /// The quickselect equals the definition (sort, then prefix sums).
    #[test]
    fn mass_fraction_equals_sorting() {
        let by_sorting = |v: &[f64], share: f64| {
            let mut sq: Vec<f64> = v.iter().map(|x| x * x).collect();
            let total: f64 = sq.iter().sum();
            sq.sort_by(|a, b| b.total_cmp(a));
            let mut acc = 0.0;
            for (i, s) in sq.iter().enumerate() {
                acc += s;
                if acc >= share * total * (1.0 - 1e-12) {
                    return (i + 1) as f64 / v.len() as f64;
                }
            }
            1.0
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for n in [1usize, 5, 33, 100, 1000, 4097] {
            let mut v = unit(&mut rng, n);
            if n > 10 {
                v[3] *= 30.0; // some localization
            }
            for share in [0.5, 0.9, 0.99] {
                assert_eq!(
                    mass_fraction(&v, share),
                    by_sorting(&v, share),
                    "n = {n}, share = {share}"
                );
            }
        }
    }

    #[test]
    fn ipr_closed_forms() {
        let mut one_hot = vec![0.0; 50];
        one_hot[7] = 3.0;
        assert!((ipr(&one_hot) - 1.0).abs() < 1e-15);
        let uniform = vec![0.2; 50];
        assert!((ipr(&uniform) - 1.0 / 50.0).abs() < 1e-15);
        assert!((mass_fraction(&one_hot, 0.9) - 1.0 / 50.0).abs() < 1e-15);
        assert!((mass_fraction(&uniform, 0.5) - 0.5).abs() < 1e-15);
        assert!((mass_fraction(&uniform, 0.9) - 0.9).abs() < 1e-15);
    }

    /// E[IPR] = 3/(P+2) for a uniformly random unit vector, so P·IPR → 3.
    /// Over 400 samples at P = 2000, the sample mean of P·IPR is within
    /// 5 standard errors of 3P/(P+2) (its sd is ≈ √24/√P·… ≈ 0.11 per sample).
    #[test]
    fn random_unit_vectors_have_p_ipr_near_3() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let p = 2000;
        let xs: Vec<f64> = (0..400)
            .map(|_| p as f64 * ipr(&unit(&mut rng, p)))
            .collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd =
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt();
        let expect = 3.0 * p as f64 / (p as f64 + 2.0);
        assert!(
            (mean - expect).abs() < 5.0 * sd / (xs.len() as f64).sqrt(),
            "mean {mean}, sd {sd}"
        );
    }

    #[test]
    fn overlap_closed_forms() {
        let id = DMatrix::<f64>::identity(4, 4);
        let (q, g, angles) = overlap_from_gram(&id);
        assert!((q - 1.0).abs() < 1e-12 && g.abs() < 1e-6 && angles.iter().all(|a| a.abs() < 1e-6));
        let zero = DMatrix::<f64>::zeros(4, 4);
        let (q, g, _) = overlap_from_gram(&zero);
        assert!(q.abs() < 1e-15);
        assert!((g - 2.0 * std::f64::consts::FRAC_PI_2).abs() < 1e-12);
    }

    /// Random k-subspaces of R^P overlap by k/P on average (docs/science.md's null).
    #[test]
    fn random_subspaces_overlap_by_k_over_p() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (p, k) = (300, 5);
        let basis = |rng: &mut ChaCha8Rng| {
            let a = DMatrix::<f64>::from_fn(p, k, |_, _| StandardNormal.sample(rng));
            a.qr().q()
        };
        let qs: Vec<f64> = (0..200)
            .map(|_| {
                let (a, b) = (basis(&mut rng), basis(&mut rng));
                overlap_from_gram(&a.tr_mul(&b)).0
            })
            .collect();
        let mean = qs.iter().sum::<f64>() / qs.len() as f64;
        assert!(
            (mean - k as f64 / p as f64).abs() < 0.15 * k as f64 / p as f64,
            "mean {mean} vs k/P {}",
            k as f64 / p as f64
        );
    }

    /// The null's D baseline: a permuted, sign-flipped copy of a basis has
    /// D = 0; a rotation by θ in a plane has D = 1 − max(|cos θ|, |sin θ|).
    #[test]
    fn mean_matched_displacement_closed_forms() {
        let m = DMatrix::from_row_slice(3, 3, &[0., -1., 0., 0., 0., 1., 1., 0., 0.]);
        assert!(mean_matched_displacement(&m).abs() < 1e-15);
        for theta in [0.1f64, 0.5, 1.0, 1.4] {
            let (c, s) = (theta.cos(), theta.sin());
            let m = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
            let want = 1.0 - c.abs().max(s.abs());
            let got = mean_matched_displacement(&m);
            assert!((got - want).abs() < 1e-15, "θ = {theta}: {got} vs {want}");
        }
        // Rectangular: k = min of the sides, the best column or row.
        let m = DMatrix::from_row_slice(1, 2, &[0.3, -0.9]);
        assert!((mean_matched_displacement(&m) - 0.1).abs() < 1e-15);
        assert!((mean_matched_displacement(&m.transpose()) - 0.1).abs() < 1e-15);
    }

    #[test]
    fn hungarian_equals_brute_force() {
        fn permutations(n: usize) -> Vec<Vec<usize>> {
            if n == 0 {
                return vec![vec![]];
            }
            let mut out = Vec::new();
            for p in permutations(n - 1) {
                for i in 0..=p.len() {
                    let mut q = p.clone();
                    q.insert(i, n - 1);
                    out.push(q);
                }
            }
            out
        }
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for k in 1..=6 {
            for _ in 0..30 {
                let w: Vec<Vec<f64>> = (0..k)
                    .map(|_| (0..k).map(|_| rand::Rng::random::<f64>(&mut rng)).collect())
                    .collect();
                let score =
                    |pi: &[usize]| pi.iter().enumerate().map(|(i, &j)| w[i][j]).sum::<f64>();
                let best = permutations(k)
                    .iter()
                    .map(|p| score(p))
                    .fold(f64::NEG_INFINITY, f64::max);
                let ours = hungarian_max(&w);
                let mut seen = ours.clone();
                seen.sort();
                assert_eq!(seen, (0..k).collect::<Vec<_>>(), "a permutation");
                assert!(
                    (score(&ours) - best).abs() < 1e-12,
                    "k = {k}: {} vs brute force {best}",
                    score(&ours)
                );
            }
        }
    }

    /// Input-column mass: column j of the first weight matrix, against a
    /// direct sum over its flat indices, and the columns add up to the
    /// block's mass.
    #[test]
    fn input_mass_sums_first_layer_columns() {
        let arch = Arch {
            widths: vec![3, 4, 2],
            activation: crate::mlp::Activation::Tanh,
        };
        let layout = Layout::of(&arch);
        let p = arch.num_params();
        let v: Vec<f64> = (0..p).map(|i| ((i * 7 % 11) as f64 - 5.0) / 10.0).collect();
        let m = layout.input_mass(&v);
        assert_eq!(m.len(), 3);
        // W₀ is [4, 3] row-major at offset 0: column j is v[o·3 + j].
        for (j, mj) in m.iter().enumerate() {
            let want: f64 = (0..4).map(|o| v[o * 3 + j].powi(2)).sum();
            assert!((mj - want).abs() < 1e-15);
        }
        let block: f64 = v[..12].iter().map(|x| x * x).sum();
        assert!((m.iter().sum::<f64>() - block).abs() < 1e-14);
    }

    #[test]
    fn neuron_mass_sums_hidden_blocks() {
        let arch = Arch {
            widths: vec![2, 3, 2],
            activation: crate::mlp::Activation::Tanh,
        };
        let layout = Layout::of(&arch);
        let v: Vec<f64> = (0..arch.num_params()).map(|i| i as f64).collect();
        let nm = layout.neuron_mass(&v);
        assert_eq!(nm.len(), 3);
        // Neuron 1 of layer 0: W0[1, :] = v[2], v[3]; b0[1] = v[7]; W1[:, 1] = v[10], v[13].
        let expect = 2f64.powi(2) + 3f64.powi(2) + 7f64.powi(2) + 10f64.powi(2) + 13f64.powi(2);
        assert_eq!(nm[1], (0, 1, expect));
        let total: f64 = layout.block_mass(&v).iter().map(|b| b.2).sum();
        assert!((total - v.iter().map(|x| x * x).sum::<f64>()).abs() < 1e-9);
    }
}
