//! Lanczos over Hessian-vector products against an independent ground truth:
//! the Hessian built densely (P products with the unit vectors), symmetrized,
//! and diagonalized by LAPACK (torch.linalg.eigh) in f64.

use stages::dataset::{generate, DatasetKind, DatasetParams};
use stages::lanczos::{lanczos, one_by_one, LanczosOptions, Which};
use stages::mlp::{Activation, Arch, Init};
use stages::optim::{OptName, OptimizerParams};
use stages_torch::hessian::{analysis_set, HessianOperator};
use stages_torch::mlp::ArchExt;
use stages_torch::optim::Optimizer;
use tch::{Device, Kind, Tensor};

struct Case {
    widths: Vec<usize>,
    activation: Activation,
    /// Gradient-descent steps before the analysis (0 = at initialization, where H is indefinite).
    train_steps: usize,
}

fn dense_hessian(op: &mut HessianOperator, p: usize) -> Tensor {
    let mut cols = Vec::with_capacity(p);
    for j in 0..p {
        let e = Tensor::zeros([p as i64], (Kind::Double, Device::Cpu));
        let _ = e.get(j as i64).fill_(1.0);
        cols.push(op.apply_tensor(&e));
    }
    let h = Tensor::stack(&cols, 1);
    (&h + h.tr()) / 2.0
}

fn check(case: &Case) {
    let data = DatasetParams {
        kind: DatasetKind::GaussianMixture,
        classes: *case.widths.last().unwrap(),
        dim: case.widths[0],
        samples: 240,
        separation: 2.0,
        test_fraction: 0.25,
        seed: 3,
        scale: Default::default(),
        std_floor: 0.0,
        shuffle_labels: false,
    };
    let ds = generate(&data);
    let arch = Arch {
        widths: case.widths.clone(),
        activation: case.activation,
    };
    let p = arch.num_params();
    assert!(p <= 2000, "P = {p}");
    let (x, y) = analysis_set(&ds, None, Kind::Double, Device::Cpu).unwrap();
    let mut theta_v = arch.init(Init::TorchDefault, 11);
    if case.train_steps > 0 {
        let theta = Tensor::from_slice(&theta_v).set_requires_grad(true);
        let mut opt = Optimizer::new(&OptimizerParams::new(OptName::Sgd, 0.5));
        for _ in 0..case.train_steps {
            let loss = arch.loss(&theta, &x, &y);
            let g = Tensor::run_backward(&[&loss], &[&theta], false, false).remove(0);
            opt.step(&theta, &g, 0.5);
        }
        theta_v = Vec::<f64>::try_from(&theta.detach()).unwrap();
    }
    let mut op = HessianOperator::new(&arch, &theta_v, &x, &y, Kind::Double, Device::Cpu);
    let h = dense_hessian(&mut op, p);
    let (evals, evecs) = h.linalg_eigh("L");
    let evals: Vec<f64> = Vec::<f64>::try_from(&evals).unwrap(); // ascending
    let k = 6;
    // Classic Lanczos on double backprop, and block Lanczos (b = 4) on the
    // R-operator's batched products.
    for block in [1usize, 4] {
        let opts = LanczosOptions {
            k,
            which: Which::BothEnds,
            tol: 1e-10,
            abs_tol: 0.0,
            max_iter: p,
            seed: 5,
            block,
            f32_basis: false,
        };
        let r = if block == 1 {
            lanczos(p, &mut one_by_one(&mut |v, o| op.apply(v, o)), &opts, None)
        } else {
            // block Lanczos on the R-operator's batched products
            let t = Tensor::from_slice(&theta_v);
            let mut rop = stages_torch::rop::RopOperator::new(&arch, &t, &x, &y);
            lanczos(p, &mut |xs, ys| rop.apply_vecs(xs, ys), &opts, None)
        };
        assert!(
            r.converged,
            "{:?} b = {block}: not converged in {} iterations",
            case.widths, r.iterations
        );
        let lam1 = evals[p - 1].abs();
        for pair in &r.pairs {
            let idx = if pair.rank >= 0 {
                p - 1 - pair.rank as usize
            } else {
                (-pair.rank - 1) as usize
            };
            let truth = evals[idx];
            let rel = (pair.value - truth).abs() / truth.abs();
            assert!(
                rel <= 1e-8,
                "{:?} {:?} rank {}: lanczos {} dense {} (rel {rel:e})",
                case.widths,
                case.activation,
                pair.rank,
                pair.value,
                truth
            );
            // The recorded residual is the true one.
            let v = Tensor::from_slice(&pair.vector);
            let res = (h.mv(&v) - &v * pair.value).norm().double_value(&[]);
            assert!(
                (res - pair.residual).abs() <= 1e-9 * lam1 + 1e-3 * res,
                "residual {res} vs recorded {}",
                pair.residual
            );
            assert!(
                pair.residual <= 1e-9 * lam1,
                "residual {} too large",
                pair.residual
            );
            // Vectors, where the gap to the neighbours allows.
            let gap = [idx.wrapping_sub(1), idx + 1]
                .iter()
                .filter(|&&j| j < p)
                .map(|&j| (evals[j] - truth).abs())
                .fold(f64::INFINITY, f64::min);
            if gap / lam1 > 1e-3 {
                let dense_v = evecs.select(1, idx as i64);
                let cos = dense_v.dot(&v).double_value(&[]).abs();
                assert!(cos >= 1.0 - 1e-6, "rank {}: |cos| = {cos}", pair.rank);
            }
        }
    }
    // The spectrum at initialization is indefinite: both ends are nonzero and of opposite sign.
    if case.train_steps == 0 {
        assert!(evals[0] < 0.0 && evals[p - 1] > 0.0);
    }
}

#[test]
fn lanczos_matches_dense_eigh_tanh_at_init() {
    check(&Case {
        widths: vec![6, 30, 20, 3],
        activation: Activation::Tanh,
        train_steps: 0,
    });
}

#[test]
fn lanczos_matches_dense_eigh_tanh_trained_p1794() {
    check(&Case {
        widths: vec![10, 40, 30, 4],
        activation: Activation::Tanh,
        train_steps: 30,
    });
}

#[test]
fn lanczos_matches_dense_eigh_softplus_and_gelu() {
    check(&Case {
        widths: vec![5, 16, 16, 3],
        activation: Activation::Softplus,
        train_steps: 10,
    });
    check(&Case {
        widths: vec![5, 24, 3],
        activation: Activation::Gelu,
        train_steps: 0,
    });
}
