//! The hessian stage: top-k eigenpairs of H = ∇²L(θ) at every checkpoint.
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

use crate::arrow_io::{col_bool, col_f64, col_i32, col_i64, col_str, list_f32, write_batch};
use crate::dataset;
use crate::error::{fmt_err, io_err, StageError, StageResult};
use crate::lanczos::{lanczos, LanczosOptions, Which};
use crate::mlp::Arch;
use crate::runtime::Dtype;
use crate::train::{read_checkpoint, tensor_f64};
use crate::Progress;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn d_which() -> Which {
    Which::Largest
}
fn d_max_iter() -> usize {
    300
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
}

impl HessianParams {
    pub fn tol(&self) -> f64 {
        self.tol.unwrap_or(match self.dtype {
            Dtype::F64 => 1e-6,
            Dtype::F32 => 1e-4,
        })
    }
}

/// H·v for the MLP loss at one θ, over fixed rows, by double backprop.
pub struct HessianOperator {
    theta: Tensor,
    grad: Tensor,
    kind: Kind,
    device: Device,
    pub products: usize,
}

impl HessianOperator {
    pub fn new(
        arch: &Arch,
        theta: &[f64],
        x: &Tensor,
        y: &Tensor,
        kind: Kind,
        device: Device,
    ) -> HessianOperator {
        let theta = Tensor::from_slice(theta)
            .to_kind(kind)
            .to_device(device)
            .set_requires_grad(true);
        let loss = arch.loss(&theta, x, y);
        let grad = Tensor::run_backward(&[&loss], &[&theta], true, true).remove(0);
        HessianOperator {
            theta,
            grad,
            kind,
            device,
            products: 0,
        }
    }

    /// The gradient ∇L(θ).
    pub fn gradient(&self) -> Vec<f64> {
        tensor_f64(&self.grad.detach())
    }

    pub fn apply_tensor(&mut self, v: &Tensor) -> Tensor {
        self.products += 1;
        let gv = (&self.grad * v).sum(self.kind);
        Tensor::run_backward(&[&gv], &[&self.theta], true, false).remove(0)
    }

    pub fn apply(&mut self, v: &[f64], out: &mut [f64]) {
        let vt = Tensor::from_slice(v)
            .to_kind(self.kind)
            .to_device(self.device);
        let hv = self.apply_tensor(&vt);
        out.copy_from_slice(&tensor_f64(&hv));
    }
}

/// The analysis set: the first `m` train rows.
pub fn analysis_set(
    ds: &dataset::Dataset,
    m: Option<usize>,
    kind: Kind,
    dev: Device,
) -> StageResult<(Tensor, Tensor)> {
    let (x, y) = ds.split(true);
    let n = y.len();
    let m = m.unwrap_or(n);
    if m == 0 || m > n {
        return Err(StageError::Param {
            field: "hessian.analysis_size".into(),
            msg: format!("must be in 1..={n} (the train split's size), got {m}"),
        });
    }
    let xt = Tensor::from_slice(&x[..m * ds.dim])
        .view([m as i64, ds.dim as i64])
        .to_kind(kind)
        .to_device(dev);
    let yt = Tensor::from_slice(&y[..m]).to_device(dev);
    Ok((xt, yt))
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

/// Run the hessian stage. `checkpoints` are (step, path) pairs.
#[allow(clippy::too_many_arguments)]
pub fn run(
    p: &HessianParams,
    arch: &Arch,
    data: &Path,
    checkpoints: &[(u64, &Path)],
    train_config: &str,
    dev: Device,
    out: &Path,
    progress: Progress<'_>,
) -> StageResult<serde_json::Value> {
    let ds = dataset::read(data)?;
    let kind = p.dtype.kind();
    let (x, y) = analysis_set(&ds, p.analysis_size, kind, dev)?;
    let n = arch.num_params();
    if p.k == 0 || p.k >= n {
        return Err(StageError::Param {
            field: "hessian.k".into(),
            msg: format!("must be in 1..{n} (P = {n} parameters), got {}", p.k),
        });
    }
    let mut rows = Rows::default();
    let mut total_hvps = 0usize;
    for (ci, (step, path)) in checkpoints.iter().enumerate() {
        let ck = read_checkpoint(path)?;
        let theta = ck
            .get("theta_f64")
            .or_else(|| ck.get("theta"))
            .ok_or_else(|| fmt_err(path, "no tensor `theta`"))?;
        if theta.len() != n {
            return Err(fmt_err(
                path,
                format!(
                    "theta has {} entries, the architecture has {n}",
                    theta.len()
                ),
            ));
        }
        if theta.iter().any(|v| !v.is_finite()) {
            continue; // a diverged run's last state: no spectrum to speak of
        }
        let mut op = HessianOperator::new(arch, theta, &x, &y, kind, dev);
        let opts = LanczosOptions {
            k: p.k,
            which: p.which,
            tol: p.tol(),
            max_iter: p.max_iter,
            seed: p.seed.wrapping_add(*step),
        };
        let r = lanczos(n, &mut |v, o| op.apply(v, o), &opts, None);
        total_hvps += r.hvps;
        for pair in &r.pairs {
            rows.push(
                *step,
                "hessian",
                pair.rank,
                pair.value,
                pair.residual,
                r.hvps,
                r.iterations,
                r.converged,
                &pair.vector,
            );
        }
        progress(ci as u64 + 1, checkpoints.len() as u64, "checkpoints");
    }
    rows.write(out)?;
    // config.toml: the train stage's resolved config plus ours.
    let mut cfg: toml::Table = toml::from_str(train_config)
        .map_err(|e| StageError::Other(format!("train_config.toml: {e}")))?;
    let ours =
        toml::Table::try_from(p).map_err(|e| StageError::Other(format!("hessian params: {e}")))?;
    cfg.insert("hessian".into(), toml::Value::Table(ours));
    let text = toml::to_string_pretty(&cfg).map_err(|e| StageError::Other(e.to_string()))?;
    std::fs::write(out.join("config.toml"), text).map_err(io_err(out.join("config.toml")))?;
    Ok(serde_json::json!({ "hvps": total_hvps, "checkpoints": checkpoints.len() }))
}

#[derive(Default)]
struct Rows {
    step: Vec<i64>,
    operator: Vec<&'static str>,
    rank: Vec<i32>,
    value: Vec<f64>,
    residual: Vec<f64>,
    hvps: Vec<i64>,
    iterations: Vec<i64>,
    converged: Vec<bool>,
    vectors: Vec<Vec<f32>>,
}

impl Rows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        step: u64,
        op: &'static str,
        rank: i32,
        value: f64,
        residual: f64,
        hvps: usize,
        iters: usize,
        conv: bool,
        v: &[f64],
    ) {
        self.step.push(step as i64);
        self.operator.push(op);
        self.rank.push(rank);
        self.value.push(value);
        self.residual.push(residual);
        self.hvps.push(hvps as i64);
        self.iterations.push(iters as i64);
        self.converged.push(conv);
        self.vectors.push(v.iter().map(|&x| x as f32).collect());
    }
    fn write(self, out: &Path) -> StageResult<()> {
        write_batch(
            &out.join("eigen/values.arrow"),
            vec![
                ("step", col_i64(self.step.clone())),
                ("operator", col_str(&self.operator)),
                ("rank", col_i32(self.rank.clone())),
                ("eigenvalue", col_f64(self.value)),
                ("residual", col_f64(self.residual)),
                ("hvps", col_i64(self.hvps)),
                ("iterations", col_i64(self.iterations)),
                ("converged", col_bool(self.converged)),
            ],
            false,
        )?;
        write_batch(
            &out.join("eigen/vectors.arrow"),
            vec![
                ("step", col_i64(self.step)),
                ("operator", col_str(&self.operator)),
                ("rank", col_i32(self.rank)),
                ("vector", list_f32(&self.vectors)),
            ],
            true,
        )
    }
}
