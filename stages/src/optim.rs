//! Optimizers over the flat θ, written to match `torch.optim` step for step
//! (same operation order, same state names), so that their state can be saved
//! in checkpoints and used by the analysis (e.g. Adam's `exp_avg_sq` for the
//! preconditioned Hessian).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptName {
    Sgd,
    Adam,
    Adamw,
    Rmsprop,
    Adagrad,
    Lion,
    /// Newton–Schulz-orthogonalized momentum on the 2-D weights, AdamW on the
    /// biases (Jordan et al. 2024, github.com/KellerJordan/Muon, MuonWithAuxAdam).
    Muon,
}

impl OptName {
    pub fn as_str(self) -> &'static str {
        match self {
            OptName::Sgd => "sgd",
            OptName::Adam => "adam",
            OptName::Adamw => "adamw",
            OptName::Rmsprop => "rmsprop",
            OptName::Adagrad => "adagrad",
            OptName::Lion => "lion",
            OptName::Muon => "muon",
        }
    }
    /// Adaptive optimizers have a diagonal preconditioner (`exp_avg_sq`).
    pub fn is_adaptive(self) -> bool {
        matches!(self, OptName::Adam | OptName::Adamw)
    }
}

/// Hyperparameters as written in a config; `None` means "PyTorch's default
/// for this optimizer" and is filled in by [`OptimizerParams::resolved`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerParams {
    pub name: OptName,
    pub lr: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amsgrad: Option<bool>,
    /// RMSprop's smoothing constant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centered: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_decay: Option<f64>,
    /// Muon: Newton–Schulz iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_steps: Option<u32>,
    /// Muon: the AdamW learning rate of the biases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_lr: Option<f64>,
}

impl OptimizerParams {
    pub fn new(name: OptName, lr: f64) -> Self {
        OptimizerParams {
            name,
            lr,
            momentum: None,
            dampening: None,
            nesterov: None,
            weight_decay: None,
            beta1: None,
            beta2: None,
            eps: None,
            amsgrad: None,
            alpha: None,
            centered: None,
            lr_decay: None,
            ns_steps: None,
            aux_lr: None,
        }
    }

    /// Every hyperparameter that this optimizer uses, with PyTorch's defaults
    /// filled in; those it does not use are cleared (so they cannot change a key).
    pub fn resolved(&self) -> OptimizerParams {
        let mut r = OptimizerParams::new(self.name, self.lr);
        let wd = Some(self.weight_decay.unwrap_or(match self.name {
            OptName::Adamw => 1e-2,
            _ => 0.0,
        }));
        match self.name {
            OptName::Sgd => {
                r.momentum = Some(self.momentum.unwrap_or(0.0));
                r.dampening = Some(self.dampening.unwrap_or(0.0));
                r.nesterov = Some(self.nesterov.unwrap_or(false));
                r.weight_decay = wd;
            }
            OptName::Adam | OptName::Adamw => {
                r.beta1 = Some(self.beta1.unwrap_or(0.9));
                r.beta2 = Some(self.beta2.unwrap_or(0.999));
                r.eps = Some(self.eps.unwrap_or(1e-8));
                r.amsgrad = Some(self.amsgrad.unwrap_or(false));
                r.weight_decay = wd;
            }
            OptName::Rmsprop => {
                r.alpha = Some(self.alpha.unwrap_or(0.99));
                r.eps = Some(self.eps.unwrap_or(1e-8));
                r.momentum = Some(self.momentum.unwrap_or(0.0));
                r.centered = Some(self.centered.unwrap_or(false));
                r.weight_decay = wd;
            }
            OptName::Adagrad => {
                r.lr_decay = Some(self.lr_decay.unwrap_or(0.0));
                r.eps = Some(self.eps.unwrap_or(1e-10));
                r.weight_decay = wd;
            }
            OptName::Lion => {
                // Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms": β1 = 0.9, β2 = 0.99.
                r.beta1 = Some(self.beta1.unwrap_or(0.9));
                r.beta2 = Some(self.beta2.unwrap_or(0.99));
                r.weight_decay = wd;
            }
            OptName::Muon => {
                // torch.optim.Muon's defaults for the weights (momentum 0.95,
                // Nesterov, 5 steps); MuonWithAuxAdam's AdamW for the biases
                // (lr 3e-4, betas (0.9, 0.95), eps 1e-10).
                r.momentum = Some(self.momentum.unwrap_or(0.95));
                r.nesterov = Some(self.nesterov.unwrap_or(true));
                r.ns_steps = Some(self.ns_steps.unwrap_or(5));
                r.weight_decay = wd;
                r.aux_lr = Some(self.aux_lr.unwrap_or(3e-4));
                r.beta1 = Some(self.beta1.unwrap_or(0.9));
                r.beta2 = Some(self.beta2.unwrap_or(0.95));
                r.eps = Some(self.eps.unwrap_or(1e-10));
            }
        }
        r
    }

    /// Range checks, naming the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let r = self.resolved();
        let bad = |f: &str, m: String| Err((f.to_string(), m));
        if !(r.lr.is_finite() && r.lr > 0.0) {
            return bad("lr", format!("must be > 0, got {}", r.lr));
        }
        for (f, v) in [("beta1", r.beta1), ("beta2", r.beta2), ("alpha", r.alpha)] {
            if let Some(v) = v {
                if !(0.0..1.0).contains(&v) {
                    return bad(f, format!("must be in [0, 1), got {v}"));
                }
            }
        }
        for (f, v) in [
            ("momentum", r.momentum),
            ("dampening", r.dampening),
            ("weight_decay", r.weight_decay),
            ("eps", r.eps),
            ("lr_decay", r.lr_decay),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return bad(f, format!("must be ≥ 0, got {v}"));
                }
            }
        }
        if r.nesterov == Some(true)
            && (r.momentum.unwrap_or(0.0) <= 0.0 || r.dampening.unwrap_or(0.0) != 0.0)
        {
            return bad(
                "nesterov",
                "needs momentum > 0 and dampening = 0 (as in torch.optim.SGD)".into(),
            );
        }
        Ok(())
    }
}

/// An optimizer with its state, over one flat parameter tensor.
pub struct Optimizer {
    pub p: OptimizerParams,
    /// The 2-D weight blocks of θ as (offset, rows, cols): Muon orthogonalizes these.
    pub matrices: Vec<(usize, usize, usize)>,
    /// State tensors by their PyTorch names (`exp_avg`, `momentum_buffer`, …).
    pub state: BTreeMap<String, Tensor>,
    pub step: i64,
}

fn get(p: Option<f64>) -> f64 {
    p.expect("resolved params")
}

impl Optimizer {
    pub fn new(params: &OptimizerParams) -> Optimizer {
        Optimizer {
            p: params.resolved(),
            matrices: Vec::new(),
            state: BTreeMap::new(),
            step: 0,
        }
    }

    /// An optimizer that knows θ's 2-D blocks (offset, rows, cols); Muon needs them.
    pub fn with_matrices(
        params: &OptimizerParams,
        matrices: Vec<(usize, usize, usize)>,
    ) -> Optimizer {
        let mut o = Optimizer::new(params);
        o.matrices = matrices;
        o
    }

    fn state_or_zeros(&mut self, name: &str, like: &Tensor) -> Tensor {
        self.state
            .entry(name.to_string())
            .or_insert_with(|| like.zeros_like())
            .shallow_clone()
    }

    /// One step: θ ← θ + update(grad), with learning rate `lr` (the schedule's
    /// value for this step). `theta` is updated in place, without autograd.
    pub fn step(&mut self, theta: &Tensor, grad: &Tensor, lr: f64) {
        tch::no_grad(|| self.step_inner(theta, grad, lr));
    }

    fn step_inner(&mut self, theta: &Tensor, grad: &Tensor, lr: f64) {
        self.step += 1;
        let p = self.p.clone();
        let wd = p.weight_decay.unwrap_or(0.0);
        let t = self.step as f64;
        match p.name {
            OptName::Sgd => {
                let mut d_p = if wd != 0.0 {
                    grad + theta * wd
                } else {
                    grad.shallow_clone()
                };
                let momentum = get(p.momentum);
                if momentum != 0.0 {
                    let buf = match self.state.get("momentum_buffer") {
                        None => {
                            let b = d_p.copy();
                            self.state
                                .insert("momentum_buffer".into(), b.shallow_clone());
                            b
                        }
                        Some(b) => {
                            let mut b = b.shallow_clone();
                            let _ = b.g_mul_scalar_(momentum);
                            let _ = b.g_add_(&(&d_p * (1.0 - get(p.dampening))));
                            b
                        }
                    };
                    d_p = if p.nesterov == Some(true) {
                        &d_p + &buf * momentum
                    } else {
                        buf
                    };
                }
                let mut th = theta.shallow_clone();
                let _ = th.g_sub_(&(d_p * lr));
            }
            OptName::Adam | OptName::Adamw => {
                let (b1, b2, eps) = (get(p.beta1), get(p.beta2), get(p.eps));
                let mut th = theta.shallow_clone();
                let g = if p.name == OptName::Adamw {
                    let _ = th.g_mul_scalar_(1.0 - lr * wd);
                    grad.shallow_clone()
                } else if wd != 0.0 {
                    grad + theta * wd
                } else {
                    grad.shallow_clone()
                };
                let mut m = self.state_or_zeros("exp_avg", theta);
                let mut v = self.state_or_zeros("exp_avg_sq", theta);
                let _ = m.lerp_(&g, 1.0 - b1);
                let _ = v.g_mul_scalar_(b2);
                let _ = v.addcmul_(&g, &(&g * (1.0 - b2)));
                let bc1 = 1.0 - b1.powf(t);
                let bc2_sqrt = (1.0 - b2.powf(t)).sqrt();
                let step_size = lr / bc1;
                let denom = if p.amsgrad == Some(true) {
                    let mut vmax = self.state_or_zeros("max_exp_avg_sq", theta);
                    let mx = vmax.maximum(&v);
                    vmax.copy_(&mx);
                    vmax.sqrt() / bc2_sqrt + eps
                } else {
                    v.sqrt() / bc2_sqrt + eps
                };
                let _ = th.addcdiv_(&(&m * (-step_size)), &denom);
            }
            OptName::Rmsprop => {
                let (alpha, eps, momentum) = (get(p.alpha), get(p.eps), get(p.momentum));
                let g = if wd != 0.0 {
                    grad + theta * wd
                } else {
                    grad.shallow_clone()
                };
                let mut sq = self.state_or_zeros("square_avg", theta);
                let _ = sq.g_mul_scalar_(alpha);
                let _ = sq.addcmul_(&g, &(&g * (1.0 - alpha)));
                let avg = if p.centered == Some(true) {
                    let mut ga = self.state_or_zeros("grad_avg", theta);
                    let _ = ga.lerp_(&g, 1.0 - alpha);
                    (&sq - &ga * &ga).sqrt() + eps
                } else {
                    sq.sqrt() + eps
                };
                let mut th = theta.shallow_clone();
                if momentum > 0.0 {
                    let mut buf = self.state_or_zeros("momentum_buffer", theta);
                    let _ = buf.g_mul_scalar_(momentum);
                    let _ = buf.addcdiv_(&g, &avg);
                    let _ = th.g_sub_(&(&buf * lr));
                } else {
                    let _ = th.addcdiv_(&(&g * (-lr)), &avg);
                }
            }
            OptName::Adagrad => {
                let (lr_decay, eps) = (get(p.lr_decay), get(p.eps));
                let g = if wd != 0.0 {
                    grad + theta * wd
                } else {
                    grad.shallow_clone()
                };
                let clr = lr / (1.0 + (t - 1.0) * lr_decay);
                let mut sum = self.state_or_zeros("sum", theta);
                let _ = sum.addcmul_(&g, &g);
                let std = sum.sqrt() + eps;
                let mut th = theta.shallow_clone();
                let _ = th.addcdiv_(&(&g * (-clr)), &std);
            }
            OptName::Muon => self.muon_step(theta, grad, lr),
            OptName::Lion => {
                // Chen et al. 2023, Algorithm 2.
                let (b1, b2) = (get(p.beta1), get(p.beta2));
                let mut m = self.state_or_zeros("exp_avg", theta);
                let mut th = theta.shallow_clone();
                let _ = th.g_mul_scalar_(1.0 - lr * wd);
                let update = (&m * b1 + grad * (1.0 - b1)).sign();
                let _ = th.g_sub_(&(update * lr));
                let _ = m.g_mul_scalar_(b2);
                let _ = m.g_add_(&(grad * (1.0 - b2)));
            }
        }
    }

    /// Muon: per weight matrix, momentum → Newton–Schulz → scaled step; per
    /// other entry, AdamW with `aux_lr`. As torch.optim.Muon and the
    /// reference, except that Newton–Schulz runs in θ's dtype, not bf16, so
    /// that f64 runs are exact.
    fn muon_step(&mut self, theta: &Tensor, grad: &Tensor, lr: f64) {
        let p = self.p.clone();
        let (mu, wd) = (get(p.momentum), p.weight_decay.unwrap_or(0.0));
        let ns_steps = p.ns_steps.expect("resolved");
        let t = self.step as f64;
        let buf = self.state_or_zeros("momentum_buffer", theta);
        let n = theta.size()[0];
        let mut is_matrix = vec![false; n as usize];
        for &(off, rows, cols) in &self.matrices {
            is_matrix[off..off + rows * cols]
                .iter_mut()
                .for_each(|b| *b = true);
            let g = grad
                .narrow(0, off as i64, (rows * cols) as i64)
                .view([rows as i64, cols as i64]);
            let mut b = buf
                .narrow(0, off as i64, (rows * cols) as i64)
                .view([rows as i64, cols as i64]);
            let _ = b.lerp_(&g, 1.0 - mu);
            let update = if p.nesterov == Some(true) {
                g.lerp(&b, mu)
            } else {
                b.shallow_clone()
            };
            let o = newton_schulz(&update, ns_steps);
            // torch.optim.Muon's "original" adjustment: lr·sqrt(max(1, rows/cols)).
            let adjusted = lr * (1f64).max(rows as f64 / cols as f64).sqrt();
            let mut w = theta
                .narrow(0, off as i64, (rows * cols) as i64)
                .view([rows as i64, cols as i64]);
            let _ = w.g_mul_scalar_(1.0 - lr * wd);
            let _ = w.g_sub_(&(o * adjusted));
        }
        // AdamW on the rest (biases), on the full vector masked to those entries.
        let mask = Tensor::from_slice(
            &is_matrix
                .iter()
                .map(|&m| if m { 0.0 } else { 1.0 })
                .collect::<Vec<f64>>(),
        )
        .to_kind(theta.kind())
        .to_device(theta.device());
        let (b1, b2, eps, alr) = (get(p.beta1), get(p.beta2), get(p.eps), get(p.aux_lr));
        let g = grad * &mask;
        let mut m = self.state_or_zeros("exp_avg", theta);
        let mut v = self.state_or_zeros("exp_avg_sq", theta);
        let _ = m.lerp_(&g, 1.0 - b1);
        let _ = v.g_mul_scalar_(b2);
        let _ = v.addcmul_(&g, &(&g * (1.0 - b2)));
        let bc1 = 1.0 - b1.powf(t);
        let bc2_sqrt = (1.0 - b2.powf(t)).sqrt();
        let denom = v.sqrt() / bc2_sqrt + eps;
        let step = (&m * (-alr / bc1)) / denom * &mask;
        let mut th = theta.shallow_clone();
        let _ = th.g_add_(&step);
    }

    /// Snapshot of the state tensors (copies), for a checkpoint.
    pub fn state_snapshot(&self) -> BTreeMap<String, Tensor> {
        self.state
            .iter()
            .map(|(k, v)| (k.clone(), v.copy()))
            .collect()
    }
}

/// Newton–Schulz quintic iteration towards the orthogonal factor of `g`
/// (Jordan et al. 2024; coefficients (3.4445, −4.7750, 2.0315) as in
/// torch.optim.Muon), in `g`'s dtype.
pub fn newton_schulz(g: &Tensor, steps: u32) -> Tensor {
    let (a, b, c) = (3.4445, -4.7750, 2.0315);
    let tall = g.size()[0] > g.size()[1];
    let mut x = if tall { g.tr() } else { g.shallow_clone() };
    x = &x / x.norm().clamp_min(1e-7);
    for _ in 0..steps {
        let gram = x.matmul(&x.tr());
        let upd = &gram * b + gram.matmul(&gram) * c;
        x = &x * a + upd.matmul(&x);
    }
    if tall {
        x.tr()
    } else {
        x
    }
}
