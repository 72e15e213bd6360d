//! Softmax cross-entropy and its derivatives at any margin, against an
//! independent high-precision reference (`python/xent_reference.py`: Python's
//! `decimal` at 300–400 digits, textbook formulas, derivatives by dual numbers;
//! the textbook forms cancel at most 300 of them here).
//!
//! - Per row, 1 − p_c from 1e-2 down to 1e-300, plus unsaturated and
//!   misclassified rows: the loss, the gradient wrt the logits and the
//!   logit-space H·v (R(δ)) of every code path (the R-operator, autograd's
//!   double backprop through `mlp::cross_entropy`, the training backprop) to
//!   1e-12 relative in f64. The textbook forms are measured alongside and
//!   must fail there (the test can fail).
//! - A whole network trained to separation, its output layer scaled until the
//!   train loss is ≤ 1e-20 (and ≤ 1e-150): loss, gradient and H·v by the
//!   R-operator and by double backprop to 1e-10 relative of the reference
//!   computed on the same θ; double backprop through ATen's cross-entropy
//!   (the old loss) fails it.

use serde_json::{json, Value};
use stages::mlp::{Activation, Arch, Init};
use stages_torch::backprop::Backprop;
use stages_torch::hessian::HessianOperator;
use stages_torch::mlp::{cross_entropy, ArchExt};
use stages_torch::rop::RopOperator;
use stages_torch::train::tensor_f64;
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;

fn reference(req: &Value) -> Value {
    let py = std::env::var("EIGENTRACE_PYTHON").expect(
        "EIGENTRACE_PYTHON is not set: run the tests through `make test` (it bootstraps the PyTorch venv)",
    );
    let dir = tempfile::tempdir().unwrap();
    let (rq, rs) = (dir.path().join("req.json"), dir.path().join("res.json"));
    std::fs::write(&rq, req.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/xent_reference.py"
    );
    let st = std::process::Command::new(py)
        .arg(script)
        .arg(&rq)
        .arg(&rs)
        .status()
        .unwrap();
    assert!(st.success(), "the high-precision reference failed");
    serde_json::from_slice(&std::fs::read(&rs).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// ‖a‖, scaled so that squares of 1e-300 do not underflow.
fn norm(a: &[f64]) -> f64 {
    let m = a.iter().fold(0.0, |m: f64, x| m.max(x.abs()));
    if m == 0.0 {
        return 0.0;
    }
    m * a.iter().map(|x| (x / m) * (x / m)).sum::<f64>().sqrt()
}

/// ‖a − b‖ / ‖b‖.
fn rel_norm(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&d) / norm(b)
}

/// max_j |a_j − b_j| / |b_j|.
fn rel_each(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) / y).abs())
        .fold(0.0, f64::max)
}

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

fn vec_of(t: &Tensor) -> Vec<f64> {
    tensor_f64(&t.to_kind(Kind::Double).reshape([-1]))
}

/// One logit row: its logits, label and direction R(z).
struct Row {
    z: Vec<f64>,
    y: i64,
    rz: Vec<f64>,
}

const C: usize = 5;

fn rows() -> Vec<Row> {
    tch::manual_seed(7);
    let mut rows = Vec::new();
    let rz = || vec_of(&Tensor::randn([C as i64], (Kind::Double, CPU)));
    // Correctly classified rows: the others d, d + 0.5, d + 1.3, d + 2.9 below
    // the target, so 1 − p_c ≈ 2.2 e^{−d}: 1.5e-2 at d = 5, 2e-300 at d = 690.
    let margins = [
        5.0, 10.0, 15.0, 20.0, 25.0, 28.0, 30.0, 33.0, 36.0, 40.0, 50.0, 70.0, 100.0, 200.0, 300.0,
        400.0, 500.0, 600.0, 650.0, 690.0,
    ];
    let bases = [0.0, 3.7, -12.3, 250.1];
    for (i, &d) in margins.iter().enumerate() {
        let c = i % C;
        let base = bases[i % bases.len()];
        let mut extra = [0.0, 0.5, 1.3, 2.9].into_iter().cycle().skip(i % 4);
        let z = (0..C)
            .map(|j| {
                if j == c {
                    base
                } else {
                    base - d - extra.next().unwrap()
                }
            })
            .collect();
        rows.push(Row {
            z,
            y: c as i64,
            rz: rz(),
        });
    }
    // Unsaturated rows, some misclassified.
    for i in 0..6 {
        let z = vec_of(&(Tensor::randn([C as i64], (Kind::Double, CPU)) * 2.0));
        rows.push(Row {
            z,
            y: i % C as i64,
            rz: rz(),
        });
    }
    // Confidently misclassified rows: the label 40 and 300 below the top.
    for (i, d) in [40.0, 300.0].into_iter().enumerate() {
        let mut z = vec![-1.0, 0.25, -2.5, 1.75, 0.5];
        z[i] = 2.0;
        z[3 - i] = 2.0 - d;
        rows.push(Row {
            z,
            y: (3 - i) as i64,
            rz: rz(),
        });
    }
    rows
}

/// The identity layer z = x Iᵀ + 0 (exact): the logits are the input row, the
/// bias block of ∇L is δ, and that of H·v, for v = (0, R(z)), is R(δ).
fn identity_net(kind: Kind) -> (Arch, Tensor) {
    let arch = Arch {
        widths: vec![C, C],
        activation: Activation::Tanh,
    };
    let theta = Tensor::cat(
        &[
            Tensor::eye(C as i64, (kind, CPU)).reshape([-1]),
            Tensor::zeros([C as i64], (kind, CPU)),
        ],
        0,
    );
    (arch, theta)
}

fn bias_block(t: &Tensor) -> Vec<f64> {
    vec_of(&t.reshape([-1]).narrow(0, (C * C) as i64, C as i64))
}

/// (loss, δ, R(δ)) of one row by each path.
struct Paths {
    rop_hv: Vec<f64>,
    autograd: (f64, Vec<f64>, Vec<f64>),
    backprop: (f64, Vec<f64>),
    textbook: (f64, Vec<f64>, Vec<f64>),
}

fn paths(row: &Row) -> Paths {
    let (arch, theta) = identity_net(Kind::Double);
    let x = Tensor::from_slice(&row.z).view([1, C as i64]);
    let y = Tensor::from_slice(&[row.y]);
    let rz = Tensor::from_slice(&row.rz);
    // The R-operator.
    let mut rop = RopOperator::new(&arch, &theta, &x, &y);
    let v = Tensor::cat(
        &[
            Tensor::zeros([(C * C) as i64], (Kind::Double, CPU)),
            rz.copy(),
        ],
        0,
    );
    let rop_hv = bias_block(&rop.apply_tensor(&v));
    // Double backprop through mlp::cross_entropy.
    let z = x.copy().set_requires_grad(true);
    let loss = cross_entropy(&z, &y);
    let g = Tensor::run_backward(&[&loss], &[&z], true, true).remove(0);
    let gv = (&g * rz.view([1, C as i64])).sum(Kind::Double);
    let hv = Tensor::run_backward(&[&gv], &[&z], false, false).remove(0);
    let autograd = (loss.double_value(&[]), vec_of(&g.detach()), vec_of(&hv));
    // The training backprop.
    let mut bp = Backprop::new(&arch, Kind::Double, CPU);
    let grad = theta.zeros_like();
    let l = bp.loss_and_grad(&theta, &x, &y, &grad);
    let backprop = (l, bias_block(&grad));
    // The textbook forms (what all three computed before).
    let p = x.softmax(-1, Kind::Double);
    let onehot =
        Tensor::zeros([1, C as i64], (Kind::Double, CPU)).scatter_value(1, &y.view([1, 1]), 1.0);
    let rz1 = rz.view([1, C as i64]);
    let pz = (&p * &rz1).sum(Kind::Double);
    let textbook = (
        x.cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Mean, -100, 0.0)
            .double_value(&[]),
        vec_of(&(&p - onehot)),
        vec_of(&(&p * (rz1 - pz))),
    );
    Paths {
        rop_hv,
        autograd,
        backprop,
        textbook,
    }
}

#[test]
fn every_path_matches_a_high_precision_reference_at_every_margin() {
    let rows = rows();
    let req = json!({
        "mode": "rows", "prec": 400,
        "rows": rows.iter().map(|r| json!({"z": r.z, "y": r.y, "rz": r.rz})).collect::<Vec<_>>(),
    });
    let res = reference(&req);
    let tol = 1e-12;
    let mut worst_textbook_hv: f64 = 0.0;
    let mut failures = Vec::new();
    eprintln!(
        "{:>10} {:>9} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "1-p_c",
        "loss ref",
        "old loss",
        "old δ",
        "old R(δ)",
        "loss ag",
        "loss bp",
        "δ ag",
        "δ bp",
        "R(δ) rop",
        "R(δ) ag"
    );
    for (i, (row, r)) in rows.iter().zip(res["rows"].as_array().unwrap()).enumerate() {
        let (loss, grad, hv) = (
            r["loss"].as_f64().unwrap(),
            floats(&r["grad"]),
            floats(&r["hv"]),
        );
        let one_minus_pc = r["one_minus_pc"].as_f64().unwrap();
        let p = paths(row);
        let errs = [
            ("autograd loss", rel(p.autograd.0, loss)),
            ("backprop loss", rel(p.backprop.0, loss)),
            ("autograd δ", rel_each(&p.autograd.1, &grad)),
            ("backprop δ", rel_each(&p.backprop.1, &grad)),
            ("R-operator R(δ)", rel_norm(&p.rop_hv, &hv)),
            ("autograd R(δ)", rel_norm(&p.autograd.2, &hv)),
        ];
        let old = [
            rel(p.textbook.0, loss),
            rel_each(&p.textbook.1, &grad),
            rel_norm(&p.textbook.2, &hv),
        ];
        eprintln!(
            "{one_minus_pc:>10.1e} {loss:>9.2e} | {:>9.1e} {:>9.1e} {:>9.1e} | {:>9.1e} {:>9.1e} {:>9.1e} {:>9.1e} {:>9.1e} {:>9.1e}",
            old[0], old[1], old[2], errs[0].1, errs[1].1, errs[2].1, errs[3].1, errs[4].1, errs[5].1
        );
        for (what, e) in errs {
            // NaN fails too.
            if e.is_nan() || e > tol {
                failures.push(format!(
                    "row {i} (1 − p_c = {one_minus_pc:.1e}): {what} off by {e:e}"
                ));
            }
        }
        if one_minus_pc < 1e-13 {
            worst_textbook_hv = worst_textbook_hv.max(old[2]);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The textbook R(δ) is wrong by ≥ 1e-3 there: this test would catch it.
    assert!(
        worst_textbook_hv > 1e-3,
        "the textbook R(δ) was expected to fail: {worst_textbook_hv:e}"
    );
}

/// The f32 training path at the margins f32 can hold (p_j ≥ 1e-36): 1e-4
/// relative, where the textbook δ_c = p_c − 1 is 0 from margin 17 on.
#[test]
fn f32_backprop_keeps_its_precision_at_large_margins() {
    let (arch, theta) = identity_net(Kind::Float);
    let mut bp = Backprop::new(&arch, Kind::Float, CPU);
    let grad = theta.zeros_like();
    let rows: Vec<Row> = [3.0f64, 8.0, 17.0, 25.0, 40.0, 60.0, 80.0]
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let c = i % C;
            let z = (0..C)
                .map(|j| {
                    if j == c {
                        1.5
                    } else {
                        1.5 - d - 0.75 * j as f64
                    }
                })
                .collect();
            Row {
                z,
                y: c as i64,
                rz: vec![0.0; C],
            }
        })
        .collect();
    let req = json!({
        "mode": "rows", "prec": 200,
        "rows": rows.iter().map(|r| json!({"z": r.z, "y": r.y, "rz": r.rz})).collect::<Vec<_>>(),
    });
    let res = reference(&req);
    for (row, r) in rows.iter().zip(res["rows"].as_array().unwrap()) {
        let x = Tensor::from_slice(&row.z)
            .view([1, C as i64])
            .to_kind(Kind::Float);
        let l = bp.loss_and_grad(&theta, &x, &Tensor::from_slice(&[row.y]), &grad);
        let (el, eg) = (
            rel(l, r["loss"].as_f64().unwrap()),
            rel_each(&bias_block(&grad), &floats(&r["grad"])),
        );
        eprintln!(
            "1 − p_c = {:.1e}: loss {el:.1e}, δ {eg:.1e}",
            r["one_minus_pc"].as_f64().unwrap()
        );
        assert!(
            el <= 1e-4 && eg <= 1e-4,
            "{:?}: loss {el:e}, δ {eg:e}",
            row.z
        );
    }
}

/// Blobs at 1.5·e_k in 4-D, 10 rows a class.
fn blobs() -> (Tensor, Tensor) {
    tch::manual_seed(11);
    let y = Tensor::arange(30, (Kind::Int64, CPU)).remainder(3);
    let centres = Tensor::eye(4, (Kind::Double, CPU)).narrow(0, 0, 3) * 1.5;
    let x = centres.index_select(0, &y) + Tensor::randn([30, 4], (Kind::Double, CPU)) * 0.3;
    (x, y)
}

#[test]
fn saturated_network_hvp_matches_a_high_precision_reference() {
    let arch = Arch {
        widths: vec![4, 8, 3],
        activation: Activation::Tanh,
    };
    let (x, y) = blobs();
    // Train to separation by gradient descent.
    let mut theta = Tensor::from_slice(&arch.init(Init::TorchDefault, 5));
    let grad = theta.zeros_like();
    let mut bp = Backprop::new(&arch, Kind::Double, CPU);
    for _ in 0..400 {
        bp.loss_and_grad(&theta, &x, &y, &grad);
        let _ = theta.g_sub_(&(&grad * 0.5));
    }
    let (_, acc) = arch.evaluate(&theta, &x, &y);
    assert_eq!(acc, 1.0, "the blobs are separated");
    // tanh' = 1 − h² from a rounded h keeps relative precision only where
    // |a| is moderate; that is the activation's own limit, not the loss's.
    let a1 = x.matmul(&theta.narrow(0, 0, 32).view([8, 4]).tr()) + theta.narrow(0, 32, 8);
    let amax = a1.abs().max().double_value(&[]);
    assert!(amax < 6.0, "hidden pre-activations up to {amax}");
    let out = 32 + 8; // the output layer's W and b
    let n = arch.num_params() as i64;
    let vs: Vec<Vec<f64>> = (0..3)
        .map(|s| {
            tch::manual_seed(100 + s);
            vec_of(&Tensor::randn([n], (Kind::Double, CPU)))
        })
        .collect();
    for target in [1e-20, 1e-150] {
        // Scale the output layer (every margin with it) until the loss is ≤ target.
        let th = theta.copy();
        while arch.evaluate(&th, &x, &y).0 > target {
            let _ = th.narrow(0, out, n - out).g_mul_scalar_(1.25);
        }
        let theta_v = vec_of(&th);
        let res = reference(&json!({
            "mode": "net", "prec": 300, "widths": arch.widths, "activation": "tanh",
            "theta": theta_v, "x": (0..30).map(|i| vec_of(&x.get(i))).collect::<Vec<_>>(),
            "y": vec_of(&y.to_kind(Kind::Double)).iter().map(|&c| c as i64).collect::<Vec<_>>(),
            "v": vs,
        }));
        let (loss, g_ref) = (res["loss"].as_f64().unwrap(), floats(&res["grad"]));
        let hv_ref: Vec<Vec<f64>> = res["hv"].as_array().unwrap().iter().map(floats).collect();
        // Loss and gradient.
        let g = th.zeros_like();
        let l_bp = bp.loss_and_grad(&th, &x, &y, &g);
        let mut auto = HessianOperator::new(&arch, &theta_v, &x, &y, Kind::Double, CPU);
        let l_eval = arch.evaluate(&th, &x, &y).0;
        let errs = [
            ("backprop loss", rel(l_bp, loss)),
            ("evaluate loss", rel(l_eval, loss)),
            ("backprop gradient", rel_norm(&vec_of(&g), &g_ref)),
            ("autograd gradient", rel_norm(&auto.gradient(), &g_ref)),
        ];
        // H·v.
        let mut rop = RopOperator::new(&arch, &th, &x, &y);
        let mut errs = errs.to_vec();
        let mut old_worst: f64 = 0.0;
        for (v, want) in vs.iter().zip(&hv_ref) {
            let vt = Tensor::from_slice(v);
            errs.push((
                "R-operator H·v",
                rel_norm(&vec_of(&rop.apply_tensor(&vt)), want),
            ));
            errs.push((
                "double-backprop H·v",
                rel_norm(&vec_of(&auto.apply_tensor(&vt)), want),
            ));
            // Double backprop through ATen's cross-entropy, the loss before.
            let t = th.copy().set_requires_grad(true);
            let old = arch.forward(&t, &x).cross_entropy_loss::<Tensor>(
                &y,
                None,
                tch::Reduction::Mean,
                -100,
                0.0,
            );
            let og = Tensor::run_backward(&[&old], &[&t], true, true).remove(0);
            let ohv = Tensor::run_backward(&[&(og * &vt).sum(Kind::Double)], &[&t], false, false)
                .remove(0);
            old_worst = old_worst.max(rel_norm(&vec_of(&ohv), want));
        }
        eprintln!("loss {loss:.2e} (target {target:.0e}), ‖H·v‖ ~ {:.1e}; ATen cross-entropy H·v off by {old_worst:.1e}", norm(&hv_ref[0]));
        for (what, e) in &errs {
            eprintln!("  {what}: {e:.1e}");
        }
        for (what, e) in &errs {
            assert!(*e <= 1e-10, "loss {loss:e}: {what} off by {e:e}");
        }
        assert!(
            old_worst > 1e-3,
            "the old loss was expected to fail: {old_worst:e}"
        );
    }
}
