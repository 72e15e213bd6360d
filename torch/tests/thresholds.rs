//! The stability thresholds that `spectrum.arrow` holds, against the
//! optimizers themselves (ours match torch.optim step for step, see
//! optim_torch.rs): on a one-dimensional quadratic L = λθ²/2, where the
//! linearization is exact, each SGD-family update must converge just below
//! its threshold and diverge just above it. And the preconditioner D of the
//! adaptive methods against torch.optim's own update: D = η·(what the step
//! divided)/(the step taken).

use serde_json::Value;
use stages::hessian::{coupled_weight_decay, preconditioner_inv_sqrt};
use stages::metrics::stability_threshold;
use stages::optim::{OptName, OptimizerParams};
use stages_torch::optim::Optimizer;
use std::collections::BTreeMap;
use tch::Tensor;

fn sgd(lr: f64, f: impl FnOnce(&mut OptimizerParams)) -> OptimizerParams {
    let mut p = OptimizerParams::new(OptName::Sgd, lr);
    f(&mut p);
    p
}

/// |θ| after `steps` updates on λθ²/2 from θ = 1.
fn final_size(p: &OptimizerParams, lambda: f64, steps: usize) -> f64 {
    let theta = Tensor::from_slice(&[1.0f64]);
    let mut opt = Optimizer::new(p);
    for _ in 0..steps {
        let g = &theta * lambda;
        opt.step(&theta, &g, p.lr);
    }
    theta.abs().double_value(&[0])
}

#[test]
fn sgd_family_thresholds_are_where_the_update_turns_unstable() {
    let cases = [
        ("gd", sgd(0.1, |_| {})),
        ("heavy ball", sgd(0.05, |p| p.momentum = Some(0.9))),
        (
            "nesterov",
            sgd(0.05, |p| {
                p.momentum = Some(0.9);
                p.nesterov = Some(true);
            }),
        ),
        (
            "dampening",
            sgd(0.1, |p| {
                p.momentum = Some(0.8);
                p.dampening = Some(0.5);
            }),
        ),
        (
            "weight decay",
            sgd(0.1, |p| {
                p.momentum = Some(0.5);
                p.weight_decay = Some(0.7);
            }),
        ),
        (
            "nesterov weight decay",
            sgd(0.02, |p| {
                p.momentum = Some(0.6);
                p.nesterov = Some(true);
                p.weight_decay = Some(2.0);
            }),
        ),
    ];
    for (name, p) in cases {
        let t = stability_threshold(&p, "hessian", p.lr, 100).unwrap();
        let below = final_size(&p, 0.97 * t, 6000);
        let above = final_size(&p, 1.03 * t, 6000);
        assert!(
            below < 1e-3,
            "{name}: λ = 0.97·{t} should converge, |θ| = {below:e}"
        );
        // (Past f64's range it is NaN: diverged all the same.)
        assert!(
            above.is_nan() || above > 1e3,
            "{name}: λ = 1.03·{t} should diverge, |θ| = {above:e}"
        );
    }
    // The textbook values, for the record.
    let t = |p: &OptimizerParams| stability_threshold(p, "hessian", p.lr, 1).unwrap();
    assert!((t(&sgd(0.1, |_| {})) - 20.0).abs() < 1e-12);
    assert!((t(&sgd(0.1, |p| p.momentum = Some(0.9))) - 38.0).abs() < 1e-9);
    let adam = OptimizerParams::new(OptName::Adam, 1e-3);
    assert!(
        (stability_threshold(&adam, "preconditioned", 1e-3, 5).unwrap() - 38_000.0).abs() < 1e-6
    );
    assert!(stability_threshold(&adam, "hessian", 1e-3, 5).is_none());
    let lion = OptimizerParams::new(OptName::Lion, 1e-3);
    assert!(stability_threshold(&lion, "hessian", 1e-3, 5).is_none());
}

/// torch.optim's Adam, RMSprop (centered) and Adagrad for `steps` steps on a
/// fixed quadratic in the venv's Python: the last step, the gradient it
/// used, and the optimizer's state after it.
fn torch_steps(cls: &str, kwargs: &str, steps: usize) -> Value {
    let script = format!(
        r#"
import json, torch
torch.manual_seed(0)
P = 40
A = torch.randn(P, P, dtype=torch.float64)
A = A @ A.T / P + torch.eye(P, dtype=torch.float64)
th = torch.randn(P, dtype=torch.float64, requires_grad=True)
opt = torch.optim.{cls}([th], **{kwargs})
for _ in range({steps}):
    prev = th.detach().clone()
    opt.zero_grad()
    loss = 0.5 * th @ A @ th + 0.05 * (th ** 4).sum()
    loss.backward()
    g = th.grad.detach().clone()
    opt.step()
st = {{k: (v.reshape(-1).tolist() if v.numel() > 1 else [float(v)]) for k, v in opt.state[th].items()}}
print(json.dumps({{"delta": (prev - th.detach()).tolist(), "grad": g.tolist(), "state": st}}))
"#
    );
    let py = std::env::var("EIGENTRACE_PYTHON").expect(
        "EIGENTRACE_PYTHON is not set: run the tests through `make test` (it bootstraps the PyTorch venv)",
    );
    let out = std::process::Command::new(py)
        .args(["-c", &script])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn the_preconditioner_is_the_one_torch_applied() {
    let adam = OptimizerParams::new(OptName::Adam, 1e-2);
    let mut rms = OptimizerParams::new(OptName::Rmsprop, 1e-3);
    rms.centered = Some(true);
    let adagrad = OptimizerParams::new(OptName::Adagrad, 5e-2);
    let cases = [
        (&adam, "Adam", "dict(lr=1e-2)", "exp_avg"),
        (&rms, "RMSprop", "dict(lr=1e-3, centered=True)", ""),
        (&adagrad, "Adagrad", "dict(lr=5e-2)", ""),
    ];
    for (p, cls, kwargs, numerator) in cases {
        // Step 3, so that Adam's bias corrections are far from 1.
        let r = torch_steps(cls, kwargs, 3);
        let state: BTreeMap<String, Vec<f64>> = r["state"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), floats(v)))
            .collect();
        let d_inv_sqrt = preconditioner_inv_sqrt(p, &state).unwrap();
        // What the step divided: Adam's m (its bias correction is in D), the
        // others' gradient.
        let num = if numerator.is_empty() {
            floats(&r["grad"])
        } else {
            state[numerator].clone()
        };
        let delta = floats(&r["delta"]);
        let mut worst = 0.0f64;
        for i in 0..delta.len() {
            let d_torch = p.lr * num[i] / delta[i];
            let d_ours = 1.0 / (d_inv_sqrt[i] * d_inv_sqrt[i]);
            worst = worst.max((d_ours / d_torch - 1.0).abs());
        }
        assert!(worst < 1e-9, "{cls}: D differs from torch's by {worst:e}");
    }
    // Coupled L2 decay enters the operator; decoupled does not.
    let mut wd = OptimizerParams::new(OptName::Adam, 1e-3);
    wd.weight_decay = Some(0.1);
    assert_eq!(coupled_weight_decay(&wd), 0.1);
    wd.name = OptName::Adamw;
    assert_eq!(coupled_weight_decay(&wd), 0.0);
}
