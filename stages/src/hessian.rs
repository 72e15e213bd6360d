//! The hessian stage's parameters, and the preconditioner it reads from a
//! checkpoint (the operator itself is `stages_torch::hessian`): top-k
//! eigenpairs of H = ∇²L(θ) at every checkpoint.
//!
//! L is the mean cross-entropy over the analysis set: the first M rows of the
//! train split, in stored order. H·v is a Hessian-vector product by double
//! backprop, ∇_θ(∇_θL · v); the first-order graph is built once per checkpoint
//! and reused by every product.
//!
//! Outputs: `eigen/values.arrow` (step, operator, rank, eigenvalue, residual,
//! hvps, iterations, converged, resolvable, rounding_level),
//! `eigen/vectors.arrow` (step, operator, rank,
//! vector: list<f32>, zstd-compressed), `eigen/gradient.arrow` (step, loss,
//! grad_norm, margin_min, margin_p01, margin_median, gradient: list<f64>:
//! the loss, its gradient ∇L(θ) without weight decay, for the gradient
//! alignment, and the margins z_c − max_{j≠c} z_j, all on the analysis
//! set), and
//! `config.toml`: the run's fully resolved configuration (the train stage's,
//! plus this stage's).
//!
//! `rounding_level` is the operator's own noise at that checkpoint: ten times
//! the spread of two products of the same direction whose roundings differ
//! (`stages_torch::hessian::rounding_level`, three products). It is the
//! floor of Lanczos's stop test (residual ≤ max(tol·|λ₁|, level)), and a
//! pair is `resolvable` when |λ| > level. `hvps` counts those three.

pub use crate::arrow_io::VectorDtype;
use crate::lanczos::Which;
use crate::optim::{OptName, OptimizerParams};
use crate::runtime::Dtype;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn d_which() -> Which {
    Which::Largest
}
fn d_max_iter() -> usize {
    300
}
/// Vectors per block product in Lanczos (see `stages::lanczos`).
pub const DEFAULT_BLOCK: usize = 1;
fn d_block() -> usize {
    DEFAULT_BLOCK
}

/// The residual tolerance when the config gives none: relative to |λ₁|,
/// 1e-6 in f64 and 1e-4 in f32 (docs/science.md §4).
pub fn default_tol(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F64 => 1e-6,
        Dtype::F32 => 1e-4,
    }
}

/// A curvature operator whose top-k the hessian stage computes, besides the
/// preconditioned one (docs/science.md §3). Its name is the `operator`
/// column's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    /// H = ∇²L(θ).
    Hessian,
    /// The generalized Gauss–Newton matrix G = Jᵀ H_z J (PSD).
    Ggn,
    /// The empirical Fisher F = (1/N) Σ_i ∇ℓ_i ∇ℓ_iᵀ (PSD).
    Fisher,
}

impl Operator {
    pub const ALL: [Operator; 3] = [Operator::Hessian, Operator::Ggn, Operator::Fisher];

    /// The `operator` column's value, and the name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Hessian => "hessian",
            Operator::Ggn => "ggn",
            Operator::Fisher => "fisher",
        }
    }
}

fn d_operators() -> Vec<Operator> {
    vec![Operator::Hessian]
}

/// The default list is not written into the key: a config without
/// `operators` keeps the key it had before the field existed.
fn is_default_operators(v: &[Operator]) -> bool {
    v == [Operator::Hessian]
}

/// `hessian.keep_vectors`: the checkpoints whose eigenvectors (and
/// analysis-set gradient) the hessian stage stores. Every checkpoint's
/// eigenpairs are still computed (each warm-starts the next), and its
/// eigenvalues, residuals and trust flags are stored; the vectors are kept
/// at the first and last checkpoints, at every checkpoint whose step is a
/// multiple of `every`, and at the steps in `at`. The metrics built on
/// vectors (localization, masses, overlaps, displacements, alignment) are
/// then computed at those checkpoints only. The default keeps every one,
/// and is not written into the key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepVectors {
    /// Keep the checkpoints at steps that are multiples of this (in steps,
    /// like `train.checkpoints.every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Keep these steps; each must be a checkpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<u64>,
}

impl KeepVectors {
    /// Every checkpoint (the default).
    pub fn is_all(&self) -> bool {
        self.every.is_none() && self.at.is_empty()
    }

    /// `every = 1` keeps every checkpoint: the default, and its key.
    pub fn normalized(&self) -> KeepVectors {
        if self.every == Some(1) {
            return KeepVectors::default();
        }
        let mut at = self.at.clone();
        at.sort_unstable();
        at.dedup();
        KeepVectors {
            every: self.every,
            at,
        }
    }

    /// Whether the checkpoint at `step` keeps its vectors, among checkpoints
    /// from `first` to `last`.
    pub fn keeps(&self, step: u64, first: u64, last: u64) -> bool {
        self.is_all()
            || step == first
            || step == last
            || self.every.is_some_and(|e| e > 0 && step.is_multiple_of(e))
            || self.at.contains(&step)
    }

    /// The kept steps among `checkpoints` (ascending).
    pub fn steps(&self, checkpoints: &[u64]) -> Vec<u64> {
        let (Some(&first), Some(&last)) = (checkpoints.first(), checkpoints.last()) else {
            return Vec::new();
        };
        checkpoints
            .iter()
            .copied()
            .filter(|&s| self.keeps(s, first, last))
            .collect()
    }

    /// Range checks against the train stage's checkpoint steps. Errors are
    /// (the field under `keep_vectors`; the message with the fix).
    pub fn check(&self, checkpoints: &[u64]) -> Result<(), crate::error::ParamError> {
        if self.every == Some(0) {
            return Err(crate::error::ParamError::new(
                "every",
                "must be at least 1 (keep the checkpoints at multiples of this step), or omitted",
            ));
        }
        if let Some(a) = self.at.iter().find(|a| !checkpoints.contains(a)) {
            let below = checkpoints.iter().rev().find(|&&c| c < *a);
            let above = checkpoints.iter().find(|&&c| c > *a);
            let near = match (below, above) {
                (Some(b), Some(c)) => format!("the nearest are {b} and {c}"),
                (Some(b), None) => format!("the last is {b}"),
                (None, Some(c)) => format!("the first is {c}"),
                (None, None) => "there are none".into(),
            };
            return Err(crate::error::ParamError::new(
                "at",
                format!(
                    "step {a} is not a checkpoint ({near}); give checkpoint steps, or add {a} to train.checkpoints.at"
                ),
            ));
        }
        Ok(())
    }
}

/// The `[trace]` section: stochastic trace estimates of each operator in
/// `hessian.operators` at every checkpoint (`crate::trace`), written to
/// `eigen/trace.arrow`. An empty `[trace]` means the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceParams {
    /// Products per estimator: Hutchinson takes this many probes, Hutch++
    /// splits this many products in three.
    #[serde(default = "d_trace_matvecs")]
    pub matvecs: usize,
    /// Also the exact traces, from the operators' exact diagonals (Hessian
    /// backpropagation: no products, no variance; `method = "exact"`).
    #[serde(default = "d_true")]
    pub exact: bool,
}

/// 90 products: Hutch++'s sketch of 30 and 30 residual probes.
pub const DEFAULT_TRACE_MATVECS: usize = 90;
fn d_trace_matvecs() -> usize {
    DEFAULT_TRACE_MATVECS
}

impl Default for TraceParams {
    fn default() -> Self {
        TraceParams {
            matvecs: DEFAULT_TRACE_MATVECS,
            exact: true,
        }
    }
}

/// The `[hessian]` section as written: every field with its default, defined
/// here once. `resolve` makes the stage's parameters from it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HessianSettings {
    pub k: usize,
    #[serde(default)]
    pub analysis_size: Option<usize>,
    #[serde(default = "d_which")]
    pub which: Which,
    #[serde(default)]
    pub tol: Option<f64>,
    #[serde(default = "d_max_iter")]
    pub max_iter: usize,
    #[serde(default)]
    pub chunk_rows: Option<usize>,
    #[serde(default = "d_true")]
    pub warm_start: bool,
    #[serde(default = "d_true")]
    pub preconditioned: bool,
    #[serde(default = "d_block")]
    pub block: usize,
    #[serde(default)]
    pub max_basis: Option<usize>,
    #[serde(default = "d_operators")]
    pub operators: Vec<Operator>,
    #[serde(default)]
    pub layers: bool,
    #[serde(default)]
    pub vector_dtype: VectorDtype,
    #[serde(default)]
    pub keep_vectors: KeepVectors,
}

impl HessianSettings {
    /// The hessian stage's parameters at `dtype`: the tolerance resolved
    /// (so that the key holds the number used), the seed 0.
    pub fn resolve(&self, dtype: Dtype) -> HessianParams {
        HessianParams {
            k: self.k,
            analysis_size: self.analysis_size,
            which: self.which,
            tol: Some(self.tol.unwrap_or(default_tol(dtype))),
            max_iter: self.max_iter,
            seed: 0,
            dtype,
            chunk_rows: self.chunk_rows,
            warm_start: self.warm_start,
            preconditioned: self.preconditioned,
            block: self.block,
            max_basis: self.max_basis,
            operators: self.operators.clone(),
            trace: None,
            density: None,
            layers: self.layers,
            vector_dtype: self.vector_dtype,
            keep_vectors: self.keep_vectors.normalized(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HessianParams {
    pub k: usize,
    /// Rows of the train split in the analysis set; None = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_size: Option<usize>,
    #[serde(default = "d_which")]
    pub which: Which,
    /// Residual tolerance relative to |λ1|; None = 1e-6 in f64, 1e-4 in f32 (docs/science.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tol: Option<f64>,
    #[serde(default = "d_max_iter")]
    pub max_iter: usize,
    #[serde(default)]
    pub seed: u64,
    pub dtype: Dtype,
    /// Rows per chunk of the HVP (bounded memory); None = all rows at once,
    /// with the first-order graph built once per checkpoint and reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_rows: Option<usize>,
    /// Start Lanczos from the previous checkpoint's eigenvectors.
    #[serde(default = "d_true")]
    pub warm_start: bool,
    /// Also the preconditioned operator D^{-1/2} H D^{-1/2} for adaptive optimizers.
    #[serde(default = "d_true")]
    pub preconditioned: bool,
    /// Vectors per block product in block Lanczos (1 = classic Lanczos).
    #[serde(default = "d_block")]
    pub block: usize,
    /// Thick-restart Lanczos holding at most this many basis vectors
    /// (`stages::lanczos::lanczos_restarted`); None = no restart, and no
    /// key change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_basis: Option<usize>,
    /// The operators whose top-k is computed, "hessian" always among them
    /// (the preconditioned one is `preconditioned`'s).
    #[serde(default = "d_operators", skip_serializing_if = "is_default_operators")]
    pub operators: Vec<Operator>,
    /// Trace estimates (the `[trace]` section); None = none, and no key change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceParams>,
    /// Spectral densities (the `[density]` section); None = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density: Option<crate::density::DensityParams>,
    /// Also the top-k of each layer's diagonal block of H (its own block
    /// products), in `eigen/layer_values.arrow`. False is not written into
    /// the key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub layers: bool,
    /// How `vectors.arrow` stores the eigenvectors (f32, f16 or bf16; the
    /// values and every other column are unaffected). f32 is not written
    /// into the key.
    #[serde(default, skip_serializing_if = "VectorDtype::is_f32")]
    pub vector_dtype: VectorDtype,
    /// The checkpoints whose vectors are stored ([`KeepVectors`]); every
    /// one by default, which is not written into the key.
    #[serde(default, skip_serializing_if = "KeepVectors::is_all")]
    pub keep_vectors: KeepVectors,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn d_true() -> bool {
    true
}

impl HessianParams {
    pub fn tol(&self) -> f64 {
        self.tol.unwrap_or(default_tol(self.dtype))
    }
}

/// D^{-1/2} from an adaptive optimizer's checkpointed state: D is the
/// diagonal the last update divided the gradient by, as torch.optim applied
/// it (Cohen et al. 2022, "Adaptive gradient methods at the edge of
/// stability", arXiv 2207.14484):
///
/// - Adam/AdamW: θ ← θ − η m̂/(√v̂ + ε) with m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t),
///   so D = (1 − β1^t)(√v̂ + ε) (the bias correction of m folded into D, so
///   that the threshold stays 2(1+β1)/((1−β1)η));
/// - RMSprop: D = √square_avg + ε, or √(square_avg − grad_avg²) + ε when
///   centered;
/// - Adagrad: D = √sum + ε.
///
/// t is the checkpoint's `step` (updates taken). None when the optimizer has
/// no diagonal preconditioner or no step was taken yet.
pub fn preconditioner_inv_sqrt(
    opt: &OptimizerParams,
    state: &BTreeMap<String, Vec<f64>>,
) -> Option<Vec<f64>> {
    let r = opt.resolved();
    let eps = r.eps.unwrap_or(1e-8);
    let t = state
        .get("step")
        .and_then(|s| s.first())
        .copied()
        .unwrap_or(0.0);
    if t < 1.0 {
        return None;
    }
    let d: Vec<f64> = match r.name {
        OptName::Adam | OptName::Adamw => {
            let bc1 = 1.0 - r.beta1.unwrap_or(0.9).powf(t);
            let bc2 = 1.0 - r.beta2.unwrap_or(0.999).powf(t);
            let raw = state.get(if r.amsgrad == Some(true) {
                "max_exp_avg_sq"
            } else {
                "exp_avg_sq"
            })?;
            raw.iter().map(|x| bc1 * ((x / bc2).sqrt() + eps)).collect()
        }
        OptName::Rmsprop => {
            let sq = state.get("square_avg")?;
            if r.centered == Some(true) {
                let ga = state.get("grad_avg")?;
                sq.iter()
                    .zip(ga)
                    .map(|(v, g)| (v - g * g).sqrt() + eps)
                    .collect()
            } else {
                sq.iter().map(|v| v.sqrt() + eps).collect()
            }
        }
        OptName::Adagrad => state.get("sum")?.iter().map(|v| v.sqrt() + eps).collect(),
        _ => return None,
    };
    Some(d.iter().map(|x| 1.0 / x.sqrt()).collect())
}

/// The L2 weight decay the update adds to the gradient (g + wd·θ), which
/// puts wd·I into the operator the update sees: torch's SGD, Adam, RMSprop
/// and Adagrad. AdamW and Muon decay θ directly (decoupled): 0.
pub fn coupled_weight_decay(opt: &OptimizerParams) -> f64 {
    let r = opt.resolved();
    match r.name {
        OptName::Sgd | OptName::Adam | OptName::Rmsprop | OptName::Adagrad => {
            r.weight_decay.unwrap_or(0.0)
        }
        _ => 0.0,
    }
}

/// Checkpoint steps present among a train stage's outputs, ascending.
pub fn checkpoint_steps<'a>(names: impl Iterator<Item = &'a String>) -> Vec<u64> {
    let mut steps: Vec<u64> = names
        .filter_map(|n| {
            n.strip_prefix("checkpoints/step_")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// The null stage's parameters: R fresh initializations of one architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullParams {
    pub arch: crate::mlp::Arch,
    pub init: crate::mlp::Init,
    pub replicas: usize,
    pub k: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_size: Option<usize>,
    pub which: Which,
    pub tol: f64,
    pub max_iter: usize,
    pub seed: u64,
    pub dtype: Dtype,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_rows: Option<usize>,
    #[serde(default = "d_block")]
    pub block: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_basis: Option<usize>,
    /// `hessian.vector_dtype`, for `null/vectors.arrow`.
    #[serde(default, skip_serializing_if = "VectorDtype::is_f32")]
    pub vector_dtype: VectorDtype,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_vectors_keeps_ends_multiples_and_listed_steps() {
        let ck = [0, 1, 3, 12, 20, 40, 60];
        let k = |every: Option<u64>, at: Vec<u64>| KeepVectors { every, at };
        assert_eq!(k(None, vec![]).steps(&ck), ck);
        assert_eq!(k(Some(20), vec![]).steps(&ck), [0, 20, 40, 60]);
        assert_eq!(k(Some(20), vec![3]).steps(&ck), [0, 3, 20, 40, 60]);
        assert_eq!(k(None, vec![12]).steps(&ck), [0, 12, 60]);
        // Checkpoints need not start at 0 for the first to be kept.
        assert_eq!(k(Some(7), vec![]).steps(&[5, 14, 20]), [5, 14, 20]);
        assert_eq!(k(Some(100), vec![]).steps(&[5, 14, 20]), [5, 20]);
        assert!(k(None, vec![]).is_all() && !k(Some(2), vec![]).is_all());
        // every = 1 keeps every checkpoint: the default and its key.
        assert!(k(Some(1), vec![3]).normalized().is_all());
        assert_eq!(k(Some(4), vec![9, 3, 9]).normalized().at, [3, 9]);
    }

    #[test]
    fn keep_vectors_refuses_what_is_not_a_checkpoint() {
        let ck = [0, 1, 3, 12, 20, 40];
        let err = |every: Option<u64>, at: Vec<u64>| {
            KeepVectors { every, at }
                .check(&ck)
                .map_err(|e| (e.field, e.msg))
                .err()
        };
        assert_eq!(err(Some(20), vec![3, 40]), None);
        let (f, m) = err(None, vec![5]).unwrap();
        assert_eq!(f, "at");
        assert!(
            m.contains("step 5 is not a checkpoint (the nearest are 3 and 12)"),
            "{m}"
        );
        assert!(err(None, vec![41]).unwrap().1.contains("the last is 40"));
        assert_eq!(err(Some(0), vec![]).unwrap().0, "every");
    }

    #[test]
    fn the_default_keep_vectors_is_not_in_the_key() {
        let s: HessianSettings = toml::from_str("k = 3").unwrap();
        let v = serde_json::to_value(s.resolve(Dtype::F64)).unwrap();
        assert!(v.get("keep_vectors").is_none(), "{v}");
        let s: HessianSettings = toml::from_str("k = 3\nkeep_vectors = { every = 1 }").unwrap();
        let v = serde_json::to_value(s.resolve(Dtype::F64)).unwrap();
        assert!(v.get("keep_vectors").is_none(), "{v}");
        let s: HessianSettings = toml::from_str("k = 3\nkeep_vectors = { every = 50 }").unwrap();
        let v = serde_json::to_value(s.resolve(Dtype::F64)).unwrap();
        assert_eq!(v["keep_vectors"], serde_json::json!({ "every": 50 }));
    }
}
