//! The train stage's parameters and checkpoint format (the training loop
//! itself is `stages_torch::train`): an MLP on the train split, one
//! optimizer, one seed.
//!
//! Outputs: `train.arrow`, `param_map.arrow`, `train_config.toml` and
//! `checkpoints/step_XXXXXXXX.safetensors` (θ as f32 `theta`, plus `theta_f64`
//! when training in f64, the full-batch gradient `grad`, the realized update
//! `update` = θ_{t+1} − θ_t, and the optimizer state under PyTorch's names,
//! taken *before* step t+1 is applied).

use crate::error::{io_err, ParamError, StageResult};
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

/// The most optimizer steps a run may take (the budget `steps`, or `epochs`
/// times the steps per epoch).
pub const MAX_STEPS: u64 = 1_000_000_000;
/// The most checkpoints a run may write (each is a file, and a Lanczos run
/// in the hessian stage).
pub const MAX_CHECKPOINTS: u64 = 100_000;

impl CheckpointSpec {
    /// Range checks against the last step, then the number of checkpoints
    /// [`Self::steps`] gives, found without listing more than a few times
    /// [`MAX_CHECKPOINTS`] steps. Errors are (the field under `checkpoints`,
    /// "" for the rules together; the message with the range).
    pub fn check(&self, last: u64) -> Result<usize, ParamError> {
        let bad = |f: &str, m: String| Err(ParamError::new(f, m));
        if let Some(e) = self.every {
            if !(1..=MAX_STEPS).contains(&e) {
                return bad(
                    "every",
                    format!("must be in 1..={MAX_STEPS} (a checkpoint every N steps), or omitted; got {e}"),
                );
            }
            let n = last / e + 1;
            if n > MAX_CHECKPOINTS {
                return bad(
                    "every",
                    format!("every = {e} over {last} steps gives {n} checkpoints, over the limit of {MAX_CHECKPOINTS}; raise it"),
                );
            }
        }
        if let Some(n) = self.log_spaced {
            if !(2..=MAX_CHECKPOINTS).contains(&n) {
                return bad(
                    "log_spaced",
                    format!("must be in 2..={MAX_CHECKPOINTS} (log-spaced checkpoints), or omitted; got {n}"),
                );
            }
        }
        if self.at.len() as u64 > MAX_CHECKPOINTS {
            return bad(
                "at",
                format!(
                    "lists {} steps, over the limit of {MAX_CHECKPOINTS} checkpoints",
                    self.at.len()
                ),
            );
        }
        if let Some(a) = self.at.iter().find(|&&a| a > last) {
            return bad(
                "at",
                format!("step {a} is beyond the last step ({last}); give steps in 0..={last}"),
            );
        }
        let n = self.steps(last).len();
        if n as u64 > MAX_CHECKPOINTS {
            return bad(
                "",
                format!("every, log_spaced and at give {n} checkpoints together, over the limit of {MAX_CHECKPOINTS}"),
            );
        }
        Ok(n)
    }

    /// The checkpoint steps, ascending (`at` steps beyond `last` are
    /// dropped; [`Self::check`] refuses them in a config).
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

    #[test]
    fn checkpoint_rules_are_checked_before_listing() {
        let spec = |every, log_spaced, at: Vec<u64>| CheckpointSpec {
            every,
            log_spaced,
            at,
        };
        assert_eq!(spec(Some(50), Some(5), vec![7]).check(100), Ok(8));
        let field = |s: CheckpointSpec, last| s.check(last).unwrap_err().field;
        assert_eq!(field(spec(Some(0), None, vec![]), 100), "every");
        // 1e12 steps every 10: refused from arithmetic, nothing listed.
        let crate::error::ParamError { field: f, msg: m } = spec(Some(10), None, vec![])
            .check(1_000_000_000_000)
            .unwrap_err();
        assert_eq!(f, "every");
        assert!(m.contains("100000000001 checkpoints"), "{m}");
        assert_eq!(
            field(spec(None, Some(1_000_000_000_000), vec![]), 100),
            "log_spaced"
        );
        assert_eq!(field(spec(None, Some(1), vec![]), 100), "log_spaced");
        let crate::error::ParamError { field: f, msg: m } =
            spec(None, None, vec![5, 101]).check(100).unwrap_err();
        assert_eq!(f, "at");
        assert!(m.contains("0..=100"), "{m}");
        assert_eq!(spec(None, None, vec![100]).check(100), Ok(2));
    }
}
