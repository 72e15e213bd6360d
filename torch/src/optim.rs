//! Optimizers over the flat θ, matching torch.optim step for step (same
//! operation order, same state names); their hyperparameters are
//! `stages::optim`'s.

use crate::adam_pass::{adam_pass_on, AdamStep, Pool};
use crate::sgd_pass::{sgd_pass_on, Momentum, SgdStep};
use stages::optim::{MuonMatrices, OptName, OptimizerParams};
use std::collections::BTreeMap;
use tch::Tensor;

/// An optimizer with its state, over one flat parameter tensor.
pub struct Optimizer {
    pub p: OptimizerParams,
    /// The 2-D weight blocks that Muon orthogonalizes, as (offset, rows,
    /// cols); every other entry of θ gets Muon's AdamW.
    pub matrices: Vec<(usize, usize, usize)>,
    /// State tensors by their PyTorch names (`exp_avg`, `momentum_buffer`, …).
    pub state: BTreeMap<String, Tensor>,
    pub step: i64,
    /// Scratch tensors like θ, so that the common steps allocate nothing
    /// (glibc returns and re-maps freed 100 KB blocks every step otherwise).
    scratch: Vec<Tensor>,
    /// How SGD, Adam and AdamW run on the CPU.
    pub kernel: StepKernel,
}

/// How SGD, Adam and AdamW run on the CPU (`eigentrace bench train` times
/// each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKernel {
    /// One pass over θ, the gradient and the state ([`crate::adam_pass`],
    /// [`crate::sgd_pass`]) on ATen's OpenMP team (rayon's pool where
    /// libtorch has no libgomp): the default.
    OnePass,
    /// The same pass on rayon's pool, beside ATen's team.
    OnePassRayon,
    /// ATen's elementwise passes, as on CUDA.
    Passes,
}

impl StepKernel {
    /// Where the one pass runs.
    fn pool(self) -> Pool {
        match self {
            StepKernel::OnePassRayon => Pool::Rayon,
            _ => Pool::best(),
        }
    }
}

/// Whether Adam's step can run as one pass over host memory
/// ([`crate::adam_pass`]): θ and `other` (the gradient, a moment) distinct,
/// contiguous on the CPU, f32 or f64, of one shape and dtype. Elsewhere
/// (CUDA) it runs as ATen's passes.
fn fusable(theta: &Tensor, other: &Tensor) -> bool {
    theta.device() == tch::Device::Cpu
        && other.device() == tch::Device::Cpu
        && matches!(theta.kind(), tch::Kind::Float | tch::Kind::Double)
        && other.kind() == theta.kind()
        && theta.is_contiguous()
        && other.is_contiguous()
        && theta.size() == other.size()
        && theta.data_ptr() != other.data_ptr()
}

/// A contiguous tensor's storage as a slice.
///
/// # Safety
/// `t` must be a contiguous CPU tensor of element type `T`, and nothing
/// else may access its storage while the slice lives.
#[allow(clippy::mut_from_ref)]
unsafe fn slice_of<T>(t: &Tensor) -> &mut [T] {
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, n)
}

/// # Safety
/// As [`slice_of`], for every tensor, all distinct.
unsafe fn fused_adam<T: crate::adam_pass::Real + Send + Sync>(
    theta: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    vmax: Option<&Tensor>,
    c: &AdamStep,
    kernel: StepKernel,
) {
    let mut none: [T; 0] = [];
    let vmax: &mut [T] = match vmax {
        Some(t) => slice_of(t),
        None => &mut none,
    };
    let (th, g, m, v) = (
        slice_of(theta),
        slice_of::<T>(grad),
        slice_of(m),
        slice_of(v),
    );
    adam_pass_on(kernel.pool(), th, g, m, v, vmax, c)
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
            scratch: Vec::new(),
            kernel: StepKernel::OnePass,
        }
    }

    /// An optimizer that knows θ's weight matrices (offset, rows, cols), in
    /// layer order; Muon needs them. With `matrices = "hidden"` (Muon's
    /// default) it keeps the hidden-to-hidden ones: the first and last
    /// layers' weights get AdamW.
    pub fn with_matrices(
        params: &OptimizerParams,
        mut matrices: Vec<(usize, usize, usize)>,
    ) -> Optimizer {
        let mut o = Optimizer::new(params);
        if o.p.matrices == Some(MuonMatrices::Hidden) {
            let n = matrices.len();
            matrices = if n > 2 {
                matrices[1..n - 1].to_vec()
            } else {
                Vec::new()
            };
        }
        o.matrices = matrices;
        o
    }

    fn state_or_zeros(&mut self, name: &str, like: &Tensor) -> Tensor {
        self.state
            .entry(name.to_string())
            .or_insert_with(|| like.zeros_like())
            .shallow_clone()
    }

    /// Two scratch tensors like θ.
    fn scratch(&mut self, like: &Tensor) -> (Tensor, Tensor) {
        if self.scratch.len() < 2 || self.scratch[0].size() != like.size() {
            self.scratch = vec![like.empty_like(), like.empty_like()];
        }
        (
            self.scratch[0].shallow_clone(),
            self.scratch[1].shallow_clone(),
        )
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
            OptName::Sgd
                if self.kernel != StepKernel::Passes
                    && fusable(theta, grad)
                    && self
                        .state
                        .get("momentum_buffer")
                        .is_none_or(|b| fusable(theta, b)) =>
            {
                let mu = get(p.momentum);
                let first = !self.state.contains_key("momentum_buffer");
                let buf = (mu != 0.0).then(|| self.state_or_zeros("momentum_buffer", theta));
                let c = SgdStep {
                    wd,
                    lr,
                    momentum: (mu != 0.0).then(|| Momentum {
                        mu,
                        one_minus_dampening: 1.0 - get(p.dampening),
                        nesterov: p.nesterov == Some(true),
                        first,
                    }),
                };
                // SAFETY: θ, the gradient and the buffer are distinct,
                // contiguous CPU tensors of θ's dtype and length (`fusable`,
                // `state_or_zeros`), none read or written elsewhere during
                // the pass.
                unsafe {
                    let pool = self.kernel.pool();
                    match theta.kind() {
                        tch::Kind::Float => {
                            let b: &mut [f32] = buf.as_ref().map_or(&mut [], |b| slice_of(b));
                            sgd_pass_on(pool, slice_of(theta), slice_of(grad), b, &c)
                        }
                        _ => {
                            let b: &mut [f64] = buf.as_ref().map_or(&mut [], |b| slice_of(b));
                            sgd_pass_on(pool, slice_of(theta), slice_of(grad), b, &c)
                        }
                    }
                }
            }
            OptName::Sgd => {
                let (mut s1, mut s2) = self.scratch(theta);
                // d_p = grad + wd·θ
                let d_p = if wd != 0.0 {
                    let _ = theta.mul_scalar_out(&s1, wd);
                    let _ = s1.g_add_(grad);
                    s1.shallow_clone()
                } else {
                    grad.shallow_clone()
                };
                let momentum = get(p.momentum);
                let d_p = if momentum != 0.0 {
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
                            let _ = d_p.mul_scalar_out(&s2, 1.0 - get(p.dampening));
                            let _ = b.g_add_(&s2);
                            b
                        }
                    };
                    if p.nesterov == Some(true) {
                        // d_p + momentum·buf
                        let _ = buf.mul_scalar_out(&s2, momentum);
                        let _ = s2.g_add_(&d_p);
                        s2.shallow_clone()
                    } else {
                        buf
                    }
                } else {
                    d_p
                };
                let _ = d_p.mul_scalar_out(&s1, lr);
                let mut th = theta.shallow_clone();
                let _ = th.g_sub_(&s1);
            }
            OptName::Adam | OptName::Adamw
                if self.kernel != StepKernel::Passes
                    && fusable(theta, grad)
                    && ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
                        .iter()
                        .filter_map(|k| self.state.get(*k))
                        .all(|s| fusable(theta, s)) =>
            {
                let (b1, b2, eps) = (get(p.beta1), get(p.beta2), get(p.eps));
                let amsgrad = p.amsgrad == Some(true);
                let adamw = p.name == OptName::Adamw;
                let c = AdamStep {
                    one_minus_b1: 1.0 - b1,
                    b2,
                    one_minus_b2: 1.0 - b2,
                    wd: if adamw { 0.0 } else { wd },
                    decay: if adamw { 1.0 - lr * wd } else { 1.0 },
                    bc2_sqrt: (1.0 - b2.powf(t)).sqrt(),
                    eps,
                    neg_step_size: -(lr / (1.0 - b1.powf(t))),
                    amsgrad,
                };
                let m = self.state_or_zeros("exp_avg", theta);
                let v = self.state_or_zeros("exp_avg_sq", theta);
                let vmax = amsgrad.then(|| self.state_or_zeros("max_exp_avg_sq", theta));
                // SAFETY: θ, the gradient and the state are distinct,
                // contiguous CPU tensors of θ's dtype and length (`fusable`,
                // `state_or_zeros`), none read or written elsewhere during
                // the pass.
                unsafe {
                    match theta.kind() {
                        tch::Kind::Float => {
                            fused_adam::<f32>(theta, grad, &m, &v, vmax.as_ref(), &c, self.kernel)
                        }
                        _ => fused_adam::<f64>(theta, grad, &m, &v, vmax.as_ref(), &c, self.kernel),
                    }
                }
            }
            OptName::Adam | OptName::Adamw => {
                let (b1, b2, eps) = (get(p.beta1), get(p.beta2), get(p.eps));
                let (mut s1, s2) = self.scratch(theta);
                let mut th = theta.shallow_clone();
                let g = if p.name == OptName::Adamw {
                    let _ = th.g_mul_scalar_(1.0 - lr * wd);
                    grad.shallow_clone()
                } else if wd != 0.0 {
                    // grad + wd·θ
                    let _ = theta.mul_scalar_out(&s1, wd);
                    let _ = s1.g_add_(grad);
                    s1.shallow_clone()
                } else {
                    grad.shallow_clone()
                };
                let mut m = self.state_or_zeros("exp_avg", theta);
                let mut v = self.state_or_zeros("exp_avg_sq", theta);
                let _ = m.lerp_(&g, 1.0 - b1);
                let _ = v.g_mul_scalar_(b2);
                // addcmul_(g, g, value = 1 − β2): (value·g)·g, as ATen's kernel.
                let _ = g.mul_scalar_out(&s2, 1.0 - b2);
                let _ = v.addcmul_(&g, &s2);
                let bc1 = 1.0 - b1.powf(t);
                let bc2_sqrt = (1.0 - b2.powf(t)).sqrt();
                let step_size = lr / bc1;
                // denom = sqrt(v̂)/√bc2 + eps, into s1 (g is no longer needed).
                if p.amsgrad == Some(true) {
                    let mut vmax = self.state_or_zeros("max_exp_avg_sq", theta);
                    let _ = vmax.maximum_out(&s2, &v);
                    vmax.copy_(&s2);
                    let _ = vmax.sqrt_out(&s1);
                } else {
                    let _ = v.sqrt_out(&s1);
                }
                let _ = s1.g_div_scalar_(bc2_sqrt);
                let _ = s1.g_add_scalar_(eps);
                // addcdiv_(m, denom, value = −step_size): (value·m)/denom.
                let _ = m.mul_scalar_out(&s2, -step_size);
                let _ = th.addcdiv_(&s2, &s1);
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

    /// Muon: per orthogonalized matrix, momentum → Newton–Schulz → scaled
    /// step, with decoupled weight decay; per other entry, AdamW with
    /// `aux_lr` and no weight decay. As torch.optim.Muon and the reference,
    /// except that Newton–Schulz runs in θ's dtype, not bf16, so that f64
    /// runs are exact.
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Adam and AdamW as one pass against the same steps as ATen's passes,
    /// in f32 and f64, below and above the parallel split, with weight
    /// decay, AMSGrad and β₁ on both sides of lerp's branch. The one pass
    /// rounds lerp's product where ATen's vectorized kernel fuses it: θ
    /// agrees to a few roundings, relative to its step.
    #[test]
    fn one_pass_adam_equals_atens_passes() {
        for kind in [Kind::Float, Kind::Double] {
            for n in [1000i64, 3 * (1 << 15) + 17] {
                for (name, wd, amsgrad, b1) in [
                    (OptName::Adam, 0.0, false, 0.9),
                    (OptName::Adam, 1e-2, true, 0.3),
                    (OptName::Adamw, 0.1, false, 0.9),
                    (OptName::Adamw, 0.1, true, 0.6),
                ] {
                    let mut p = OptimizerParams::new(name, 1e-2);
                    p.weight_decay = Some(wd);
                    p.amsgrad = Some(amsgrad);
                    p.beta1 = Some(b1);
                    tch::manual_seed(9);
                    let theta0 = Tensor::randn([n], (kind, Device::Cpu));
                    let (a, b) = (theta0.copy(), theta0.copy());
                    let mut oa = Optimizer::new(&p);
                    let mut ob = Optimizer::new(&p);
                    ob.kernel = StepKernel::Passes;
                    for _ in 0..10 {
                        let g = Tensor::randn([n], (kind, Device::Cpu)) * 0.1 + &a * 0.01;
                        oa.step(&a, &g, 1e-2);
                        ob.step(&b, &g, 1e-2);
                    }
                    let moved = (&b - &theta0).abs().max().double_value(&[]);
                    let diff = (&a - &b).abs().max().double_value(&[]);
                    let u = if kind == Kind::Float { 6e-8 } else { 1.2e-16 };
                    assert!(moved > 1e-3, "{name:?}: θ did not move");
                    assert!(
                        diff <= 64.0 * u * moved,
                        "{kind:?} n={n} {name:?} wd={wd} amsgrad={amsgrad} β₁={b1}: |Δθ| {diff:e} against a move of {moved:e}"
                    );
                    // The moments are the same state, under the same names.
                    for k in ["exp_avg", "exp_avg_sq"] {
                        let (sa, sb) = (&oa.state[k], &ob.state[k]);
                        let d = (sa - sb).abs().max().double_value(&[]);
                        let s = sb.abs().max().double_value(&[]);
                        assert!(d <= 64.0 * u * s, "{k}: {d:e} of {s:e}");
                    }
                    assert_eq!(oa.state.contains_key("max_exp_avg_sq"), amsgrad);
                }
            }
        }
    }

    /// SGD's one pass gives ATen's passes' bits: plain, weight decay,
    /// momentum with and without dampening, Nesterov; the buffer's first
    /// step and later ones; f32 and f64, below and above the parallel split,
    /// on the OpenMP team and on rayon.
    #[test]
    fn one_pass_sgd_gives_atens_bits() {
        let bits = |t: &Tensor| Vec::<f64>::try_from(&t.to_kind(Kind::Double)).unwrap();
        for kind in [Kind::Float, Kind::Double] {
            for n in [1000i64, 3 * (1 << 15) + 17] {
                for (wd, mu, damp, nesterov) in [
                    (0.0, 0.0, 0.0, false),
                    (1e-2, 0.0, 0.0, false),
                    (0.0, 0.9, 0.0, false),
                    (1e-2, 0.9, 0.1, false),
                    (1e-3, 0.95, 0.0, true),
                ] {
                    let mut p = OptimizerParams::new(OptName::Sgd, 0.1);
                    p.weight_decay = Some(wd);
                    p.momentum = Some(mu);
                    p.dampening = Some(damp);
                    p.nesterov = Some(nesterov);
                    tch::manual_seed(4);
                    let theta0 = Tensor::randn([n], (kind, Device::Cpu));
                    let kernels = [StepKernel::OnePass, StepKernel::OnePassRayon];
                    let thetas = kernels.map(|_| theta0.copy());
                    let mut opts = kernels.map(|k| {
                        let mut o = Optimizer::new(&p);
                        o.kernel = k;
                        o
                    });
                    let atens = theta0.copy();
                    let mut aten = Optimizer::new(&p);
                    aten.kernel = StepKernel::Passes;
                    for step in 0..4 {
                        let g = Tensor::randn([n], (kind, Device::Cpu)) * 0.1 + &atens * 0.01;
                        let lr = 0.1 / (1.0 + step as f64);
                        aten.step(&atens, &g, lr);
                        for (o, t) in opts.iter_mut().zip(&thetas) {
                            o.step(t, &g, lr);
                        }
                    }
                    let what = format!(
                        "{kind:?} n={n} wd={wd} μ={mu} dampening={damp} nesterov={nesterov}"
                    );
                    assert!(bits(&atens) != bits(&theta0), "{what}: θ did not move");
                    for (o, t) in opts.iter().zip(&thetas) {
                        assert!(bits(t) == bits(&atens), "{what} {:?}: θ differs", o.kernel);
                        assert_eq!(o.state.contains_key("momentum_buffer"), mu != 0.0);
                        if let Some(b) = o.state.get("momentum_buffer") {
                            let want = &aten.state["momentum_buffer"];
                            assert!(bits(b) == bits(want), "{what}: the buffer differs");
                        }
                    }
                }
            }
        }
    }

    /// The parallel split does not change a bit: the pass over chunks on
    /// ATen's OpenMP team and on rayon's pool, each against one pass over
    /// the whole on the calling thread.
    #[test]
    fn the_parallel_split_gives_the_same_bits() {
        use crate::adam_pass::{adam_pass_on, AdamStep, Pool};
        let n = 5 * (1 << 15) + 3;
        let f = |i: usize, s: f64| ((i as f64 * s).sin() * 0.3) as f32;
        let c = AdamStep {
            one_minus_b1: 0.1,
            b2: 0.999,
            one_minus_b2: 1e-3,
            wd: 1e-2,
            decay: 1.0,
            bc2_sqrt: 0.03,
            eps: 1e-8,
            neg_step_size: -0.01,
            amsgrad: true,
        };
        let init = || {
            (
                (0..n).map(|i| f(i, 0.7)).collect::<Vec<f32>>(),
                (0..n).map(|i| f(i, 1.3)).collect::<Vec<f32>>(),
                (0..n).map(|i| f(i, 2.1) * 0.1).collect::<Vec<f32>>(),
                (0..n).map(|i| f(i, 2.9).abs() * 0.01).collect::<Vec<f32>>(),
                (0..n).map(|i| f(i, 3.7).abs() * 0.01).collect::<Vec<f32>>(),
            )
        };
        let g = init().1;
        let run = |pool: Pool, threads: usize| {
            let (mut t, _, mut m, mut v, mut x) = init();
            let mut go = || adam_pass_on(pool, &mut t, &g, &mut m, &mut v, &mut x, &c);
            match pool {
                Pool::OpenMp => {
                    tch::set_num_threads(threads as i32);
                    go()
                }
                Pool::Rayon => rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(go),
            }
            (t, m, v, x)
        };
        let (t2, m2, v2, x2) = run(Pool::OpenMp, 1);
        for pool in [Pool::OpenMp, Pool::Rayon] {
            let (t1, m1, v1, x1) = run(pool, 3);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&t1), bits(&t2));
            assert_eq!(bits(&m1), bits(&m2));
            assert_eq!(bits(&v1), bits(&v2));
            assert_eq!(bits(&x1), bits(&x2));
            assert!(t1.iter().zip(init().0).any(|(a, b)| *a != b), "θ moved");
        }
    }
}
