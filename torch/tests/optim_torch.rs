//! Every optimizer against PyTorch itself: torch.optim (SGD, Adam, AdamW,
//! RMSprop, Adagrad, and Muon: torch.optim.Muon on the hidden matrices, or
//! every one, with AdamW on the rest) and the reference rule of Lion, run
//! from the libtorch venv's Python on the same problem in f64. θ after 20
//! full-batch steps must agree to 1e-6 relative.

use serde_json::json;
use stages::dataset::{generate, DatasetKind, DatasetParams};
use stages::mlp::{Activation, Arch, Init};
use stages::optim::{OptName, OptimizerParams};
use stages_torch::mlp::ArchExt;
use stages_torch::optim::Optimizer;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn python() -> PathBuf {
    PathBuf::from(std::env::var("EIGENTRACE_PYTHON").expect(
        "EIGENTRACE_PYTHON is not set: run the tests through `make test` (it bootstraps the PyTorch venv)",
    ))
}

fn opt(name: OptName, lr: f64, f: impl FnOnce(&mut OptimizerParams)) -> OptimizerParams {
    let mut p = OptimizerParams::new(name, lr);
    f(&mut p);
    p
}

fn cases() -> Vec<(&'static str, OptimizerParams)> {
    use OptName::*;
    vec![
        ("sgd", opt(Sgd, 0.3, |_| {})),
        ("sgd momentum", opt(Sgd, 0.1, |p| p.momentum = Some(0.9))),
        (
            "sgd nesterov wd",
            opt(Sgd, 0.1, |p| {
                p.momentum = Some(0.9);
                p.nesterov = Some(true);
                p.weight_decay = Some(1e-2);
            }),
        ),
        (
            "sgd dampening",
            opt(Sgd, 0.1, |p| {
                p.momentum = Some(0.8);
                p.dampening = Some(0.3);
            }),
        ),
        ("adam", opt(Adam, 1e-2, |_| {})),
        (
            "adam amsgrad wd",
            opt(Adam, 1e-2, |p| {
                p.amsgrad = Some(true);
                p.weight_decay = Some(1e-3);
                p.beta2 = Some(0.99);
            }),
        ),
        ("adamw", opt(Adamw, 1e-2, |p| p.weight_decay = Some(0.1))),
        (
            "adamw amsgrad",
            opt(Adamw, 1e-2, |p| p.amsgrad = Some(true)),
        ),
        ("rmsprop", opt(Rmsprop, 1e-3, |_| {})),
        (
            "rmsprop centered momentum wd",
            opt(Rmsprop, 1e-3, |p| {
                p.centered = Some(true);
                p.momentum = Some(0.9);
                p.weight_decay = Some(1e-2);
            }),
        ),
        (
            "adagrad",
            opt(Adagrad, 5e-2, |p| {
                p.lr_decay = Some(1e-2);
                p.weight_decay = Some(1e-3);
            }),
        ),
        ("lion", opt(Lion, 1e-3, |p| p.weight_decay = Some(0.1))),
        ("muon", opt(Muon, 2e-2, |_| {})),
        (
            "muon plain momentum wd",
            opt(Muon, 2e-2, |p| {
                p.nesterov = Some(false);
                p.weight_decay = Some(0.01);
            }),
        ),
        (
            "muon-all",
            opt(Muon, 2e-2, |p| {
                p.matrices = Some(stages::optim::MuonMatrices::All)
            }),
        ),
    ]
}

#[test]
fn every_optimizer_matches_pytorch_for_20_steps_in_f64() {
    let data = DatasetParams {
        kind: DatasetKind::GaussianMixture,
        classes: 3,
        dim: 5,
        samples: 80,
        separation: 2.0,
        test_fraction: 0.25,
        seed: 2,
        scale: Default::default(),
        std_floor: 0.0,
        shuffle_labels: false,
    };
    let ds = generate(&data);
    let (x, y) = ds.split(true);
    let n = y.len();
    let arch = Arch {
        widths: vec![5, 7, 6, 3],
        activation: Activation::Tanh,
    };
    let theta0 = arch.init(Init::TorchDefault, 4);
    let xt = Tensor::from_slice(&x)
        .view([n as i64, 5])
        .to_kind(Kind::Double);
    let yt = Tensor::from_slice(&y);
    let x_rows: Vec<Vec<f64>> = x
        .chunks(5)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let steps = 20;
    let matrices: Vec<(usize, usize, usize)> = arch
        .param_map()
        .iter()
        .filter(|b| b.is_weight)
        .map(|b| (b.offset, b.shape[0], b.shape[1]))
        .collect();
    // PyTorch's, all cases in one Python process.
    let cases = cases();
    let input = dir.path().join("in.json");
    let output = dir.path().join("out.json");
    let spec = json!({
        "widths": arch.widths, "activation": "tanh", "theta0": theta0,
        "x": x_rows, "y": y, "steps": steps,
        "optimizers": cases.iter().map(|(_, p)| p.resolved()).collect::<Vec<_>>(),
    });
    std::fs::write(&input, spec.to_string()).unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/torch_optim_reference.py");
    let st = std::process::Command::new(python())
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .status()
        .unwrap();
    assert!(st.success(), "the PyTorch reference failed");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let mut failures = Vec::new();
    for (ci, (name, params)) in cases.iter().enumerate() {
        // Ours.
        let theta = Tensor::from_slice(&theta0)
            .to_device(Device::Cpu)
            .set_requires_grad(true);
        let mut o = Optimizer::with_matrices(params, matrices.clone());
        for _ in 0..steps {
            let loss = arch.loss(&theta, &xt, &yt);
            let g = Tensor::run_backward(&[&loss], &[&theta], false, false).remove(0);
            o.step(&theta, &g, o.p.lr);
        }
        let ours = Vec::<f64>::try_from(&theta.detach()).unwrap();
        let theirs: Vec<f64> = v["thetas"][ci]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(ours.len(), theirs.len());
        let diff: f64 = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = theirs.iter().map(|b| b * b).sum::<f64>().sqrt();
        let moved: f64 = theirs
            .iter()
            .zip(&theta0)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        eprintln!(
            "{name:<30} ‖Δθ‖/‖θ‖ = {:.2e}   (moved {:.3})",
            diff / norm,
            moved
        );
        assert!(moved > 1e-3, "{name}: the optimizer did not move θ");
        if diff / norm > 1e-6 {
            failures.push(format!("{name}: relative difference {:.3e}", diff / norm));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
