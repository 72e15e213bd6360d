//! SGD's update (weight decay, momentum, dampening, Nesterov) in one pass
//! over θ, the gradient and the momentum buffer, for contiguous CPU
//! tensors: the two to seven ATen passes of `optim.rs` become one loop. The
//! arithmetic is the same operations in the same order and precision, each
//! rounded once as ATen's elementwise kernels round it (its additions with
//! alpha = ±1 are exact fused products), so the result is the same bits as
//! the passes (torch/src/optim.rs tests it bit for bit); Rust does not fuse
//! a multiply and an add on its own, so the bits do not depend on the CPU.

use crate::adam_pass::{split, Pool, Real, Shared};

/// One step's constants, as torch.optim.SGD uses them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SgdStep {
    /// Coupled L2 weight decay, 0 for none.
    pub wd: f64,
    pub lr: f64,
    /// None without momentum.
    pub momentum: Option<Momentum>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Momentum {
    pub mu: f64,
    pub one_minus_dampening: f64,
    pub nesterov: bool,
    /// The buffer's first step: it becomes d_p, as torch.optim.SGD's clone.
    pub first: bool,
}

#[inline(always)]
fn pass<T: Real>(th: &mut [T], g: &[T], buf: &mut [T], c: &SgdStep) {
    let (wd, lr) = (T::of(c.wd), T::of(c.lr));
    let coupled = c.wd != 0.0;
    let n = th.len();
    assert!(g.len() == n && (c.momentum.is_none() || buf.len() == n));
    for i in 0..n {
        // d_p = θ·wd + g (ATen: mul_out, then add_).
        let mut d = if coupled { th[i] * wd + g[i] } else { g[i] };
        if let Some(mo) = c.momentum {
            let mu = T::of(mo.mu);
            // buf ← buf·μ + d_p·(1 − dampening) (mul_, mul_out, add_).
            let b = if mo.first {
                d
            } else {
                buf[i] * mu + d * T::of(mo.one_minus_dampening)
            };
            buf[i] = b;
            // Nesterov: d_p + buf·μ (mul_out, add_); else buf.
            d = if mo.nesterov { b * mu + d } else { b };
        }
        // θ ← θ − d_p·lr (mul_out, sub_).
        th[i] = th[i] - d * lr;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pass_avx2<T: Real>(th: &mut [T], g: &[T], buf: &mut [T], c: &SgdStep) {
    pass(th, g, buf, c)
}

/// [`pass`], compiled for AVX2 where the CPU has it (the same bits).
fn pass_best<T: Real>(th: &mut [T], g: &[T], buf: &mut [T], c: &SgdStep) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { pass_avx2(th, g, buf, c) };
    }
    pass(th, g, buf, c)
}

/// The pass over `pool` (each entry alone: the split does not change a
/// bit). `buf` is empty without momentum.
pub(crate) fn sgd_pass_on<T: Real + Send + Sync>(
    pool: Pool,
    th: &mut [T],
    g: &[T],
    buf: &mut [T],
    c: &SgdStep,
) {
    let n = th.len();
    assert!(g.len() == n && (c.momentum.is_none() || buf.len() == n));
    let buf = Shared::new(if c.momentum.is_some() { buf } else { &mut [] });
    let (th, g) = (Shared::new(th), Shared::of(g));
    // SAFETY: `split`'s ranges are disjoint and within 0..n, each run once;
    // the borrows of the slices outlive it; g is only read.
    split(pool, n, &|lo, hi| unsafe {
        pass_best(th.range(lo, hi), g.range_ref(lo, hi), buf.range(lo, hi), c)
    });
}
