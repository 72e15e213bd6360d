//! Adam's update in one pass over θ, the gradient and the moments, for
//! contiguous CPU tensors: the nine ATen passes of `optim.rs` (each one a
//! read and a write of a P-vector) become one loop that keeps each entry in
//! registers. The arithmetic is the same operations in the same order and
//! precision, each rounded as ATen's elementwise kernels round it, except
//! that ATen's vectorized `lerp` fuses a multiply-add where this rounds the
//! product first (at most one rounding of m per step; torch/tests/optim_torch.rs
//! holds every optimizer to PyTorch's θ within 1e-6). Plain multiplies and
//! adds give the same bits at every SIMD width, so the result does not depend
//! on the CPU.

use std::ops::{Add, Div, Mul, Sub};

/// f32 or f64.
pub(crate) trait Real:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    fn of(x: f64) -> Self;
    fn sqrt(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn of(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn sqrt(self) -> f32 {
        f32::sqrt(self)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn of(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn sqrt(self) -> f64 {
        f64::sqrt(self)
    }
}

/// One step's constants, as torch.optim.Adam computes them in f64 before
/// ATen casts each scalar to the tensors' dtype.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamStep {
    /// 1 − β₁ (lerp's weight).
    pub one_minus_b1: f64,
    pub b2: f64,
    pub one_minus_b2: f64,
    /// Coupled L2 weight decay (Adam), 0 for none.
    pub wd: f64,
    /// Decoupled decay factor 1 − lr·wd (AdamW), 1 for none.
    pub decay: f64,
    /// √(1 − β₂ᵗ).
    pub bc2_sqrt: f64,
    pub eps: f64,
    /// −lr/(1 − β₁ᵗ).
    pub neg_step_size: f64,
    pub amsgrad: bool,
}

/// The pass. `vmax` is AMSGrad's running maximum of v (unused without it).
#[inline(always)]
fn pass<T: Real>(th: &mut [T], g: &[T], m: &mut [T], v: &mut [T], vmax: &mut [T], c: &AdamStep) {
    let (w, b2, c2) = (T::of(c.one_minus_b1), T::of(c.b2), T::of(c.one_minus_b2));
    let (wd, decay, bc2, eps, ns) = (
        T::of(c.wd),
        T::of(c.decay),
        T::of(c.bc2_sqrt),
        T::of(c.eps),
        T::of(c.neg_step_size),
    );
    let lerp_low = c.one_minus_b1 < 0.5;
    let w1 = T::of(1.0 - c.one_minus_b1);
    let n = th.len();
    assert!(g.len() == n && m.len() == n && v.len() == n);
    let decoupled = c.decay != 1.0;
    let coupled = c.wd != 0.0;
    if c.amsgrad {
        assert_eq!(vmax.len(), n);
    }
    for i in 0..n {
        let mut t = th[i];
        if decoupled {
            // AdamW: θ ← θ·(1 − lr·wd), before the moments.
            t = t * decay;
        }
        // Adam's L2: g ← θ·wd + g (ATen: mul_out then add_).
        let gi = if coupled { th[i] * wd + g[i] } else { g[i] };
        // lerp_(g, w): m + w·(g − m) for w < 0.5, else g − (g − m)·(1 − w).
        let mi = if lerp_low {
            m[i] + w * (gi - m[i])
        } else {
            gi - (gi - m[i]) * w1
        };
        // mul_(β₂), then addcmul_(g, g·(1 − β₂)).
        let vi = v[i] * b2 + gi * (gi * c2);
        let vd = if c.amsgrad {
            let x = if vmax[i] > vi || vmax[i].partial_cmp(&vmax[i]).is_none() {
                vmax[i]
            } else {
                vi
            };
            vmax[i] = x;
            x
        } else {
            vi
        };
        // sqrt_out, div_(√bc₂), add_(ε); then addcdiv_(m·(−step), denom).
        let denom = vd.sqrt() / bc2 + eps;
        th[i] = t + (mi * ns) / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pass_avx2<T: Real>(
    th: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: &mut [T],
    c: &AdamStep,
) {
    pass(th, g, m, v, vmax, c)
}

/// [`pass`], compiled for AVX2 where the CPU has it (the same bits: no
/// fused operations).
fn pass_best<T: Real>(
    th: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: &mut [T],
    c: &AdamStep,
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { pass_avx2(th, g, m, v, vmax, c) };
    }
    pass(th, g, m, v, vmax, c)
}

/// Entries per parallel chunk: below two of these a pass runs on the
/// calling thread.
pub(crate) const CHUNK: usize = 1 << 15;

/// A slice shared with the threads of [`split`], each of which takes its
/// own disjoint range of it.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: `split`'s threads take disjoint ranges (`range`, `range_ref`).
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    pub(crate) fn new(s: &mut [T]) -> Shared<T> {
        Shared {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// A slice that is only read ([`Self::range_ref`], never
    /// [`Self::range`]).
    pub(crate) fn of(s: &[T]) -> Shared<T> {
        Shared {
            ptr: s.as_ptr() as *mut T,
            len: s.len(),
        }
    }

    /// Entries `lo..hi`, or nothing where the slice is empty (a state the
    /// step does not use, AMSGrad's or momentum's).
    ///
    /// # Safety
    /// `lo ≤ hi ≤` the length, no other thread touches the range while the
    /// result lives, the slice outlives it, and it came from [`Self::new`].
    pub(crate) unsafe fn range<'a>(self, lo: usize, hi: usize) -> &'a mut [T] {
        if self.len == 0 {
            return &mut [];
        }
        debug_assert!(lo <= hi && hi <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(lo), hi - lo)
    }

    /// Entries `lo..hi`, to read.
    ///
    /// # Safety
    /// `lo ≤ hi ≤` the length, nothing writes the range while the result
    /// lives, and the slice outlives it.
    pub(crate) unsafe fn range_ref<'a>(self, lo: usize, hi: usize) -> &'a [T] {
        debug_assert!(lo <= hi && hi <= self.len);
        std::slice::from_raw_parts(self.ptr.add(lo), hi - lo)
    }
}

/// Where [`split`] runs its chunks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pool {
    /// The calling thread's OpenMP team (ATen's: see [`crate::omp`]).
    OpenMp,
    /// rayon's pool (the worker's slot: `stages::cpus`).
    Rayon,
}

impl Pool {
    /// The OpenMP team where libtorch brought libgomp, rayon's pool where
    /// not.
    pub(crate) fn best() -> Pool {
        if crate::omp::max_threads().is_some() {
            Pool::OpenMp
        } else {
            Pool::Rayon
        }
    }
}

/// `body(lo, hi)` over disjoint ranges that cover `0..n`, in parallel on
/// `pool` (OpenMP only where libgomp is loaded), each range run once; on
/// the calling thread alone, as `body(0, n)`, below two [`CHUNK`]s or with
/// one thread. Returns when every range is done.
pub(crate) fn split(pool: Pool, n: usize, body: &(dyn Fn(usize, usize) + Sync)) {
    let threads = match pool {
        Pool::OpenMp => crate::omp::max_threads().expect("libgomp is loaded"),
        Pool::Rayon => rayon::current_num_threads(),
    };
    if threads < 2 || n < 2 * CHUNK {
        return body(0, n);
    }
    let size = n.div_ceil(threads).next_multiple_of(64).max(CHUNK);
    let chunks = n.div_ceil(size);
    let chunk = |i: usize| body(i * size, ((i + 1) * size).min(n));
    match pool {
        Pool::OpenMp => {
            let ran = crate::omp::parallel(&|i, team| {
                // A team smaller than asked for takes the chunks round-robin.
                (i..chunks).step_by(team).for_each(chunk);
            });
            assert!(ran, "libgomp is loaded");
        }
        Pool::Rayon => {
            use rayon::prelude::*;
            (0..chunks).into_par_iter().for_each(chunk);
        }
    }
}

/// The pass over `pool` ([`split`]; [`Pool::best`] in the optimizer). Each
/// entry is computed alone, so the split does not change a bit.
pub(crate) fn adam_pass_on<T: Real + Send + Sync>(
    pool: Pool,
    th: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: &mut [T],
    c: &AdamStep,
) {
    let n = th.len();
    assert!(g.len() == n && m.len() == n && v.len() == n);
    assert!(!c.amsgrad || vmax.len() == n);
    let (th, g, m, v) = (
        Shared::new(th),
        Shared::of(g),
        Shared::new(m),
        Shared::new(v),
    );
    let vmax = Shared::new(if c.amsgrad { vmax } else { &mut [] });
    // SAFETY: `split`'s ranges are disjoint and within 0..n, each run once;
    // the borrows of the slices outlive it, as it returns only when every
    // range is done; g is only read.
    split(pool, n, &|lo, hi| unsafe {
        pass_best(
            th.range(lo, hi),
            g.range_ref(lo, hi),
            m.range(lo, hi),
            v.range(lo, hi),
            vmax.range(lo, hi),
            c,
        )
    });
}
