//! The generalized Gauss–Newton matrix and the empirical Fisher against
//! dense f64 matrices built independently, with autograd only:
//!
//! - G = (1/N) Σ_i J_iᵀ (diag(p_i) − p_i p_iᵀ) J_i, with J_i = ∂z_i/∂θ one
//!   backward pass per logit;
//! - F = (1/N) Σ_i g_i g_iᵀ, with g_i = ∇ℓ_i one backward pass per row;
//! - the residual R = ∇²_θ [(1/N) Σ_i Σ_c r_ic z_ic(θ)] with r = ∂ℓ/∂z held
//!   fixed, by double backprop, which must be H − G;
//!
//! then the matrix-free products (`RopOperator::apply_operator`) against
//! them, and Lanczos on those products against LAPACK's eigh.

use stages::dataset::{generate, DatasetKind, DatasetParams};
use stages::hessian::Operator;
use stages::lanczos::{lanczos, LanczosOptions, Which};
use stages::mlp::{Activation, Arch, Init};
use stages::optim::{OptName, OptimizerParams};
use stages_torch::hessian::{analysis_set, HessianOperator};
use stages_torch::mlp::ArchExt;
use stages_torch::optim::Optimizer;
use stages_torch::rop::RopOperator;
use tch::{Device, Kind, Tensor};

struct Setup {
    arch: Arch,
    theta: Vec<f64>,
    x: Tensor,
    y: Tensor,
}

fn setup(widths: &[usize], activation: Activation, train_steps: usize, rows: usize) -> Setup {
    let data = DatasetParams {
        kind: DatasetKind::GaussianMixture,
        classes: *widths.last().unwrap(),
        dim: widths[0],
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
        widths: widths.to_vec(),
        activation,
    };
    let (x, y) = analysis_set(&ds, Some(rows), Kind::Double, Device::Cpu).unwrap();
    let mut theta = arch.init(Init::TorchDefault, 11);
    if train_steps > 0 {
        let t = Tensor::from_slice(&theta).set_requires_grad(true);
        let mut opt = Optimizer::new(&OptimizerParams::new(OptName::Sgd, 0.5));
        for _ in 0..train_steps {
            let loss = arch.loss(&t, &x, &y);
            let g = Tensor::run_backward(&[&loss], &[&t], false, false).remove(0);
            opt.step(&t, &g, 0.5);
        }
        theta = Vec::<f64>::try_from(&t.detach()).unwrap();
    }
    Setup { arch, theta, x, y }
}

/// The operator's matrix from its block products with the identity.
fn operator_matrix(s: &Setup, op: Operator) -> Tensor {
    let p = s.theta.len() as i64;
    let mut rop = RopOperator::new(&s.arch, &Tensor::from_slice(&s.theta), &s.x, &s.y);
    let eye = Tensor::eye(p, (Kind::Double, Device::Cpu));
    let blocks: Vec<Tensor> = eye
        .split(64, 0)
        .iter()
        .map(|b| rop.apply_operator(op, b))
        .collect();
    Tensor::cat(&blocks, 0)
}

/// The Hessian by double backprop, column by column.
fn dense_hessian(s: &Setup) -> Tensor {
    let p = s.theta.len();
    let mut op = HessianOperator::new(&s.arch, &s.theta, &s.x, &s.y, Kind::Double, Device::Cpu);
    let cols: Vec<Tensor> = (0..p)
        .map(|j| {
            let e = Tensor::zeros([p as i64], (Kind::Double, Device::Cpu));
            let _ = e.get(j as i64).fill_(1.0);
            op.apply_tensor(&e)
        })
        .collect();
    Tensor::stack(&cols, 1)
}

/// (G, F, R) built from autograd's per-logit and per-row gradients.
fn dense_ggn_fisher_residual(s: &Setup) -> (Tensor, Tensor, Tensor) {
    let p = s.theta.len() as i64;
    let theta = Tensor::from_slice(&s.theta).set_requires_grad(true);
    let z = s.arch.forward(&theta, &s.x); // [N, C]
    let (n, c) = (z.size()[0], z.size()[1]);
    let probs = z.detach().softmax(-1, Kind::Double);
    let onehot = s.y.one_hot(c).to_kind(Kind::Double);
    let mut ggn = Tensor::zeros([p, p], (Kind::Double, Device::Cpu));
    let mut fisher = Tensor::zeros([p, p], (Kind::Double, Device::Cpu));
    for i in 0..n {
        let rows: Vec<Tensor> = (0..c)
            .map(|k| Tensor::run_backward(&[&z.get(i).get(k)], &[&theta], true, false).remove(0))
            .collect();
        let j = Tensor::stack(&rows, 0); // [C, P]
        let pi = probs.get(i);
        let hz = pi.diag(0) - pi.outer(&pi);
        ggn += j.tr().mm(&hz).mm(&j);
        // ∇ℓ_i = J_iᵀ (p_i − e_{y_i})
        let g = j.tr().mv(&(&pi - onehot.get(i)));
        fisher += g.outer(&g);
    }
    let ggn = ggn / n as f64;
    let fisher = fisher / n as f64;
    // R: the Hessian of (1/N) Σ r_ic z_ic with r = p − onehot held fixed.
    let r = (&probs - &onehot) / n as f64;
    let s_val = (&z * &r).sum(Kind::Double);
    let grad = Tensor::run_backward(&[&s_val], &[&theta], true, true).remove(0);
    let cols: Vec<Tensor> = (0..p)
        .map(|jj| {
            let e = Tensor::zeros([p], (Kind::Double, Device::Cpu));
            let _ = e.get(jj).fill_(1.0);
            let gv = (&grad * &e).sum(Kind::Double);
            Tensor::run_backward(&[&gv], &[&theta], true, false).remove(0)
        })
        .collect();
    let residual = Tensor::stack(&cols, 1);
    (ggn, fisher, residual)
}

fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[])
}

/// Lanczos on the operator's products against eigh of its dense matrix:
/// the top-k eigenvalues to 1e-8 relative, eigenvectors where the gap
/// allows, stored residuals true.
fn lanczos_matches(s: &Setup, op: Operator, dense: &Tensor, k: usize) {
    let p = s.theta.len();
    let sym = (dense + dense.tr()) / 2.0;
    let (evals, evecs) = sym.linalg_eigh("L");
    let evals = Vec::<f64>::try_from(&evals).unwrap();
    let lam1 = evals[p - 1];
    // PSD: no eigenvalue below rounding.
    assert!(evals[0] >= -1e-10 * lam1, "{op:?}: λ_min = {}", evals[0]);
    let mut rop = RopOperator::new(&s.arch, &Tensor::from_slice(&s.theta), &s.x, &s.y);
    let opts = LanczosOptions {
        k,
        which: Which::Largest,
        tol: 1e-10,
        abs_tol: 0.0,
        max_iter: p,
        seed: 5,
        block: 1,
        f32_basis: false,
    };
    let r = lanczos(
        p,
        &mut |xs, ys| rop.apply_operator_vecs(op, xs, ys),
        &opts,
        None,
    );
    assert!(
        r.converged,
        "{op:?}: not converged in {} iterations",
        r.iterations
    );
    assert_eq!(r.pairs.len(), k);
    for pair in &r.pairs {
        let idx = p - 1 - pair.rank as usize;
        let truth = evals[idx];
        let rel = (pair.value - truth).abs() / truth.abs();
        assert!(
            rel <= 1e-8,
            "{op:?} rank {}: lanczos {} dense {truth} (rel {rel:e})",
            pair.rank,
            pair.value
        );
        let v = Tensor::from_slice(&pair.vector);
        let res = (sym.mv(&v) - &v * pair.value).norm().double_value(&[]);
        assert!(
            res <= 1e-8 * lam1,
            "{op:?} rank {}: residual {res}",
            pair.rank
        );
        let gap = [idx - 1, idx + 1]
            .iter()
            .filter(|&&j| j < p)
            .map(|&j| (evals[j] - truth).abs())
            .fold(f64::INFINITY, f64::min);
        if gap / lam1 > 1e-3 {
            let cos = evecs.select(1, idx as i64).dot(&v).double_value(&[]).abs();
            assert!(
                cos >= 1.0 - 1e-6,
                "{op:?} rank {}: |cos| = {cos}",
                pair.rank
            );
        }
    }
}

fn check(widths: &[usize], activation: Activation, train_steps: usize, rows: usize) {
    let s = setup(widths, activation, train_steps, rows);
    let p = s.theta.len();
    assert!(p <= 3000, "P = {p}");
    let (ggn, fisher, residual) = dense_ggn_fisher_residual(&s);
    let h = dense_hessian(&s);
    // The products, whole matrices at once.
    let g_op = operator_matrix(&s, Operator::Ggn);
    let f_op = operator_matrix(&s, Operator::Fisher);
    let h_op = operator_matrix(&s, Operator::Hessian);
    let e = rel_diff(&g_op, &ggn);
    assert!(e <= 1e-12, "{widths:?}: GGN product vs dense: {e:e}");
    let e = rel_diff(&f_op, &fisher);
    assert!(e <= 1e-12, "{widths:?}: Fisher product vs dense: {e:e}");
    // H − G is the residual term, both from the products and from the
    // dense double-backprop Hessian.
    let e = rel_diff(&(&h_op - &g_op), &residual);
    assert!(
        e <= 1e-10,
        "{widths:?}: H − G (products) vs residual: {e:e}"
    );
    let e = (&h - &ggn - &residual).norm().double_value(&[]) / h.norm().double_value(&[]);
    assert!(e <= 1e-12, "{widths:?}: H − G − R (dense) = {e:e} of ‖H‖");
    // The residual is not negligible here, or the check above says little.
    assert!(
        residual.norm().double_value(&[]) > 1e-3 * h.norm().double_value(&[]),
        "{widths:?}: the residual term vanishes; pick a case where it does not"
    );
    lanczos_matches(&s, Operator::Ggn, &ggn, 6);
    lanczos_matches(&s, Operator::Fisher, &fisher, 6);
    // The exact diagonals (Hessian backpropagation; no products) against
    // the dense matrices' diagonals, in row chunks that do and do not
    // divide N.
    let rop = RopOperator::new(&s.arch, &Tensor::from_slice(&s.theta), &s.x, &s.y);
    for (op, dense) in [
        (Operator::Hessian, &h),
        (Operator::Ggn, &ggn),
        (Operator::Fisher, &fisher),
    ] {
        let truth = dense.diagonal(0, 0, 1);
        for chunk in [7, rows] {
            let d = rop.diagonal(op, chunk);
            let e =
                (&d - &truth).abs().max().double_value(&[]) / truth.abs().max().double_value(&[]);
            assert!(
                e <= 1e-12,
                "{widths:?}: exact diagonal of {} (chunk {chunk}) vs dense: {e:e}",
                op.name()
            );
        }
    }
    // The Hessian's diagonal is not the GGN's here, or the check above
    // would not see the second-derivative term.
    let gap = (h.diagonal(0, 0, 1) - ggn.diagonal(0, 0, 1))
        .abs()
        .max()
        .double_value(&[]);
    assert!(gap > 1e-6 * h.diagonal(0, 0, 1).abs().max().double_value(&[]));
}

#[test]
fn ggn_and_fisher_match_dense_at_init_gelu() {
    check(&[5, 24, 3], Activation::Gelu, 0, 40);
}

#[test]
fn ggn_and_fisher_match_dense_trained_tanh_p1794() {
    check(&[10, 40, 30, 4], Activation::Tanh, 30, 60);
}

#[test]
fn ggn_and_fisher_match_dense_softplus() {
    check(&[5, 16, 16, 3], Activation::Softplus, 10, 50);
}

/// Four hidden layers: the exact diagonal's residual part is formed as a
/// full matrix and carried across layers (with two, it stays a diagonal).
#[test]
fn ggn_and_fisher_match_dense_four_hidden_layers() {
    check(&[4, 10, 8, 8, 6, 3], Activation::Tanh, 20, 45);
}

/// Hutchinson and Hutch++ on the products, against the dense traces of H,
/// G and F and of each layer's diagonal blocks: over 10 seeds, each
/// estimate within 3 of its own standard errors of the truth at least 9
/// times, and Hutch++ closer than Hutchinson on average.
#[test]
fn trace_estimates_match_dense_traces_within_their_errors() {
    let s = setup(&[10, 40, 30, 4], Activation::Tanh, 30, 60);
    let (ggn, fisher, _) = dense_ggn_fisher_residual(&s);
    let h = dense_hessian(&s);
    let n = s.theta.len();
    let blocks: Vec<std::ops::Range<usize>> = s
        .arch
        .param_map()
        .chunks(2)
        .map(|wb| wb[0].offset..wb[1].offset + wb[1].numel)
        .collect();
    for (op, dense) in [
        (Operator::Hessian, &h),
        (Operator::Ggn, &ggn),
        (Operator::Fisher, &fisher),
    ] {
        let diag = Vec::<f64>::try_from(&dense.diagonal(0, 0, 1)).unwrap();
        let truth: f64 = diag.iter().sum();
        let block_truth: Vec<f64> = blocks
            .iter()
            .map(|r| diag[r.clone()].iter().sum())
            .collect();
        let mut rop = RopOperator::new(&s.arch, &Tensor::from_slice(&s.theta), &s.x, &s.y);
        let mut apply = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| rop.apply_operator_vecs(op, xs, ys);
        let (mut inside_h, mut inside_pp, mut inside_b) = (0, 0, 0);
        let (mut err_h, mut err_pp) = (0.0, 0.0);
        let seeds = 10;
        for seed in 0..seeds {
            let (hut, per) = stages::trace::hutchinson(n, &mut apply, 90, seed, &blocks, 16);
            let pp = stages::trace::hutch_pp(n, &mut apply, 90, seed, 16);
            inside_h += usize::from((hut.value - truth).abs() <= 3.0 * hut.std_error);
            inside_pp += usize::from((pp.value - truth).abs() <= 3.0 * pp.std_error);
            for (e, t) in per.iter().zip(&block_truth) {
                inside_b += usize::from((e.value - t).abs() <= 3.0 * e.std_error);
            }
            err_h += (hut.value - truth).abs();
            err_pp += (pp.value - truth).abs();
        }
        eprintln!(
            "{op:?}: tr = {truth:.6e}; mean |err| hutchinson {:.3e}, hutch++ {:.3e}",
            err_h / seeds as f64,
            err_pp / seeds as f64
        );
        assert!(inside_h >= 9, "{op:?}: Hutchinson within 3σ {inside_h}/10");
        assert!(inside_pp >= 9, "{op:?}: Hutch++ within 3σ {inside_pp}/10");
        assert!(
            inside_b >= 9 * blocks.len(),
            "{op:?}: blocks within 3σ {inside_b}/{}",
            10 * blocks.len()
        );
        assert!(
            err_pp < err_h,
            "{op:?}: Hutch++ {err_pp} vs Hutchinson {err_h}"
        );
    }
}

/// SLQ on the products of H, G and F: the spectral moments Σ τ θ^j,
/// averaged over probes, against tr(A^j)/P from the dense matrices (j = 1 …
/// 4) within 4 standard errors of the probes (the Monte Carlo error: the
/// quadrature itself is exact for these degrees); the broadened density
/// integrates to 1.
#[test]
fn slq_moments_match_dense_traces_of_powers() {
    let s = setup(&[5, 16, 16, 3], Activation::Softplus, 10, 50);
    let (ggn, fisher, _) = dense_ggn_fisher_residual(&s);
    let h = dense_hessian(&s);
    let n = s.theta.len();
    for (op, dense) in [
        (Operator::Hessian, &h),
        (Operator::Ggn, &ggn),
        (Operator::Fisher, &fisher),
    ] {
        let sym = (dense + dense.tr()) / 2.0;
        let mut rop = RopOperator::new(&s.arch, &Tensor::from_slice(&s.theta), &s.x, &s.y);
        let mut apply = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| rop.apply_operator_vecs(op, xs, ys);
        let rules = stages::density::slq(n, &mut apply, 200, 40, 7);
        let mut power = sym.shallow_clone();
        for j in 1..=4 {
            let truth = power.trace().double_value(&[]) / n as f64;
            let xs: Vec<f64> = rules.iter().map(|r| r.moment(j)).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let sd =
                (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt();
            let se = sd / (xs.len() as f64).sqrt();
            eprintln!("{op:?} j {j}: SLQ {mean:.6e} ± {se:.2e}, dense {truth:.6e}");
            assert!(
                (mean - truth).abs() <= 4.0 * se,
                "{op:?} j {j}: {mean} vs {truth} (se {se})"
            );
            power = power.mm(&sym);
        }
        let (lambda, dens) = stages::density::broaden(&rules, 4000, 0.01);
        let integral: f64 = dens.iter().sum::<f64>() * (lambda[1] - lambda[0]);
        assert!((integral - 1.0).abs() < 1e-3, "{op:?}: ∫ = {integral}");
        // The largest node is the top eigenvalue (Lanczos finds the edge).
        let top = rules
            .iter()
            .flat_map(|r| r.nodes.iter().copied())
            .fold(f64::NEG_INFINITY, f64::max);
        let lam1 = Vec::<f64>::try_from(&sym.linalg_eigvalsh("L")).unwrap()[n - 1];
        assert!(
            (top - lam1).abs() <= 1e-6 * lam1.abs(),
            "{op:?}: top node {top} vs λ₁ {lam1}"
        );
    }
}

/// `hessian.layers`: each layer's diagonal block's top-k by Lanczos on the
/// block's own products, against eigh of the dense block H_ll (1e-8), with
/// true residuals.
#[test]
fn layer_block_eigenvalues_match_dense_blocks() {
    let s = setup(&[10, 40, 30, 4], Activation::Tanh, 30, 60);
    let h = dense_hessian(&s);
    let h = (&h + h.tr()) / 2.0;
    let mut rop = RopOperator::new(&s.arch, &Tensor::from_slice(&s.theta), &s.x, &s.y);
    let mut apply = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| rop.apply_vecs(xs, ys);
    let opts = LanczosOptions {
        k: 4,
        which: Which::Largest,
        tol: 1e-10,
        abs_tol: 0.0,
        max_iter: 2000,
        seed: 3,
        block: 1,
        f32_basis: false,
    };
    let got = stages_torch::hessian::layer_block_eigs(&s.arch, &mut apply, &opts, None);
    let map = s.arch.param_map();
    assert_eq!(got.len(), 3);
    for (layer, level, r) in &got {
        let (w, b) = (&map[2 * *layer as usize], &map[2 * *layer as usize + 1]);
        let (lo, hi) = (w.offset as i64, (b.offset + b.numel) as i64);
        let block = h.narrow(0, lo, hi - lo).narrow(1, lo, hi - lo);
        let evals = Vec::<f64>::try_from(&block.linalg_eigvalsh("L")).unwrap();
        let m = evals.len();
        assert!(r.converged, "layer {layer}");
        assert!(*level > 0.0 && *level < 1e-10 * evals[m - 1].abs().max(1.0));
        for pair in &r.pairs {
            let truth = evals[m - 1 - pair.rank as usize];
            let rel = (pair.value - truth).abs() / truth.abs();
            assert!(
                rel <= 1e-8,
                "layer {layer} rank {}: {} vs {truth}",
                pair.rank,
                pair.value
            );
            let v = Tensor::from_slice(&pair.vector);
            let res = (block.mv(&v) - &v * pair.value).norm().double_value(&[]);
            assert!((res - pair.residual).abs() <= 1e-9 * truth.abs() + 1e-3 * res);
        }
        // The block's top eigenvalue never exceeds the whole Hessian's.
        let lam1 = Vec::<f64>::try_from(&h.linalg_eigvalsh("L")).unwrap()[h.size()[0] as usize - 1];
        assert!(r.pairs[0].value <= lam1 * (1.0 + 1e-10));
    }
}
