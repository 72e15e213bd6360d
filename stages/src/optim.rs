//! Optimizers over the flat θ, written to match `torch.optim` step for step
//! (same operation order, same state names), so that their state can be saved
//! in checkpoints and used by the analysis (e.g. Adam's `exp_avg_sq` for the
//! preconditioned Hessian).

use serde::{Deserialize, Serialize};

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
