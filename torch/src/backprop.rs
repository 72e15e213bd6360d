//! The training hot path: mean cross-entropy and its gradient over one flat
//! θ, by backpropagation written out layer by layer into buffers that live
//! as long as the training run.
//!
//! What makes it faster than an eager PyTorch step (`eigentrace bench train`):
//! - no autograd graph and no allocation per step: every intermediate has a
//!   preallocated buffer and every op is an `_out` or in-place op, so glibc
//!   never maps and unmaps the large activations (that alone made the first
//!   few hundred steps twice as slow);
//! - the bias is fused into the GEMM (`addmm`), σ′ is applied by ATen's fused
//!   `*_backward` kernels, and dW is written straight into the gradient;
//! - in f32, tanh is computed as 2σ(2z) − 1, with 2z from a GEMM on 2θ or
//!   from z doubled in place, whichever has fewer entries: ATen's vectorized sigmoid is
//!   about 9× faster than its tanh on this machine, and the result differs
//!   from the correctly rounded tanh by at most 1.8e-7 absolute (ATen's own
//!   tanh: 5.4e-8), the size of one f32 GEMM rounding. f64 uses tanh itself.

use stages::mlp::{Activation, Arch, ParamBlock};
use tch::{Device, Kind, Tensor};

/// Buffers for one batch size; [`Backprop::loss_and_grad`] reallocates them
/// only when the number of rows changes.
pub struct Backprop {
    arch: Arch,
    /// θ's blocks, computed once (the step is the hot path).
    blocks: Vec<ParamBlock>,
    kind: Kind,
    device: Device,
    rows: i64,
    /// Pre-activations z_l = h_l W_lᵀ + b_l, [N, width_{l+1}]; the logits
    /// transposed, [C, N].
    z: Vec<Tensor>,
    /// Activations h_{l+1} = σ(z_l) of the hidden layers.
    h: Vec<Tensor>,
    /// dL/dz_l.
    dz: Vec<Tensor>,
    /// dL/dh_l of the hidden layers.
    dh: Vec<Tensor>,
    /// 2θ (f32 tanh only): the hidden layers' GEMMs then yield 2z exactly.
    theta2: Tensor,
    /// f32 tanh: double the hidden pre-activations in place after their
    /// GEMMs instead of doubling θ before them, where z has fewer entries
    /// than θ (minibatches of a wide network). Both give 2z to the bit:
    /// scaling by 2 commutes with every rounding of the GEMM and the bias
    /// add. Chosen per batch size in `ensure_rows`; `Some` forces it (tests).
    double_z: bool,
    pub(crate) force_double_z: Option<bool>,
    /// 2 and 1 as 0-dim tensors (ops with a Scalar cost ~2 µs more in tch).
    two_0d: Tensor,
    one_0d: Tensor,
    /// log softmax of the logits, [C, N].
    logp: Tensor,
    /// log p_c per row, [1, N].
    picked: Tensor,
    /// −Σ_{j≠c} p_j per row, [1, N].
    off: Tensor,
    /// log1p(−Σ_{j≠c} p_j) per row, then the row's log p_c, [1, N].
    logp_c: Tensor,
    /// Whether p_c ≥ 1/2, per row, [1, N].
    near_one: Tensor,
    /// Zeros [1, N] (scattered onto the target entries).
    zeros: Tensor,
    /// −1 [1, C]: −1ᵀ dz sums each column's off-target entries, negated.
    minus_ones: Tensor,
    /// −1/2 and 1/N as 0-dim tensors.
    minus_half: Tensor,
    inv_rows: Tensor,
}

fn buf(shape: &[i64], kind: Kind, device: Device) -> Tensor {
    Tensor::zeros(shape, (kind, device))
}

impl Backprop {
    pub fn new(arch: &Arch, kind: Kind, device: Device) -> Backprop {
        Backprop {
            arch: arch.clone(),
            blocks: arch.param_map(),
            kind,
            device,
            rows: -1,
            z: Vec::new(),
            h: Vec::new(),
            dz: Vec::new(),
            dh: Vec::new(),
            theta2: buf(&[0], kind, device),
            double_z: false,
            force_double_z: None,
            two_0d: Tensor::full([], 2.0, (kind, device)),
            one_0d: Tensor::full([], 1.0, (kind, device)),
            logp: buf(&[0], kind, device),
            picked: buf(&[0], kind, device),
            off: buf(&[0], kind, device),
            logp_c: buf(&[0], kind, device),
            near_one: buf(&[0], Kind::Bool, device),
            zeros: buf(&[0], kind, device),
            minus_ones: buf(&[0], kind, device),
            minus_half: Tensor::full([], -0.5, (kind, device)),
            inv_rows: buf(&[], kind, device),
        }
    }

    fn ensure_rows(&mut self, n: i64) {
        if n == self.rows {
            return;
        }
        let (k, d) = (self.kind, self.device);
        let w = &self.arch.widths;
        let layers = self.arch.layers();
        // [N, width] for the hidden layers, [C, N] for the logits.
        let shape = |l: usize| {
            if l + 1 == layers {
                [w[l + 1] as i64, n]
            } else {
                [n, w[l + 1] as i64]
            }
        };
        self.z = (0..layers).map(|l| buf(&shape(l), k, d)).collect();
        self.dz = (0..layers).map(|l| buf(&shape(l), k, d)).collect();
        self.h = (0..layers.saturating_sub(1))
            .map(|l| buf(&[n, w[l + 1] as i64], k, d))
            .collect();
        self.dh = (0..layers.saturating_sub(1))
            .map(|l| buf(&[n, w[l + 1] as i64], k, d))
            .collect();
        let classes = *w.last().expect("widths") as i64;
        self.logp = buf(&[classes, n], k, d);
        self.picked = buf(&[1, n], k, d);
        self.off = buf(&[1, n], k, d);
        self.logp_c = buf(&[1, n], k, d);
        self.near_one = buf(&[1, n], Kind::Bool, d);
        self.zeros = buf(&[1, n], k, d);
        self.minus_ones = Tensor::full([1, classes], -1.0, (k, d));
        self.inv_rows = Tensor::full([], 1.0 / n as f64, (k, d));
        let z_entries: usize = w[1..w.len() - 1].iter().sum::<usize>() * n as usize;
        self.double_z = self
            .force_double_z
            .unwrap_or(z_entries < self.arch.num_params());
        self.rows = n;
    }

    /// Whether tanh is computed as 2σ(2z) − 1 (see the module doc).
    fn fast_tanh(&self) -> bool {
        self.arch.activation == Activation::Tanh && self.kind == Kind::Float
    }

    /// σ(z) into `h`. With [`Self::fast_tanh`], `z` holds 2z (the GEMM ran on
    /// 2θ, exact in binary floating point) and h = 2σ(2z) − 1: one sigmoid from z into h,
    /// then h·2 − 1 in place.
    fn activate(&self, l: usize) {
        let (z, h) = (&self.z[l], &self.h[l]);
        let _ = match self.arch.activation {
            Activation::Tanh if self.fast_tanh() => {
                let mut h = h.shallow_clone();
                let _ = z.sigmoid_out(&h);
                let _ = h.g_mul_(&self.two_0d);
                h.g_sub_(&self.one_0d)
            }
            Activation::Tanh => z.tanh_out(h),
            Activation::Relu => z.relu_out(h),
            Activation::Gelu => z.gelu_out(h, "none"),
            Activation::Softplus => z.softplus_out(h),
        };
    }

    /// dL/dz = dL/dh ⊙ σ′(z), by ATen's fused backward kernels.
    fn activation_backward(act: Activation, dz: &Tensor, dh: &Tensor, z: &Tensor, h: &Tensor) {
        let _ = match act {
            Activation::Tanh => Tensor::tanh_backward_grad_input(dz, dh, h),
            Activation::Relu => z.threshold_backward_grad_input(dz, dh, 0.0),
            Activation::Gelu => z.gelu_backward_grad_input(dz, dh, "none"),
            // torch's defaults: beta 1, threshold 20 (as `softplus` forward).
            Activation::Softplus => z.softplus_backward_grad_input(dz, dh, 1.0, 20.0),
        };
    }

    /// Mean cross-entropy over rows `x` [N, in] with labels `y` [N], and its
    /// gradient written into `grad` (a [P] tensor like θ).
    pub fn loss_and_grad(&mut self, theta: &Tensor, x: &Tensor, y: &Tensor, grad: &Tensor) -> f64 {
        let n = x.size()[0];
        self.ensure_rows(n);
        tch::no_grad(|| self.pass(theta, x, y, grad))
    }

    fn pass(&mut self, theta: &Tensor, x: &Tensor, y: &Tensor, grad: &Tensor) -> f64 {
        let blocks = &self.blocks;
        let layers = self.arch.layers();
        let act = self.arch.activation;
        let block = |t: &Tensor, i: usize| {
            let b = &blocks[i];
            let v = t.narrow(0, b.offset as i64, b.numel as i64);
            if b.is_weight {
                v.view([b.shape[0] as i64, b.shape[1] as i64])
            } else {
                v
            }
        };
        // Forward. The hidden layers are [N, width]; the logits are kept
        // transposed, [C, N], so that the softmax reduces over the outer
        // dimension, where ATen vectorizes along N (over C = 10 classes in
        // the inner dimension its log_softmax is 13× slower).
        let top = layers - 1;
        let hidden = if self.fast_tanh() && !self.double_z {
            if self.theta2.size() != theta.size() {
                self.theta2 = theta.empty_like();
            }
            let _ = theta.mul_scalar_out(&self.theta2, 2.0);
            &self.theta2
        } else {
            theta
        };
        for l in 0..top {
            let input = if l == 0 { x } else { &self.h[l - 1] };
            let _ =
                block(hidden, 2 * l + 1).addmm_out(&self.z[l], input, &block(hidden, 2 * l).tr());
            if self.fast_tanh() && self.double_z {
                let _ = self.z[l].g_mul_(&self.two_0d);
            }
            self.activate(l);
        }
        let input = if top == 0 { x } else { &self.h[top - 1] };
        let _ = block(theta, 2 * top + 1).unsqueeze(1).addmm_out(
            &self.z[top],
            &block(theta, 2 * top),
            &input.tr(),
        );
        // Softmax cross-entropy: dL/dz = (softmax(z) − onehot(y)) / N, without
        // cancellation when p_c rounds towards 1: the off-target p_j come
        // straight from the max-shifted logits, and the target entry is
        // −Σ_{j≠c} p_j rather than p_c − 1.
        let _ = self.z[top].log_softmax_int_out(&self.logp, 0, self.kind);
        let y_row = y.unsqueeze(0);
        let dz = &mut self.dz[top];
        let _ = self.logp.exp_out(dz);
        let _ = dz.scatter_(0, &y_row, &self.zeros);
        let _ = self.minus_ones.mm_out(&self.off, dz);
        let _ = dz.scatter_(0, &y_row, &self.off);
        let _ = dz.g_mul_(&self.inv_rows);
        // The row's loss −log p_c: log1p(−Σ_{j≠c} p_j) where p_c ≥ 1/2 (a
        // tiny loss keeps its digits), ATen's log p_c elsewhere.
        let _ = self.logp.gather_out(&self.picked, 0, &y_row, false);
        let _ = self.off.log1p_out(&self.logp_c);
        let _ = self.off.ge_tensor_out(&self.near_one, &self.minus_half);
        let _ = self
            .logp_c
            .where_self_out(&self.logp_c, &self.near_one, &self.picked);
        let loss = -self.logp_c.mean(self.kind).double_value(&[]);
        // Backward, the top layer from the transposed dL/dz: dW = dzᵀ h,
        // db = Σ_n dz, dh = dz W.
        let _ = self.dz[top].mm_out(&block(grad, 2 * top), input);
        let _ = self.dz[top].sum_intlist_out(
            &block(grad, 2 * top + 1),
            [1i64].as_slice(),
            false,
            self.kind,
        );
        if top > 0 {
            let _ = self.dz[top]
                .tr()
                .mm_out(&self.dh[top - 1], &block(theta, 2 * top));
            Self::activation_backward(
                act,
                &self.dz[top - 1],
                &self.dh[top - 1],
                &self.z[top - 1],
                &self.h[top - 1],
            );
        }
        for l in (0..top).rev() {
            let input = if l == 0 { x } else { &self.h[l - 1] };
            let _ = self.dz[l].tr().mm_out(&block(grad, 2 * l), input);
            let _ = self.dz[l].sum_intlist_out(
                &block(grad, 2 * l + 1),
                [0i64].as_slice(),
                false,
                self.kind,
            );
            if l > 0 {
                let _ = self.dz[l].mm_out(&self.dh[l - 1], &block(theta, 2 * l));
                Self::activation_backward(
                    act,
                    &self.dz[l - 1],
                    &self.dh[l - 1],
                    &self.z[l - 1],
                    &self.h[l - 1],
                );
            }
        }
        loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::ArchExt;
    use stages::mlp::Init;

    /// f32 tanh's 2z from 2θ and from z doubled after the GEMM: the same
    /// bits, loss and gradient, at shapes where either is the default.
    #[test]
    fn doubling_z_or_theta_gives_the_same_bits() {
        for (widths, rows) in [(vec![9, 33, 17, 5], 64i64), (vec![30, 64, 64, 4], 8)] {
            let a = Arch {
                widths,
                activation: Activation::Tanh,
            };
            let theta = Tensor::from_slice(&a.init(Init::TorchDefault, 5)).to_kind(Kind::Float);
            tch::manual_seed(3);
            let x = Tensor::randn([rows, a.widths[0] as i64], (Kind::Float, Device::Cpu));
            let y = Tensor::randint(
                *a.widths.last().unwrap() as i64,
                [rows],
                (Kind::Int64, Device::Cpu),
            );
            let run = |force: bool| {
                let mut bp = Backprop::new(&a, Kind::Float, Device::Cpu);
                bp.force_double_z = Some(force);
                let g = theta.zeros_like();
                let l = bp.loss_and_grad(&theta, &x, &y, &g);
                assert_eq!(bp.double_z, force);
                (l, Vec::<f32>::try_from(&g).unwrap())
            };
            let (la, ga) = run(false);
            let (lb, gb) = run(true);
            assert_eq!(la.to_bits(), lb.to_bits());
            assert!(ga.iter().zip(&gb).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(ga.iter().any(|v| *v != 0.0));
        }
    }

    /// The f32 path (2σ(2z) − 1 for tanh, the transposed logits, buffers
    /// reused across batch sizes) against autograd in f64.
    #[test]
    fn f32_gradient_equals_f64_autograd_across_batch_sizes() {
        for act in [
            Activation::Tanh,
            Activation::Relu,
            Activation::Gelu,
            Activation::Softplus,
        ] {
            let a = Arch {
                widths: vec![9, 33, 17, 5],
                activation: act,
            };
            let theta64 = Tensor::from_slice(&a.init(Init::TorchDefault, 4));
            let theta32 = theta64.to_kind(Kind::Float);
            let grad32 = theta32.zeros_like();
            let mut bp = Backprop::new(&a, Kind::Float, Device::Cpu);
            tch::manual_seed(2);
            for rows in [64i64, 13, 64] {
                let x = Tensor::randn([rows, 9], (Kind::Double, Device::Cpu));
                let y = Tensor::randint(5, [rows], (Kind::Int64, Device::Cpu));
                let t = theta64.copy().set_requires_grad(true);
                let loss = a.loss(&t, &x, &y);
                let g = Tensor::run_backward(&[&loss], &[&t], false, false).remove(0);
                let l = bp.loss_and_grad(&theta32, &x.to_kind(Kind::Float), &y, &grad32);
                let want = loss.double_value(&[]);
                assert!(
                    (l - want).abs() <= 1e-6 * want.abs(),
                    "{act:?} N={rows}: loss {l} vs {want}"
                );
                let rel = (grad32.to_kind(Kind::Double) - &g).norm().double_value(&[])
                    / g.norm().double_value(&[]);
                assert!(
                    rel < 2e-6,
                    "{act:?} N={rows}: relative gradient error {rel:e}"
                );
            }
        }
    }
}
