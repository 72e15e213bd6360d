//! The train stage's parameters and checkpoint format (the training loop
//! itself is `stages_torch::train`): an MLP on the train split, one
//! optimizer, one seed.
//!
//! Outputs: `train.arrow`, `param_map.arrow`, `train_config.toml` and
//! `checkpoints/step_XXXXXXXX.safetensors` (θ as f32 `theta`, plus `theta_f64`
//! when training in f64, the full-batch gradient `grad`, the realized update
//! `update` = θ_{t+1} − θ_t, and the optimizer state under PyTorch's names,
//! taken *before* step t+1 is applied).

use crate::error::{io_err, StageResult};
use crate::mlp::{Arch, Init};
use crate::optim::OptimizerParams;
use crate::runtime::Dtype;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// When to write checkpoints; the union of all given rules, plus the first and last step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Every N steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// N log-spaced steps between 1 and the last step (for the aging analysis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_spaced: Option<u64>,
    /// Explicit steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<u64>,
}

impl CheckpointSpec {
    pub fn steps(&self, last: u64) -> Vec<u64> {
        let mut s = BTreeSet::from([0, last]);
        if let Some(e) = self.every.filter(|&e| e > 0) {
            s.extend((0..=last).step_by(e as usize));
        }
        if let Some(n) = self.log_spaced.filter(|&n| n > 1) {
            if last >= 1 {
                let top = (last as f64).ln();
                for i in 0..n {
                    let v = (top * i as f64 / (n - 1) as f64).exp().round() as u64;
                    s.insert(v.clamp(1, last));
                }
            }
        }
        s.extend(self.at.iter().copied().filter(|&a| a <= last));
        s.into_iter().collect()
    }
}

fn d_log_every() -> u64 {
    10
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    #[default]
    Constant,
    /// Half a cosine from the base lr down to `final_fraction`·lr at the last step.
    Cosine,
}

/// The learning-rate schedule: an optional linear warmup, then constant or cosine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Steps of linear warmup: lr·(t+1)/warmup for t < warmup.
    #[serde(default)]
    pub warmup: u64,
    /// Cosine only: the final lr as a fraction of the base lr.
    #[serde(default)]
    pub final_fraction: f64,
}

impl Schedule {
    /// The learning rate of step t (0-based; the update from θ_t to θ_{t+1}).
    pub fn lr(&self, base: f64, t: u64, total: u64) -> f64 {
        let warm = if self.warmup > 0 && t < self.warmup {
            (t + 1) as f64 / self.warmup as f64
        } else {
            1.0
        };
        let decay = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Cosine => {
                let span = total.saturating_sub(self.warmup).max(1) as f64;
                let x = (t.saturating_sub(self.warmup) as f64 / span).min(1.0);
                self.final_fraction
                    + (1.0 - self.final_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
            }
        };
        base * warm * decay
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    pub arch: Arch,
    pub init: Init,
    pub optimizer: OptimizerParams,
    pub steps: u64,
    #[serde(default)]
    pub schedule: Schedule,
    /// Rows per step; None = full batch (gradient descent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(default = "d_log_every")]
    pub log_every: u64,
    #[serde(default)]
    pub checkpoints: CheckpointSpec,
    pub seed: u64,
    pub dtype: Dtype,
}

/// What the record says about a training run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainSummary {
    pub diverged: bool,
    pub diverged_at: Option<u64>,
    pub final_train_loss: f64,
    pub final_train_acc: f64,
    pub final_test_loss: f64,
    pub final_test_acc: f64,
    pub checkpoints: Vec<u64>,
    pub num_params: usize,
}

/// Read named tensors from a safetensors checkpoint, as f64 vectors.
pub fn read_checkpoint(path: &Path) -> StageResult<BTreeMap<String, Vec<f64>>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| crate::error::fmt_err(path, format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let v: Vec<f64> = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            safetensors::Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            safetensors::Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            other => {
                return Err(crate::error::fmt_err(
                    path,
                    format!("tensor {name}: unsupported dtype {other:?}"),
                ))
            }
        };
        out.insert(name, v);
    }
    Ok(out)
}

pub fn checkpoint_name(step: u64) -> String {
    format!("checkpoints/step_{step:08}.safetensors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedules() {
        let c = Schedule::default();
        assert_eq!(c.lr(0.1, 7, 100), 0.1);
        let w = Schedule {
            kind: ScheduleKind::Constant,
            warmup: 10,
            final_fraction: 0.0,
        };
        assert!((w.lr(1.0, 0, 100) - 0.1).abs() < 1e-15);
        assert!((w.lr(1.0, 9, 100) - 1.0).abs() < 1e-15);
        let cos = Schedule {
            kind: ScheduleKind::Cosine,
            warmup: 0,
            final_fraction: 0.1,
        };
        assert!((cos.lr(1.0, 0, 100) - 1.0).abs() < 1e-15);
        assert!((cos.lr(1.0, 50, 100) - 0.55).abs() < 1e-12);
        assert!((cos.lr(1.0, 100, 100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn checkpoint_schedule_merges_rules() {
        let spec = CheckpointSpec {
            every: Some(50),
            log_spaced: Some(5),
            at: vec![7, 500],
        };
        let s = spec.steps(100);
        assert_eq!(s, vec![0, 1, 3, 7, 10, 32, 50, 100]);
        assert_eq!(CheckpointSpec::default().steps(10), vec![0, 10]);
    }
}
