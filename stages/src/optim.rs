//! Optimizers over the flat θ, written to match `torch.optim` step for step
//! (same operation order, same state names), so that their state can be saved
//! in checkpoints and used by the analysis (e.g. Adam's `exp_avg_sq` for the
//! preconditioned Hessian).

use crate::error::ParamError;
use serde::{Deserialize, Serialize};

/// The most Newton–Schulz iterations Muon may take (5 is the default).
pub const MAX_NS_STEPS: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptName {
    Sgd,
    Adam,
    Adamw,
    Rmsprop,
    Adagrad,
    Lion,
    /// torch.optim.Muon (Newton–Schulz-orthogonalized Nesterov momentum) on
    /// the hidden weight matrices, AdamW on the input and output layers and
    /// every bias: the reference recipe (Jordan et al. 2024,
    /// github.com/KellerJordan/Muon, MuonWithAuxAdam). `matrices = "all"` is
    /// the variant that orthogonalizes every weight matrix (label `muon-all`).
    Muon,
}

/// Which weight matrices Muon orthogonalizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MuonMatrices {
    /// The hidden-to-hidden ones; the first and last layers' weights get
    /// AdamW, as torch.optim.Muon's documentation and the reference advise.
    Hidden,
    /// Every weight matrix (a variant: the first and last layers too).
    All,
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
    /// The hyperparameters this optimizer reads besides `lr`, by their config
    /// names (what [`OptimizerParams::resolved`] keeps); any other is an error.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            OptName::Sgd => &["momentum", "dampening", "nesterov", "weight_decay"],
            OptName::Adam | OptName::Adamw => &["beta1", "beta2", "eps", "amsgrad", "weight_decay"],
            OptName::Rmsprop => &["alpha", "eps", "momentum", "centered", "weight_decay"],
            OptName::Adagrad => &["lr_decay", "eps", "weight_decay"],
            OptName::Lion => &["beta1", "beta2", "weight_decay"],
            // The weights' momentum and Newton–Schulz; the biases' AdamW
            // (aux_lr, beta1, beta2, eps).
            OptName::Muon => &[
                "matrices",
                "momentum",
                "nesterov",
                "ns_steps",
                "weight_decay",
                "aux_lr",
                "beta1",
                "beta2",
                "eps",
            ],
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
    /// Muon: the AdamW learning rate of the biases (and, with `matrices =
    /// "hidden"`, of the input and output layers' weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_lr: Option<f64>,
    /// Muon: which weight matrices it orthogonalizes (`hidden` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrices: Option<MuonMatrices>,
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
            matrices: None,
        }
    }

    /// The run's default label (the first part of its id, its legend key):
    /// the optimizer's name, or the variant's (`muon-all`).
    pub fn default_label(&self) -> &'static str {
        match (self.name, self.matrices) {
            (OptName::Muon, Some(MuonMatrices::All)) => "muon-all",
            (name, _) => name.as_str(),
        }
    }

    /// Every hyperparameter that this optimizer uses, with PyTorch's defaults
    /// filled in; those it does not use are cleared (so they cannot change a key).
    pub fn resolved(&self) -> OptimizerParams {
        let mut r = OptimizerParams::new(self.name, self.lr);
        let wd = Some(self.weight_decay.unwrap_or(match self.name {
            OptName::Adamw => 1e-2,
            // torch.optim.Muon's default.
            OptName::Muon => 0.1,
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
                // Nesterov, 5 steps, weight decay 0.1); MuonWithAuxAdam's
                // AdamW for the rest (lr 3e-4, betas (0.9, 0.95), eps 1e-10,
                // no weight decay).
                r.matrices = Some(self.matrices.unwrap_or(MuonMatrices::Hidden));
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

    /// The hyperparameters as written (None = not given), by their config names.
    fn given(&self) -> [(&'static str, bool); 14] {
        [
            ("momentum", self.momentum.is_some()),
            ("dampening", self.dampening.is_some()),
            ("nesterov", self.nesterov.is_some()),
            ("weight_decay", self.weight_decay.is_some()),
            ("beta1", self.beta1.is_some()),
            ("beta2", self.beta2.is_some()),
            ("eps", self.eps.is_some()),
            ("amsgrad", self.amsgrad.is_some()),
            ("alpha", self.alpha.is_some()),
            ("centered", self.centered.is_some()),
            ("lr_decay", self.lr_decay.is_some()),
            ("ns_steps", self.ns_steps.is_some()),
            ("aux_lr", self.aux_lr.is_some()),
            ("matrices", self.matrices.is_some()),
        ]
    }

    /// Range checks, naming the field: a hyperparameter this optimizer does
    /// not use is an error (it would change nothing, silently), and every
    /// number is checked against its range (the message gives the range).
    pub fn validate(&self) -> Result<(), ParamError> {
        let bad = |f: &str, m: String| Err(ParamError::new(f, m));
        let uses = self.name.fields();
        for (f, given) in self.given() {
            if given && !uses.contains(&f) {
                return bad(
                    f,
                    format!(
                        "does not apply to {} (it uses lr, {}); remove it",
                        self.name.as_str(),
                        uses.join(", ")
                    ),
                );
            }
        }
        let r = self.resolved();
        if !(r.lr.is_finite() && r.lr > 0.0) {
            return bad("lr", format!("must be a finite number > 0, got {}", r.lr));
        }
        if let Some(v) = r.aux_lr {
            if !(v.is_finite() && v > 0.0) {
                return bad("aux_lr", format!("must be a finite number > 0, got {v}"));
            }
        }
        for (f, v) in [
            ("momentum", r.momentum),
            ("dampening", r.dampening),
            ("beta1", r.beta1),
            ("beta2", r.beta2),
            ("alpha", r.alpha),
        ] {
            if let Some(v) = v {
                if !(0.0..1.0).contains(&v) {
                    return bad(f, format!("must be in [0, 1), got {v}"));
                }
            }
        }
        if let Some(v) = r.eps {
            if !(v.is_finite() && v > 0.0) {
                return bad("eps", format!("must be a finite number > 0, got {v}"));
            }
        }
        for (f, v) in [("weight_decay", r.weight_decay), ("lr_decay", r.lr_decay)] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return bad(f, format!("must be a finite number ≥ 0, got {v}"));
                }
            }
        }
        if let Some(n) = r.ns_steps {
            if !(1..=MAX_NS_STEPS).contains(&n) {
                return bad(
                    "ns_steps",
                    format!("must be in 1..={MAX_NS_STEPS} (Newton–Schulz iterations), got {n}"),
                );
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [OptName; 7] = [
        OptName::Sgd,
        OptName::Adam,
        OptName::Adamw,
        OptName::Rmsprop,
        OptName::Adagrad,
        OptName::Lion,
        OptName::Muon,
    ];

    #[test]
    fn fields_are_what_resolved_keeps() {
        for name in ALL {
            let r = OptimizerParams::new(name, 0.1).resolved();
            let kept: Vec<&str> = r.given().iter().filter(|g| g.1).map(|g| g.0).collect();
            let mut want = name.fields().to_vec();
            want.sort();
            let mut kept = kept;
            kept.sort();
            assert_eq!(kept, want, "{}", name.as_str());
            assert!(OptimizerParams::new(name, 0.1).validate().is_ok());
            assert!(
                r.validate().is_ok(),
                "{}: resolved params validate",
                name.as_str()
            );
        }
    }

    #[test]
    fn hyperparameters_that_do_not_apply_are_errors() {
        let mut p = OptimizerParams::new(OptName::Sgd, 0.1);
        p.beta1 = Some(0.9);
        let crate::error::ParamError { field: f, msg: m } = p.validate().unwrap_err();
        assert_eq!(f, "beta1");
        assert!(
            m.contains(
                "does not apply to sgd (it uses lr, momentum, dampening, nesterov, weight_decay)"
            ),
            "{m}"
        );
        let mut p = OptimizerParams::new(OptName::Adam, 0.1);
        p.momentum = Some(0.9);
        assert_eq!(p.validate().unwrap_err().field, "momentum");
        let mut p = OptimizerParams::new(OptName::Adam, 0.1);
        p.ns_steps = Some(5);
        assert_eq!(p.validate().unwrap_err().field, "ns_steps");
        let mut p = OptimizerParams::new(OptName::Muon, 0.1);
        p.dampening = Some(0.0);
        assert_eq!(p.validate().unwrap_err().field, "dampening");
    }

    #[test]
    fn ranges() {
        let check = |name, set: &dyn Fn(&mut OptimizerParams), field: &str, range: &str| {
            let mut p = OptimizerParams::new(name, 0.1);
            set(&mut p);
            let crate::error::ParamError { field: f, msg: m } = p.validate().unwrap_err();
            assert_eq!(f, field);
            assert!(m.contains(range), "{field}: {m}");
        };
        use OptName::*;
        check(Sgd, &|p| p.momentum = Some(2.0), "momentum", "[0, 1)");
        check(Sgd, &|p| p.momentum = Some(1.0), "momentum", "[0, 1)");
        check(Sgd, &|p| p.dampening = Some(-0.1), "dampening", "[0, 1)");
        check(Adam, &|p| p.beta1 = Some(1.0), "beta1", "[0, 1)");
        check(Lion, &|p| p.beta2 = Some(f64::NAN), "beta2", "[0, 1)");
        check(Rmsprop, &|p| p.alpha = Some(1.5), "alpha", "[0, 1)");
        check(Muon, &|p| p.ns_steps = Some(0), "ns_steps", "1..=100");
        check(Muon, &|p| p.ns_steps = Some(101), "ns_steps", "1..=100");
        check(Muon, &|p| p.aux_lr = Some(0.0), "aux_lr", "> 0");
        check(Sgd, &|p| p.lr = f64::INFINITY, "lr", "> 0");
        check(Sgd, &|p| p.lr = 0.0, "lr", "> 0");
        check(Adam, &|p| p.eps = Some(0.0), "eps", "> 0");
        check(Adagrad, &|p| p.eps = Some(-1e-8), "eps", "> 0");
        check(
            Adamw,
            &|p| p.weight_decay = Some(-1.0),
            "weight_decay",
            "≥ 0",
        );
        check(
            Sgd,
            &|p| p.weight_decay = Some(f64::INFINITY),
            "weight_decay",
            "≥ 0",
        );
        check(Adagrad, &|p| p.lr_decay = Some(-1.0), "lr_decay", "≥ 0");
        check(
            Sgd,
            &|p| p.nesterov = Some(true),
            "nesterov",
            "momentum > 0",
        );
    }
}
