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
//! hvps, iterations, converged), `eigen/vectors.arrow` (step, operator, rank,
//! vector: list<f32>, zstd-compressed), and `config.toml`: the run's fully
//! resolved configuration (the train stage's, plus this stage's).

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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HessianParams {
    pub k: usize,
    /// Rows of the train split in the analysis set; None = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_size: Option<usize>,
    #[serde(default = "d_which")]
    pub which: Which,
    /// Residual tolerance relative to |λ1|; None = 1e-6 in f64, 1e-4 in f32 (SCIENCE.md).
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
}

fn d_true() -> bool {
    true
}

impl HessianParams {
    pub fn tol(&self) -> f64 {
        self.tol.unwrap_or(match self.dtype {
            Dtype::F64 => 1e-6,
            Dtype::F32 => 1e-4,
        })
    }
}

/// D^{-1/2} from an adaptive optimizer's checkpointed state, with
/// D = diag(sqrt(v̂) + ε) (Cohen et al. 2022, "Adaptive gradient methods at
/// the edge of stability"): Adam/AdamW v̂ = exp_avg_sq / (1 − β2^t);
/// RMSprop v̂ = square_avg; Adagrad v̂ = sum. None when the optimizer has no
/// diagonal preconditioner or no step was taken yet.
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
    let v: Vec<f64> = match r.name {
        OptName::Adam | OptName::Adamw => {
            if t < 1.0 {
                return None;
            }
            let bc2 = 1.0 - r.beta2.unwrap_or(0.999).powf(t);
            let raw = state.get(if r.amsgrad == Some(true) {
                "max_exp_avg_sq"
            } else {
                "exp_avg_sq"
            })?;
            raw.iter().map(|x| x / bc2).collect()
        }
        OptName::Rmsprop => state.get("square_avg")?.clone(),
        OptName::Adagrad => state.get("sum")?.clone(),
        _ => return None,
    };
    if t < 1.0 {
        return None;
    }
    Some(v.iter().map(|x| 1.0 / (x.sqrt() + eps).sqrt()).collect())
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
}
