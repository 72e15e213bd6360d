//! The Hessian operators against independent computations: chunking does not
//! change H·v; our HVP equals torch.autograd's on a saved checkpoint; the
//! preconditioned operator's eigenpairs equal a dense eigh of D^{-1/2} H D^{-1/2}.

use stages::dataset::{generate, write, DatasetKind, DatasetParams};
use stages::hessian::preconditioner_inv_sqrt;
use stages::lanczos::{lanczos, one_by_one, LanczosOptions, Which};
use stages::mlp::{Activation, Arch, Init};
use stages::optim::{OptName, OptimizerParams};
use stages::train::{read_checkpoint, CheckpointSpec, Schedule, TrainParams};
use stages_torch::hessian::{analysis_set, HessianOperator};
use stages_torch::mlp::ArchExt;
use tch::{Device, Kind, Tensor};

fn data(dim: usize, classes: usize, samples: usize) -> DatasetParams {
    DatasetParams {
        kind: DatasetKind::GaussianMixture,
        classes,
        dim,
        samples,
        separation: 2.0,
        test_fraction: 0.25,
        seed: 9,
        scale: Default::default(),
        std_floor: 0.0,
        shuffle_labels: false,
    }
}

fn rand_vec(n: usize, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn([n as i64], (Kind::Double, Device::Cpu))
}

#[test]
fn hvp_does_not_depend_on_the_chunk_size_f32() {
    let ds = generate(&data(6, 3, 400));
    let arch = Arch {
        widths: vec![6, 20, 3],
        activation: Activation::Tanh,
    };
    let theta = arch.init(Init::TorchDefault, 2);
    let (x, y) = analysis_set(&ds, None, Kind::Float, Device::Cpu).unwrap();
    let v = rand_vec(arch.num_params(), 1).to_kind(Kind::Float);
    let mut whole = HessianOperator::new(&arch, &theta, &x, &y, Kind::Float, Device::Cpu);
    let reference = whole.apply_tensor(&v);
    for chunk in [1usize, 7, 64, 299] {
        let mut op = HessianOperator::with_chunks(
            &arch,
            &theta,
            &x,
            &y,
            Kind::Float,
            Device::Cpu,
            Some(chunk),
        );
        let hv = op.apply_tensor(&v);
        let rel = (&hv - &reference).norm().double_value(&[]) / reference.norm().double_value(&[]);
        assert!(rel <= 1e-6, "chunk {chunk}: relative difference {rel:e}");
    }
}

#[test]
fn our_hvp_equals_torch_autograd_on_a_saved_checkpoint() {
    let py = std::env::var("EIGENTRACE_PYTHON")
        .expect("EIGENTRACE_PYTHON is not set: run the tests through `make test`");
    let dir = tempfile::tempdir().unwrap();
    let ds = generate(&data(5, 3, 300));
    let data_path = dir.path().join("data.arrow");
    write(&ds, &data_path).unwrap();
    let arch = Arch {
        widths: vec![5, 16, 16, 3],
        activation: Activation::Softplus,
    };
    let p = TrainParams {
        arch: arch.clone(),
        init: Init::TorchDefault,
        optimizer: OptimizerParams::new(OptName::Adam, 1e-2),
        steps: 30,
        schedule: Schedule::default(),
        batch_size: None,
        log_every: 10,
        checkpoints: CheckpointSpec::default(),
        seed: 0,
        dtype: stages::runtime::Dtype::F32,
    };
    let out = dir.path().join("run");
    stages_torch::train::run(&p, &data_path, Device::Cpu, &out, &|_, _, _| {}).unwrap();
    let ck = out.join(stages::train::checkpoint_name(30));
    let theta = &read_checkpoint(&ck).unwrap()["theta"];
    let m = 150;
    let (x, y) = analysis_set(&ds, Some(m), Kind::Float, Device::Cpu).unwrap();
    let mut op = HessianOperator::new(&arch, theta, &x, &y, Kind::Float, Device::Cpu);
    let vs: Vec<Vec<f64>> = (0..3)
        .map(|s| Vec::<f64>::try_from(&rand_vec(theta.len(), s)).unwrap())
        .collect();
    let ours: Vec<Vec<f64>> = vs
        .iter()
        .map(|v| {
            let mut o = vec![0.0; v.len()];
            op.apply(v, &mut o);
            o
        })
        .collect();
    let req = serde_json::json!({
        "checkpoint": ck, "data": data_path, "widths": arch.widths, "activation": "softplus", "m": m, "v": vs,
    });
    let (rq, rs) = (dir.path().join("req.json"), dir.path().join("res.json"));
    std::fs::write(&rq, req.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/torch_hvp_reference.py"
    );
    let st = std::process::Command::new(py)
        .arg(script)
        .arg(&rq)
        .arg(&rs)
        .status()
        .unwrap();
    assert!(st.success(), "the PyTorch reference failed");
    let res: serde_json::Value = serde_json::from_slice(&std::fs::read(&rs).unwrap()).unwrap();
    for (i, o) in ours.iter().enumerate() {
        let theirs: Vec<f64> = res["hv"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let diff: f64 = o
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = theirs.iter().map(|b| b * b).sum::<f64>().sqrt();
        eprintln!("v{i}: ‖ours − torch‖/‖torch‖ = {:.2e}", diff / norm);
        assert!(
            diff / norm <= 1e-5,
            "v{i}: relative difference {:e}",
            diff / norm
        );
    }
}

#[test]
fn preconditioned_lanczos_matches_dense_eigh() {
    let ds = generate(&data(5, 3, 200));
    let arch = Arch {
        widths: vec![5, 18, 3],
        activation: Activation::Tanh,
    };
    let n = arch.num_params();
    let theta = arch.init(Init::TorchDefault, 4);
    let (x, y) = analysis_set(&ds, None, Kind::Double, Device::Cpu).unwrap();
    // An Adam state: exp_avg_sq from a few squared gradients, step 7.
    let mut state = std::collections::BTreeMap::new();
    let v: Vec<f64> = (0..n).map(|i| 1e-4 * (1.0 + (i % 13) as f64)).collect();
    state.insert("exp_avg_sq".to_string(), v.clone());
    state.insert("step".to_string(), vec![7.0]);
    let adam = OptimizerParams::new(OptName::Adam, 1e-3);
    let d = preconditioner_inv_sqrt(&adam, &state).unwrap();
    // Closed form of one entry: ((1 − β1^7)(sqrt(v / (1 − β2^7)) + ε))^(-1/2)
    // (thresholds.rs checks D against torch.optim.Adam's own step).
    let expect0 =
        1.0 / ((1.0 - 0.9f64.powi(7)) * ((v[0] / (1.0 - 0.999f64.powi(7))).sqrt() + 1e-8)).sqrt();
    assert!((d[0] - expect0).abs() <= 1e-12 * expect0);
    let mut op = HessianOperator::new(&arch, &theta, &x, &y, Kind::Double, Device::Cpu);
    let mut cols = Vec::new();
    for j in 0..n {
        let e = Tensor::zeros([n as i64], (Kind::Double, Device::Cpu));
        let _ = e.get(j as i64).fill_(1.0);
        cols.push(op.apply_tensor(&e));
    }
    let h = Tensor::stack(&cols, 1);
    let h = (&h + h.tr()) / 2.0;
    let dt = Tensor::from_slice(&d);
    let pre = &h * dt.unsqueeze(0) * dt.unsqueeze(1);
    let evals = Vec::<f64>::try_from(&pre.linalg_eigvalsh("L")).unwrap();
    let mut tmp = vec![0.0; n];
    let r = lanczos(
        n,
        &mut one_by_one(&mut |v, o| {
            for i in 0..n {
                tmp[i] = v[i] * d[i];
            }
            op.apply(&tmp, o);
            for i in 0..n {
                o[i] *= d[i];
            }
        }),
        &LanczosOptions {
            k: 4,
            which: Which::Largest,
            tol: 1e-10,
            abs_tol: 0.0,
            max_iter: n,
            seed: 3,
            block: 1,
            f32_basis: false,
        },
        None,
    );
    assert!(r.converged);
    for p in &r.pairs {
        let truth = evals[n - 1 - p.rank as usize];
        let rel = (p.value - truth).abs() / truth.abs();
        assert!(
            rel <= 1e-8,
            "rank {}: {} vs dense {} (rel {rel:e})",
            p.rank,
            p.value,
            truth
        );
    }
    // SGD has no preconditioner.
    assert!(preconditioner_inv_sqrt(&OptimizerParams::new(OptName::Sgd, 0.1), &state).is_none());
}

#[test]
fn the_null_model_is_the_spectrum_at_fresh_initializations() {
    let dir = tempfile::tempdir().unwrap();
    let ds = generate(&data(4, 3, 160));
    let data_path = dir.path().join("data.arrow");
    write(&ds, &data_path).unwrap();
    let arch = Arch {
        widths: vec![4, 10, 3],
        activation: Activation::Tanh,
    };
    let p = stages::hessian::NullParams {
        arch: arch.clone(),
        init: Init::TorchDefault,
        replicas: 2,
        k: 3,
        analysis_size: None,
        which: Which::Largest,
        tol: 1e-10,
        max_iter: 200,
        seed: 0,
        dtype: stages::runtime::Dtype::F64,
        chunk_rows: None,
        block: 2,
        max_basis: None,
        vector_dtype: Default::default(),
    };
    stages_torch::hessian::run_null(&p, &data_path, Device::Cpu, dir.path(), &|_, _, _| {})
        .unwrap();
    let values_path = dir.path().join("null/values.arrow");
    let values = stages::arrow_io::Table::open(&values_path).unwrap();
    assert_eq!(values.len(), 2 * 3);
    let ev = values.f64("eigenvalue").unwrap();
    // Replica 0 is the init with seed 1_000_003: a dense eigh there agrees.
    let n = arch.num_params();
    let theta = arch.init(Init::TorchDefault, 1_000_003);
    let (x, y) = analysis_set(&ds, None, Kind::Double, Device::Cpu).unwrap();
    let mut op = HessianOperator::new(&arch, &theta, &x, &y, Kind::Double, Device::Cpu);
    let cols: Vec<Tensor> = (0..n)
        .map(|j| {
            let e = Tensor::zeros([n as i64], (Kind::Double, Device::Cpu));
            let _ = e.get(j as i64).fill_(1.0);
            op.apply_tensor(&e)
        })
        .collect();
    let h = Tensor::stack(&cols, 1);
    let evals = Vec::<f64>::try_from(&((&h + h.tr()) / 2.0).linalg_eigvalsh("L")).unwrap();
    for r in 0..3 {
        let rel = (ev.value(r) - evals[n - 1 - r]).abs() / evals[n - 1 - r].abs();
        assert!(
            rel <= 1e-8,
            "rank {r}: null {} vs dense {}",
            ev.value(r),
            evals[n - 1 - r]
        );
    }
    // The two replicas are different initializations.
    assert!((ev.value(0) - ev.value(3)).abs() > 1e-9);
}

#[test]
fn r_operator_block_products_equal_autograd_double_backprop_f64() {
    for act in [
        Activation::Tanh,
        Activation::Gelu,
        Activation::Softplus,
        Activation::Relu,
    ] {
        let ds = generate(&data(6, 4, 200));
        let arch = Arch {
            widths: vec![6, 13, 9, 4],
            activation: act,
        };
        let n = arch.num_params();
        let theta = arch.init(Init::TorchDefault, 8);
        let (x, y) = analysis_set(&ds, None, Kind::Double, Device::Cpu).unwrap();
        let mut auto = HessianOperator::new(&arch, &theta, &x, &y, Kind::Double, Device::Cpu);
        let mut rop =
            stages_torch::rop::RopOperator::new(&arch, &Tensor::from_slice(&theta), &x, &y);
        for b in [1i64, 4, 16] {
            tch::manual_seed(b);
            let v = Tensor::randn([b, n as i64], (Kind::Double, Device::Cpu));
            let ours = rop.apply_block(&v);
            for i in 0..b {
                let reference = auto.apply_tensor(&v.get(i));
                let rel = (ours.get(i) - &reference).norm().double_value(&[])
                    / reference.norm().double_value(&[]);
                assert!(
                    rel <= 1e-10,
                    "{act:?} b={b} row {i}: relative difference {rel:e}"
                );
            }
        }
    }
}

#[test]
fn stored_residuals_are_true_residuals() {
    let dir = tempfile::tempdir().unwrap();
    let ds = generate(&data(5, 3, 240));
    let data_path = dir.path().join("data.arrow");
    write(&ds, &data_path).unwrap();
    let arch = Arch {
        widths: vec![5, 12, 3],
        activation: Activation::Tanh,
    };
    let tp = TrainParams {
        arch: arch.clone(),
        init: Init::TorchDefault,
        optimizer: OptimizerParams::new(OptName::Adam, 1e-2),
        steps: 20,
        schedule: Schedule::default(),
        batch_size: None,
        log_every: 10,
        checkpoints: CheckpointSpec {
            every: Some(10),
            log_spaced: None,
            at: vec![],
        },
        seed: 0,
        dtype: stages::runtime::Dtype::F64,
    };
    let run = dir.path().join("run");
    stages_torch::train::run(&tp, &data_path, Device::Cpu, &run, &|_, _, _| {}).unwrap();
    let hp = stages::hessian::HessianParams {
        k: 3,
        analysis_size: None,
        which: Which::BothEnds,
        tol: Some(1e-8),
        max_iter: 200,
        seed: 0,
        dtype: stages::runtime::Dtype::F64,
        chunk_rows: None,
        warm_start: true,
        preconditioned: true,
        block: 1,
        max_basis: None,
        operators: vec![stages::hessian::Operator::Hessian],
        trace: None,
        density: None,
        layers: false,
        vector_dtype: Default::default(),
        keep_vectors: Default::default(),
    };
    let cks: Vec<(u64, std::path::PathBuf)> = [0u64, 10, 20]
        .iter()
        .map(|&s| (s, run.join(stages::train::checkpoint_name(s))))
        .collect();
    let refs: Vec<(u64, &std::path::Path)> = cks.iter().map(|(s, p)| (*s, p.as_path())).collect();
    let out = dir.path().join("hess");
    std::fs::create_dir_all(&out).unwrap();
    let cfg = "seed = 0\n";
    stages_torch::hessian::run(
        &hp,
        &arch,
        &tp.optimizer,
        &data_path,
        &refs,
        cfg,
        Device::Cpu,
        &out,
        &|_, _, _| {},
    )
    .unwrap();
    let vp = out.join("eigen/values.arrow");
    let wp = out.join("eigen/vectors.arrow");
    let values = stages::arrow_io::Table::open(&vp).unwrap();
    let vectors = stages::arrow_io::Table::open(&wp).unwrap();
    assert_eq!(values.len(), vectors.len());
    let (steps, ops, ev, res) = (
        values.i64("step").unwrap(),
        values.str("operator").unwrap(),
        values.f64("eigenvalue").unwrap(),
        values.f64("residual").unwrap(),
    );
    let (x, y) = analysis_set(&ds, None, Kind::Double, Device::Cpu).unwrap();
    let mut checked = 0;
    let mut preconditioned = 0;
    for i in 0..values.len() {
        if ops.value(i) == "preconditioned" {
            // Stored as a parameter-space direction w ∝ D^{-1/2}u: then
            // H w = λ D w, with D the diagonal the update divided by.
            let step = steps.value(i) as u64;
            let ck = read_checkpoint(&run.join(stages::train::checkpoint_name(step))).unwrap();
            let d = preconditioner_inv_sqrt(&tp.optimizer, &ck).unwrap();
            let mut op =
                HessianOperator::new(&arch, &ck["theta_f64"], &x, &y, Kind::Double, Device::Cpu);
            let w: Vec<f64> = vectors
                .list_f32_row("vector", i)
                .unwrap()
                .iter()
                .map(|&f| f as f64)
                .collect();
            let wt = Tensor::from_slice(&w);
            let dw = Tensor::from_slice(
                &d.iter()
                    .zip(&w)
                    .map(|(s, x)| x / (s * s))
                    .collect::<Vec<_>>(),
            );
            let lhs = op.apply_tensor(&wt);
            let rel = ((&lhs - &dw * ev.value(i)).norm().double_value(&[]))
                / (ev.value(i).abs() * dw.norm().double_value(&[]));
            assert!(rel < 1e-4, "step {step}: ‖Hw − λDw‖ / ‖λDw‖ = {rel:e}");
            preconditioned += 1;
            continue;
        }
        if ops.value(i) != "hessian" {
            continue;
        }
        let step = steps.value(i) as u64;
        let theta =
            &read_checkpoint(&run.join(stages::train::checkpoint_name(step))).unwrap()["theta_f64"];
        // An independent operator: autograd double backprop, not the stage's R-operator.
        let mut op = HessianOperator::new(&arch, theta, &x, &y, Kind::Double, Device::Cpu);
        let v: Vec<f64> = vectors
            .list_f32_row("vector", i)
            .unwrap()
            .iter()
            .map(|&f| f as f64)
            .collect();
        let vt = Tensor::from_slice(&v);
        let vt = &vt / vt.norm();
        let r = (op.apply_tensor(&vt) - &vt * ev.value(i))
            .norm()
            .double_value(&[]);
        // The stored vector is f32: its rounding bounds how far apart the two can be.
        let slack = 1e-6 * ev.value(i).abs().max(1e-3);
        assert!(
            (r - res.value(i)).abs() <= slack,
            "step {step}: recomputed {r:e}, stored {:e}",
            res.value(i)
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        3 * 6,
        "3 checkpoints × (3 largest + 3 most negative)"
    );
    assert_eq!(
        preconditioned,
        2 * 6,
        "checkpoints 10 and 20 (none before a step)"
    );
    // eigen/gradient.arrow: the analysis-set loss and gradient at each
    // checkpoint, against autograd's (a separate code path from the
    // stage's written-out backprop).
    let gp = out.join("eigen/gradient.arrow");
    let grads = stages::arrow_io::Table::open(&gp).unwrap();
    assert_eq!(grads.len(), 3);
    let (gsteps, gloss, gnorm) = (
        grads.i64("step").unwrap(),
        grads.f64("loss").unwrap(),
        grads.f64("grad_norm").unwrap(),
    );
    for i in 0..grads.len() {
        let step = gsteps.value(i) as u64;
        assert_eq!(step, [0, 10, 20][i]);
        let theta =
            &read_checkpoint(&run.join(stages::train::checkpoint_name(step))).unwrap()["theta_f64"];
        let op = HessianOperator::new(&arch, theta, &x, &y, Kind::Double, Device::Cpu);
        let g_ref = op.gradient();
        let g = grads.list_f64_row("gradient", i).unwrap();
        assert_eq!(g.len(), arch.num_params());
        let diff: f64 = g
            .iter()
            .zip(&g_ref)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm_ref: f64 = g_ref.iter().map(|b| b * b).sum::<f64>().sqrt();
        assert!(
            diff <= 1e-12 * norm_ref,
            "step {step}: ‖g − g_autograd‖ = {diff:e}"
        );
        assert!((gnorm.value(i) - norm_ref).abs() <= 1e-12 * norm_ref);
        let t = Tensor::from_slice(theta.as_slice());
        // The margins are the analysis set's (`tests/margins.rs` checks the
        // summary itself).
        let m = stages_torch::train::margin_summary(&arch, &t, &x, &y);
        for (c, want) in ["margin_min", "margin_p01", "margin_median"].iter().zip(m) {
            assert_eq!(grads.f64(c).unwrap().value(i), want, "step {step}: {c}");
        }
        assert!(m[0] <= m[1] && m[1] <= m[2]);
        let loss_ref = arch.loss(&t, &x, &y).double_value(&[]);
        assert!(
            (gloss.value(i) - loss_ref).abs() <= 1e-12 * loss_ref,
            "step {step}: loss {} vs {loss_ref}",
            gloss.value(i)
        );
    }
}

/// `Hvp::product`: with `chunk_rows` (double backprop) the Hessian's product
/// is the R-operator's, and the GGN and the Fisher, which have no chunked
/// form, are refused before any product, naming the config field.
#[test]
fn chunked_products_are_the_hessians_and_refuse_the_other_operators() {
    use stages::hessian::Operator;
    use stages_torch::hessian::Hvp;
    let ds = generate(&data(5, 3, 200));
    let arch = Arch {
        widths: vec![5, 12, 3],
        activation: Activation::Tanh,
    };
    let theta = arch.init(Init::TorchDefault, 4);
    let (x, y) = analysis_set(&ds, None, Kind::Double, Device::Cpu).unwrap();
    let n = theta.len();
    let xs: Vec<Vec<f64>> = (0..3)
        .map(|s| Vec::<f64>::try_from(&rand_vec(n, 40 + s)).unwrap())
        .collect();
    let mut chunked = Hvp::new(&arch, &theta, &x, &y, Kind::Double, Device::Cpu, Some(37));
    let mut rop = Hvp::new(&arch, &theta, &x, &y, Kind::Double, Device::Cpu, None);
    let (mut a, mut b) = (vec![vec![0.0; n]; 3], vec![vec![0.0; n]; 3]);
    chunked.product(Operator::Hessian).unwrap()(&xs, &mut a);
    rop.product(Operator::Hessian).unwrap()(&xs, &mut b);
    for (u, v) in a.iter().zip(&b) {
        let diff: f64 = u
            .iter()
            .zip(v)
            .map(|(p, q)| (p - q).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = v.iter().map(|q| q * q).sum::<f64>().sqrt();
        assert!(
            diff <= 1e-12 * norm,
            "chunked vs R-operator: {diff:e} of {norm:e}"
        );
    }
    for op in [Operator::Ggn, Operator::Fisher] {
        match chunked.product(op) {
            Err(stages::StageError::Param { field, msg }) => {
                assert_eq!(field, "hessian.operators");
                assert!(
                    msg.contains(op.name()) && msg.contains("chunk_rows"),
                    "{msg}"
                );
            }
            Err(e) => panic!("{}: wrong error {e}", op.name()),
            Ok(_) => panic!("{}: a chunked product was given", op.name()),
        }
        assert!(rop.product(op).is_ok());
    }
}
