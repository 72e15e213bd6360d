//! The MLP's tensor side: forward pass, loss, and backprop written out layer
//! by layer, over one flat θ (the layout is `stages::mlp`'s).

use stages::mlp::{Activation, Arch};
use tch::{Kind, Tensor};

/// Activations on tensors.
pub trait ActivationExt {
    /// σ'(z), given z and h = σ(z).
    fn derivative(self, z: &Tensor, h: &Tensor) -> Tensor;
    fn apply(self, x: &Tensor) -> Tensor;
}

impl ActivationExt for Activation {
    /// σ'(z), given z and h = σ(z).
    fn derivative(self, z: &Tensor, h: &Tensor) -> Tensor {
        match self {
            Activation::Tanh => 1.0 - h * h,
            Activation::Relu => z.gt(0.0).to_kind(z.kind()),
            Activation::Softplus => z.sigmoid(),
            Activation::Gelu => {
                // d/dz [z Φ(z)] = Φ(z) + z φ(z)
                let phi = (z * z * -0.5).exp() * (1.0 / (2.0 * std::f64::consts::PI).sqrt());
                let cdf = (z * std::f64::consts::FRAC_1_SQRT_2).erf() * 0.5 + 0.5;
                cdf + z * phi
            }
        }
    }

    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu("none"),
            Activation::Softplus => x.softplus(),
        }
    }
}

/// The MLP on tensors.
pub trait ArchExt {
    /// Logits for rows `x` [N, in] under parameters `theta` [P].
    fn forward(&self, theta: &Tensor, x: &Tensor) -> Tensor;
    /// Mean cross-entropy over rows `x` with labels `y`.
    fn loss(&self, theta: &Tensor, x: &Tensor, y: &Tensor) -> Tensor;
    /// Mean cross-entropy and its gradient (written into `grad`), by backprop
    /// written out layer by layer: no autograd graph.
    fn loss_and_grad(&self, theta: &Tensor, x: &Tensor, y: &Tensor, grad: &mut Tensor) -> f64;
    /// (mean loss, accuracy) without building a graph.
    fn evaluate(&self, theta: &Tensor, x: &Tensor, y: &Tensor) -> (f64, f64);
}

impl ArchExt for Arch {
    /// Logits for rows `x` [N, in] under parameters `theta` [P].
    fn forward(&self, theta: &Tensor, x: &Tensor) -> Tensor {
        let blocks = self.param_map();
        let mut h = x.shallow_clone();
        for l in 0..self.layers() {
            let w = &blocks[2 * l];
            let b = &blocks[2 * l + 1];
            let wt = theta
                .narrow(0, w.offset as i64, w.numel as i64)
                .view([w.shape[0] as i64, w.shape[1] as i64]);
            let bt = theta.narrow(0, b.offset as i64, b.numel as i64);
            h = h.linear(&wt, Some(&bt));
            if l + 1 < self.layers() {
                h = self.activation.apply(&h);
            }
        }
        h
    }

    /// Mean cross-entropy over rows `x` with labels `y`.
    fn loss(&self, theta: &Tensor, x: &Tensor, y: &Tensor) -> Tensor {
        cross_entropy(&self.forward(theta, x), y)
    }

    /// Mean cross-entropy and its gradient, by backpropagation written out
    /// layer by layer (no autograd graph); see [`crate::backprop`], which the
    /// training loop keeps alive across steps. Checked against autograd in
    /// the tests.
    fn loss_and_grad(&self, theta: &Tensor, x: &Tensor, y: &Tensor, grad: &mut Tensor) -> f64 {
        crate::backprop::Backprop::new(self, theta.kind(), theta.device())
            .loss_and_grad(theta, x, y, grad)
    }

    /// (mean loss, accuracy) without building a graph.
    fn evaluate(&self, theta: &Tensor, x: &Tensor, y: &Tensor) -> (f64, f64) {
        if y.size()[0] == 0 {
            return (f64::NAN, f64::NAN);
        }
        tch::no_grad(|| {
            let logits = self.forward(theta, x);
            let loss = cross_entropy(&logits, y).double_value(&[]);
            let acc = logits
                .argmax(-1, false)
                .eq_tensor(y)
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[]);
            (loss, acc)
        })
    }
}

/// Mean cross-entropy of softmax(logits) in the logits' own dtype.
/// (tch's `cross_entropy_for_logits` computes in f32 whatever the input,
/// which would cap every f64 Hessian at single precision.)
///
/// Written so that the value and autograd's first and second derivatives
/// keep their relative precision at any margin (ATen's log-softmax loses all
/// of them once 1 − p_c is below ε). With a the row's argmax and
/// u = z − z_a, the row's loss is
///
/// ```text
/// ℓ = log1p(Σ_{j≠a} exp(u_j)) − u_c        (u_c = 0 when c = a)
/// ```
///
/// where every u_j ≤ 0, and u_a, a constant 0, carries no gradient.
/// On a correctly classified row that is log1p(Σ_{j≠c} exp(z_j − z_c)). Its
/// gradient is then p_j for j ≠ c and −Σ_{j≠c} p_j at c, and double backprop
/// yields the stable R(p) of [`crate::rop`]. Checked against a 400-digit
/// reference in `tests/stable_xent.rs`.
pub fn cross_entropy(logits: &Tensor, y: &Tensor) -> Tensor {
    let kind = logits.kind();
    let pivot = logits.detach().argmax(-1, true);
    // u = z − z_a with u_a a constant 0: scatter's backward zeroes its gradient.
    let u = (logits - logits.gather(-1, &pivot, false)).scatter_value(-1, &pivot, 0.0);
    let rest = u
        .exp()
        .scatter_value(-1, &pivot, 0.0)
        .sum_dim_intlist([-1i64].as_slice(), false, kind)
        .log1p();
    let u_c = u.gather(-1, &y.unsqueeze(-1), false).squeeze_dim(-1);
    (rest - u_c).mean(kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stages::mlp::Init;

    #[test]
    fn analytic_gradient_equals_autograd() {
        for act in [
            Activation::Tanh,
            Activation::Relu,
            Activation::Gelu,
            Activation::Softplus,
        ] {
            let a = Arch {
                widths: vec![5, 7, 6, 3],
                activation: act,
            };
            let theta = Tensor::from_slice(&a.init(Init::TorchDefault, 3)).set_requires_grad(true);
            tch::manual_seed(1);
            let x = Tensor::randn([11, 5], (Kind::Double, tch::Device::Cpu));
            let y = Tensor::from_slice(&[0i64, 1, 2, 2, 1, 0, 0, 1, 2, 1, 0]);
            let loss = a.loss(&theta, &x, &y);
            let g = Tensor::run_backward(&[&loss], &[&theta], false, false).remove(0);
            let mut ours = theta.detach().zeros_like();
            let l = a.loss_and_grad(&theta.detach(), &x, &y, &mut ours);
            assert!((l - loss.double_value(&[])).abs() < 1e-14, "{act:?}");
            let rel = (&ours - &g).norm().double_value(&[]) / g.norm().double_value(&[]);
            assert!(rel < 1e-13, "{act:?}: relative gradient error {rel:e}");
        }
    }

    #[test]
    fn layout_matches_nn_linear() {
        let a = Arch {
            widths: vec![3, 4, 2],
            activation: Activation::Tanh,
        };
        let m = a.param_map();
        assert_eq!(a.num_params(), 3 * 4 + 4 + 4 * 2 + 2);
        assert_eq!(m[0].name, "layers.0.weight");
        assert_eq!(m[0].shape, vec![4, 3]);
        assert_eq!(m[1].offset, 12);
        assert_eq!(m[3].offset + m[3].numel, a.num_params());
        // forward equals an explicit computation
        let theta_v = a.init(Init::TorchDefault, 1);
        let theta = Tensor::from_slice(&theta_v);
        let x = Tensor::from_slice(&[0.5f64, -1.0, 2.0]).view([1, 3]);
        let out = a.forward(&theta, &x);
        let mut h = [0f64; 4];
        for o in 0..4 {
            h[o] = theta_v[12 + o];
            for i in 0..3 {
                h[o] += theta_v[o * 3 + i] * [0.5, -1.0, 2.0][i];
            }
            h[o] = h[o].tanh();
        }
        for o in 0..2 {
            let mut z = theta_v[16 + 8 + o];
            for i in 0..4 {
                z += theta_v[16 + o * 4 + i] * h[i];
            }
            assert!((out.double_value(&[0, o as i64]) - z).abs() < 1e-12);
        }
        let bound = 1.0 / 3f64.sqrt();
        assert!(theta_v[..16].iter().all(|v| v.abs() <= bound));
    }
}
