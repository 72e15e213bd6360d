//! Block Lanczos with full reorthogonalization, accumulated in f64, for the
//! extreme eigenpairs of a symmetric operator given only by its products
//! with blocks of b vectors (b = 1 is classic Lanczos).
//!
//! With Q_1 an orthonormal n×b start block, each iteration takes one block
//! product W = H Q_j, A_j = Q_jᵀ W, W ← W − Q_j A_j − Q_{j−1} B_{j−1}ᵀ,
//! reorthogonalizes W against every basis vector (classical Gram–Schmidt a
//! block of rows at a time; a second pass only when the first removed most
//! of W: the DGKS criterion, "twice is enough", Kahan–Parlett) and factors
//! W = Q_{j+1} B_j (modified Gram–Schmidt; a column that vanishes, an
//! invariant subspace, is replaced by a fresh random direction with a zero
//! coupling). The Ritz pairs come from the block
//! tridiagonal T = [A_j on the diagonal, B_j below it].
//!
//! Stopping rule (docs/science.md): every wanted Ritz pair has residual
//! ‖Hy − θy‖ ≤ max(tol·|λ_1|, abs_tol), abs_tol the operator's rounding level
//! (0 unless the caller knows it). While iterating it is known without products:
//! H Q = Q T + Q_{m+1} B_m E_mᵀ, so ‖Hy_i − θ_i y_i‖ = ‖B_m s_i^{(last b)}‖
//! (Parlett, "The Symmetric Eigenvalue Problem", §13.1; Golub & Van Loan
//! §10.3.6 for the block form); with full reorthogonalization the estimate is
//! accurate. At the end the true residuals are computed with one block
//! product of the Ritz vectors, and reported.
//!
//! Why blocks: the R-operator computes H·V for b directions with the b
//! batched into the matmuls, cheaper per vector than b single products (see
//! `eigentrace bench hessian`), and a warm start can hand over the previous
//! checkpoint's vectors as a whole block instead of their sum.

use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Which end(s) of the spectrum to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// The k algebraically largest.
    Largest,
    /// The k largest and the k most negative.
    BothEnds,
}

#[derive(Clone, Debug)]
pub struct LanczosOptions {
    pub k: usize,
    pub which: Which,
    pub tol: f64,
    /// An absolute floor under the stop test: residual ≤ max(tol·|λ_1|,
    /// abs_tol). The hessian stage sets it to the operator's rounding level,
    /// below which no residual can be trusted to shrink (0: none).
    pub abs_tol: f64,
    /// The most basis vectors (= products before the final check).
    pub max_iter: usize,
    pub seed: u64,
    /// Vectors per block product (1 = classic Lanczos).
    pub block: usize,
    /// Store the basis in f32: half the memory, and half the memory traffic
    /// of the reorthogonalization that dominates a step at large P; for
    /// runs whose products are f32 anyway. Each basis vector is rounded
    /// once when it is stored, and that rounded vector is the one the
    /// products, projections and Ritz vectors use, so the basis stays
    /// orthonormal to the f64 reorthogonalization's accuracy against it.
    pub f32_basis: bool,
}

/// An entry of a stored basis vector: f64, or f32
/// ([`LanczosOptions::f32_basis`]). All arithmetic with it is in f64
/// ([`dot`], [`axpy`]).
pub(crate) trait Element: Copy + Into<f64> + Send + Sync {
    /// Rounded to nearest from f64.
    fn round(x: f64) -> Self;
    /// A block of stored vectors as the f64 vectors the operator takes:
    /// borrowed when they are f64 already.
    fn widened(block: &[Vec<Self>]) -> Cow<'_, [Vec<f64>]>;
}

impl Element for f64 {
    fn round(x: f64) -> Self {
        x
    }
    fn widened(block: &[Vec<f64>]) -> Cow<'_, [Vec<f64>]> {
        Cow::Borrowed(block)
    }
}

impl Element for f32 {
    fn round(x: f64) -> Self {
        x as f32
    }
    fn widened(block: &[Vec<f32>]) -> Cow<'_, [Vec<f64>]> {
        Cow::Owned(
            block
                .iter()
                .map(|v| v.iter().map(|&x| f64::from(x)).collect())
                .collect(),
        )
    }
}

/// A vector stored as `E`.
fn store<E: Element>(v: Vec<f64>) -> Vec<E> {
    v.into_iter().map(E::round).collect()
}

#[derive(Clone, Debug)]
pub struct EigenPair {
    pub value: f64,
    pub vector: Vec<f64>,
    /// True residual ‖Hv − λv‖ (v has unit norm).
    pub residual: f64,
    /// 0 = largest, 1 = next…; -1 = most negative, -2 = next…
    pub rank: i32,
}

#[derive(Clone, Debug)]
pub struct LanczosResult {
    pub pairs: Vec<EigenPair>,
    /// Products used (vectors, not blocks), the final residual checks included.
    pub hvps: usize,
    /// Block iterations.
    pub iterations: usize,
    pub converged: bool,
}

/// A block operator: `op(xs, ys)` sets ys[i] = H xs[i] for every i.
pub type BlockOp<'a> = dyn FnMut(&[Vec<f64>], &mut [Vec<f64>]) + 'a;

/// aᵀb with eight running sums: independent additions that the compiler
/// vectorizes, where one running sum waits on every add (at P ~ 1e6 the
/// reorthogonalization's dot products were most of a Lanczos step).
pub(crate) fn dot<E: Element>(a: &[E], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (*x).into() * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i].into() * y[i];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// y += alpha·x.
pub(crate) fn axpy<E: Element>(alpha: f64, x: &[E], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * (*xi).into();
    }
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Rows per block of the Gram–Schmidt passes: a block of w (32 KB in f64)
/// stays in cache while every basis vector's block is read once.
const GS_ROWS: usize = 4096;

/// One classical Gram–Schmidt pass, a block of rows at a time: c = Qᵀw, then
/// w ← w − Qc. Each pass reads the basis twice and w a few times, where
/// modified Gram–Schmidt streams all of w twice per basis vector (at P ~ 1e6
/// w is out of cache, and that traffic was most of a Lanczos step). The
/// blocks run on rayon's pool; the coefficients sum each block's partial dot
/// in block order, and each entry of w subtracts the basis vectors in order,
/// so the result does not depend on the thread count.
fn gs_pass<E: Element>(basis: &[Vec<E>], w: &mut [f64]) -> Vec<f64> {
    use rayon::prelude::*;
    let n = w.len();
    if basis.is_empty() || n == 0 {
        return vec![0.0; basis.len()];
    }
    let blocks = n.div_ceil(GS_ROWS);
    let partial: Vec<Vec<f64>> = (0..blocks)
        .into_par_iter()
        .map(|bk| {
            let (r0, r1) = (bk * GS_ROWS, ((bk + 1) * GS_ROWS).min(n));
            let wb = &w[r0..r1];
            basis.iter().map(|q| dot(&q[r0..r1], wb)).collect()
        })
        .collect();
    let mut c = vec![0.0; basis.len()];
    for p in &partial {
        for (ci, pi) in c.iter_mut().zip(p) {
            *ci += pi;
        }
    }
    w.par_chunks_mut(GS_ROWS).enumerate().for_each(|(bk, wb)| {
        let r0 = bk * GS_ROWS;
        let r1 = r0 + wb.len();
        for (q, &ci) in basis.iter().zip(&c) {
            axpy(-ci, &q[r0..r1], wb);
        }
    });
    c
}

/// Orthogonalize `w` against the (orthonormal) basis by classical
/// Gram–Schmidt ([`gs_pass`]), and once more only when the pass removed
/// most of w: ‖w′‖ < ‖w‖/√2, the criterion of Daniel, Gragg, Kaufman and
/// Stewart (1976), as ARPACK uses it with classical Gram–Schmidt ("twice is
/// enough", Kahan–Parlett). A Lanczos step's w is nearly orthogonal
/// already, so its second pass is mostly skipped. Returns Qᵀw, both passes'
/// coefficients summed.
pub(crate) fn reorthogonalize_with<E: Element>(basis: &[Vec<E>], w: &mut [f64]) -> Vec<f64> {
    let mut h = vec![0.0; basis.len()];
    let mut before = norm(w);
    for _ in 0..2 {
        for (hi, c) in h.iter_mut().zip(gs_pass(basis, w)) {
            *hi += c;
        }
        let after = norm(w);
        if after >= before * std::f64::consts::FRAC_1_SQRT_2 {
            break;
        }
        before = after;
    }
    h
}

/// [`reorthogonalize_with`], the coefficients dropped.
pub(crate) fn reorthogonalize<E: Element>(basis: &[Vec<E>], w: &mut [f64]) {
    reorthogonalize_with(basis, w);
}

/// Σ_j c[(j, col)]·q_j for each col of `cols`, a block of rows at a time so
/// that the basis is read once, not once per column; each entry is summed
/// in the same order as one axpy per basis vector would sum it.
fn combine<E: Element>(basis: &[Vec<E>], c: &DMatrix<f64>, cols: &[usize]) -> Vec<Vec<f64>> {
    const ROWS: usize = 1024;
    let n = basis.first().map_or(0, Vec::len);
    let mut out = vec![vec![0.0; n]; cols.len()];
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + ROWS).min(n);
        for (o, &col) in out.iter_mut().zip(cols) {
            let dst = &mut o[r0..r1];
            for (j, q) in basis.iter().enumerate() {
                axpy(c[(j, col)], &q[r0..r1], dst);
            }
        }
        r0 = r1;
    }
    out
}

/// The wanted Ritz pairs from the basis and T's eigenpairs: the Ritz
/// vectors, normalized, and their true residuals from one block product
/// (`want.len()` products).
fn ritz_pairs<E: Element>(
    op: &mut BlockOp<'_>,
    basis: &[Vec<E>],
    vals: &[f64],
    vecs: &DMatrix<f64>,
    want: &[(usize, i32)],
) -> Vec<EigenPair> {
    let n = basis.first().map_or(0, Vec::len);
    let cols: Vec<usize> = want.iter().map(|&(i, _)| i).collect();
    let mut ys = combine(basis, vecs, &cols);
    for y in ys.iter_mut() {
        let ny = norm(y);
        y.iter_mut().for_each(|x| *x /= ny);
    }
    let mut hys = vec![vec![0.0; n]; ys.len()];
    op(&ys, &mut hys);
    want.iter()
        .zip(ys)
        .zip(&hys)
        .map(|((&(i, rank), y), hy)| {
            let lambda = vals[i];
            let r = hy
                .iter()
                .zip(&y)
                .map(|(h, v)| (h - lambda * v).powi(2))
                .sum::<f64>()
                .sqrt();
            EigenPair {
                value: lambda,
                vector: y,
                residual: r,
                rank,
            }
        })
        .collect()
}

/// The wanted Ritz indices (into ascending eigenvalues of T) with their ranks.
fn wanted(m: usize, k: usize, which: Which) -> Vec<(usize, i32)> {
    let mut out: Vec<(usize, i32)> = (0..k.min(m)).map(|r| (m - 1 - r, r as i32)).collect();
    if which == Which::BothEnds {
        for r in 0..k.min(m) {
            let idx = r;
            if out.iter().all(|(i, _)| *i != idx) {
                out.push((idx, -(r as i32) - 1));
            }
        }
    }
    out
}

/// Seeded random unit vectors orthogonal to everything given.
struct Fresh {
    rng: ChaCha8Rng,
    n: usize,
}

impl Fresh {
    /// Orthogonal to the stored `basis` and to `more`.
    fn unit<E: Element>(&mut self, basis: &[Vec<E>], more: &[Vec<f64>]) -> Vec<f64> {
        loop {
            let mut v: Vec<f64> = (0..self.n)
                .map(|_| StandardNormal.sample(&mut self.rng))
                .collect();
            reorthogonalize(basis, &mut v);
            reorthogonalize(more, &mut v);
            let nv = norm(&v);
            if nv > 1e-8 {
                v.iter_mut().for_each(|x| *x /= nv);
                return v;
            }
        }
    }
}

/// W = Q R by modified Gram–Schmidt (each column twice) with W's columns
/// already orthogonal to `basis`. A column whose norm falls below `floor`
/// is replaced by a fresh direction and gets R's diagonal entry 0.
fn block_qr<E: Element>(
    basis: &[Vec<E>],
    w: Vec<Vec<f64>>,
    floor: f64,
    fresh: &mut Fresh,
) -> (Vec<Vec<f64>>, DMatrix<f64>) {
    let b = w.len();
    let mut r = DMatrix::<f64>::zeros(b, b);
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(b);
    for (c, mut v) in w.into_iter().enumerate() {
        for _ in 0..2 {
            for (i, qi) in q.iter().enumerate() {
                let d = dot(qi, &v);
                r[(i, c)] += d;
                axpy(-d, qi, &mut v);
            }
        }
        let nv = norm(&v);
        if nv > floor {
            r[(c, c)] = nv;
            v.iter_mut().for_each(|x| *x /= nv);
            q.push(v);
        } else if basis.len() + q.len() < fresh.n {
            q.push(fresh.unit(basis, &q));
        } else {
            // The whole space is spanned: nothing left to continue with (the
            // caller stops, since the basis cannot grow).
            q.push(vec![0.0; fresh.n]);
        }
    }
    (q, r)
}

/// The first block. Without a start: random. With one (a warm start), the
/// start vectors are folded into the first b − 1 columns (column c sums the
/// vectors i ≡ c mod (b − 1)) and the last column is a random direction;
/// with b = 1, the one column is the normalized sum of the start vectors
/// plus a random unit vector of the same weight. Then orthonormalized.
///
/// The random part is what keeps a warm start honest: the previous top-k
/// alone span no direction that has since risen into the top-k, and a
/// residual-only stop cannot notice a missed eigenvalue (the Krylov space of
/// their sum may never reach it). With it, every direction has at least the
/// weight it would have in a cold start (up to a factor √2 for b = 1), and
/// the previous vectors still give most of the saving.
fn start_block(n: usize, b: usize, start: Option<&[Vec<f64>]>, fresh: &mut Fresh) -> Vec<Vec<f64>> {
    let usable: Vec<&Vec<f64>> = start
        .unwrap_or(&[])
        .iter()
        .filter(|s| s.len() == n && s.iter().all(|v| v.is_finite()))
        .collect();
    let warm_cols = if b == 1 { 1 } else { b - 1 };
    let mut cols: Vec<Vec<f64>> = vec![vec![0.0; n]; b];
    for (i, s) in usable.iter().enumerate() {
        axpy(1.0, s, &mut cols[i % warm_cols]);
    }
    for (c, col) in cols.iter_mut().enumerate() {
        let r = fresh.unit::<f64>(&[], &[]);
        let nc = norm(col);
        let warm = c < warm_cols && nc > 1e-12 && nc.is_finite();
        if warm && b == 1 {
            col.iter_mut().for_each(|x| *x /= nc);
            axpy(1.0, &r, col);
        } else if !warm {
            *col = r;
        }
    }
    block_qr::<f64>(&[], cols, 1e-12, fresh).0
}

/// Eigenpairs of the symmetric operator `op` of dimension `n`, by block
/// Lanczos with blocks of `opts.block` vectors. `start` optionally gives
/// vectors for the first block (a warm start); otherwise it is random.
pub fn lanczos(
    n: usize,
    op: &mut BlockOp<'_>,
    opts: &LanczosOptions,
    start: Option<&[Vec<f64>]>,
) -> LanczosResult {
    if opts.f32_basis {
        lanczos_in::<f32>(n, op, opts, start)
    } else {
        lanczos_in::<f64>(n, op, opts, start)
    }
}

fn lanczos_in<E: Element>(
    n: usize,
    op: &mut BlockOp<'_>,
    opts: &LanczosOptions,
    start: Option<&[Vec<f64>]>,
) -> LanczosResult {
    let b = opts.block.clamp(1, n.max(1));
    let mut fresh = Fresh {
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
        n,
    };
    let max_vectors = opts.max_iter.min(n).max(b);
    let mut basis: Vec<Vec<E>> = start_block(n, b, start, &mut fresh)
        .into_iter()
        .map(store)
        .collect();
    let mut diag: Vec<DMatrix<f64>> = Vec::new(); // A_j
    let mut sub: Vec<DMatrix<f64>> = Vec::new(); // B_j: W_j = Q_{j+1} B_j
    let mut hvps = 0usize;
    let mut w: Vec<Vec<f64>> = vec![vec![0.0; n]; b];
    // With b = 1, T's eigendecomposition is worth skipping on most steps.
    let check_every = if b >= 4 { 1 } else { 4 / b };
    let mut j = 0;
    let (vals, vecs, converged) = loop {
        // The current block, as stored (rounded once, if f32).
        let cur = E::widened(&basis[j * b..(j + 1) * b]);
        op(&cur, &mut w);
        hvps += b;
        let mut a = DMatrix::<f64>::zeros(b, b);
        for r in 0..b {
            for c in 0..b {
                a[(r, c)] = dot(&cur[r], &w[c]);
            }
        }
        let a = (&a + a.transpose()) * 0.5;
        for c in 0..b {
            for r in 0..b {
                axpy(-a[(r, c)], &cur[r], &mut w[c]);
            }
            if j > 0 {
                // (Q_{j−1} B_{j−1}ᵀ)[:, c] = Σ_r Q_{j−1}[:, r] B_{j−1}[c, r]
                let prev = &basis[(j - 1) * b..j * b];
                for r in 0..b {
                    axpy(-sub[j - 1][(c, r)], &prev[r], &mut w[c]);
                }
            }
            reorthogonalize(&basis, &mut w[c]);
        }
        diag.push(a);
        let m = basis.len();
        let scale_a = diag
            .iter()
            .flat_map(|d| d.iter().copied())
            .fold(0f64, |acc, v| acc.max(v.abs()))
            .max(1e-300);
        let (next, bj) = block_qr(&basis, std::mem::take(&mut w), 1e-12 * scale_a, &mut fresh);
        w = vec![vec![0.0; n]; b];
        let at_end = m + b > max_vectors;
        let enough = m >= opts.k.min(n);
        if (enough && (j + 1) % check_every == 0) || at_end {
            let (vals, vecs) = block_tridiagonal_eigen(&diag, &sub);
            let scale = vals
                .iter()
                .fold(0f64, |acc, v| acc.max(v.abs()))
                .max(f64::MIN_POSITIVE);
            let done = enough
                && wanted(m, opts.k, opts.which).iter().all(|&(i, _)| {
                    let last = vecs.view((m - b, i), (b, 1));
                    (&bj * last).norm() <= (opts.tol * scale).max(opts.abs_tol)
                });
            if done || at_end {
                break (vals, vecs, done);
            }
        }
        sub.push(bj);
        basis.extend(next.into_iter().map(store));
        j += 1;
    };
    let m = basis.len();
    // Ritz vectors, then their true residuals with one block product.
    let want = wanted(m, opts.k, opts.which);
    let pairs = ritz_pairs(op, &basis, &vals, &vecs, &want);
    hvps += pairs.len();
    LanczosResult {
        pairs,
        hvps,
        iterations: diag.len(),
        converged,
    }
}

/// Eigenpairs of `op` by thick-restart Lanczos (Wu and Simon 2000), one
/// vector at a time, holding at most `max_basis` basis vectors: the memory
/// of the basis and each step's reorthogonalization are bounded by it, not
/// by the products taken. `opts.max_iter` caps the products; `opts.block`
/// is ignored (the config allows only 1 with a bounded basis).
///
/// The basis Q stays orthonormal (full reorthogonalization) and the
/// projected matrix T = QᵀAQ is kept dense, its entries the
/// reorthogonalization's own coefficients. When the basis is full, the
/// `keep` wanted Ritz vectors Q·y_i replace it, T becomes diag(θ_i), and
/// the last residual direction continues the expansion; its couplings to
/// the kept vectors (β·y_i's last entries) come back as that step's
/// projections. A Ritz pair's residual is β·|last entry of y| throughout,
/// because only the newest vector's product leaves span(Q).
pub fn lanczos_restarted(
    n: usize,
    op: &mut BlockOp<'_>,
    opts: &LanczosOptions,
    start: Option<&[Vec<f64>]>,
    max_basis: usize,
) -> LanczosResult {
    if opts.f32_basis {
        restarted_in::<f32>(n, op, opts, start, max_basis)
    } else {
        restarted_in::<f64>(n, op, opts, start, max_basis)
    }
}

fn restarted_in<E: Element>(
    n: usize,
    op: &mut BlockOp<'_>,
    opts: &LanczosOptions,
    start: Option<&[Vec<f64>]>,
    max_basis: usize,
) -> LanczosResult {
    let mut fresh = Fresh {
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
        n,
    };
    let k_all = wanted(n, opts.k, opts.which).len();
    let max_basis = max_basis.clamp((k_all + 2).min(n), n.max(1));
    // Kept at a restart: the wanted pairs and half the spare room.
    let keep = (k_all + (max_basis - k_all) / 2)
        .min(max_basis - 1)
        .max(k_all.min(max_basis - 1));
    let mut basis: Vec<Vec<E>> = start_block(n, 1, start, &mut fresh)
        .into_iter()
        .map(store)
        .collect();
    let mut t = DMatrix::<f64>::zeros(max_basis, max_basis);
    let mut w = vec![vec![0.0; n]];
    let (mut hvps, mut steps) = (0usize, 0usize);
    let mut scale_t = 0f64;
    let (vals, vecs, converged) = loop {
        let j = basis.len() - 1;
        op(&E::widened(&basis[j..j + 1]), &mut w);
        hvps += 1;
        steps += 1;
        let mut r = std::mem::replace(&mut w[0], vec![0.0; n]);
        // h = Qᵀ A q_j: the reorthogonalization's coefficients.
        let h = reorthogonalize_with(&basis, &mut r);
        for (i, &hi) in h.iter().enumerate() {
            t[(i, j)] = hi;
            t[(j, i)] = hi;
            scale_t = scale_t.max(hi.abs());
        }
        let beta = norm(&r);
        let m = basis.len();
        let tm = t.view((0, 0), (m, m)).into_owned();
        let e = tm.symmetric_eigen();
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| e.eigenvalues[a].total_cmp(&e.eigenvalues[b]));
        let vals: Vec<f64> = order.iter().map(|&i| e.eigenvalues[i]).collect();
        let vecs = DMatrix::<f64>::from_fn(m, m, |r, c| e.eigenvectors[(r, order[c])]);
        let scale = vals
            .iter()
            .fold(0f64, |acc, v| acc.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        let enough = m >= opts.k.min(n);
        let done = enough
            && wanted(m, opts.k, opts.which).iter().all(|&(i, _)| {
                beta * vecs[(m - 1, i)].abs() <= (opts.tol * scale).max(opts.abs_tol)
            });
        if done || hvps >= opts.max_iter.max(1) || m == n {
            break (vals, vecs, done);
        }
        // The next direction: the residual, or a fresh one on a breakdown
        // (an invariant subspace: its couplings are then 0).
        if beta <= 1e-12 * scale_t.max(1e-300) {
            r = fresh.unit(&basis, &[]);
        } else {
            r.iter_mut().for_each(|x| *x /= beta);
        }
        if m < max_basis {
            basis.push(store(r));
            continue;
        }
        // Restart: the kept Ritz vectors, then the residual direction.
        let kept: Vec<usize> = {
            let mut idx: Vec<usize> = wanted(m, keep, Which::Largest)
                .iter()
                .map(|&(i, _)| i)
                .collect();
            if opts.which == Which::BothEnds {
                // Both ends, the spare room split between them.
                let half = keep.div_ceil(2);
                idx = (0..half.min(m))
                    .chain((m - (keep - half).min(m))..m)
                    .collect();
                idx.sort_unstable();
                idx.dedup();
            }
            idx
        };
        // Q orthonormal and Y orthonormal: U = QY is, to rounding.
        let mut next = combine(&basis, &vecs, &kept);
        for u in next.iter_mut() {
            let nu = norm(u);
            u.iter_mut().for_each(|x| *x /= nu);
        }
        t.fill(0.0);
        for (c, &i) in kept.iter().enumerate() {
            t[(c, c)] = vals[i];
        }
        reorthogonalize(&next, &mut r);
        let nr = norm(&r);
        r.iter_mut().for_each(|x| *x /= nr);
        next.push(r);
        basis = next.into_iter().map(store).collect();
    };
    let m = basis.len();
    let want = wanted(m, opts.k, opts.which);
    let pairs = ritz_pairs(op, &basis, &vals, &vecs, &want);
    hvps += pairs.len();
    LanczosResult {
        pairs,
        hvps,
        iterations: steps,
        converged,
    }
}

/// A single-vector operator as a block operator (one product per vector).
pub fn one_by_one<'a>(
    op: &'a mut dyn FnMut(&[f64], &mut [f64]),
) -> impl FnMut(&[Vec<f64>], &mut [Vec<f64>]) + 'a {
    move |xs, ys| {
        for (x, y) in xs.iter().zip(ys.iter_mut()) {
            op(x, y);
        }
    }
}

/// Ascending eigenvalues and eigenvectors (columns) of the symmetric block
/// tridiagonal matrix with diagonal blocks `diag` and subdiagonal blocks
/// `sub` (sub[j] couples block j + 1 to block j).
fn block_tridiagonal_eigen(
    diag: &[DMatrix<f64>],
    sub: &[DMatrix<f64>],
) -> (Vec<f64>, DMatrix<f64>) {
    let b = diag[0].nrows();
    let m = diag.len() * b;
    let mut t = DMatrix::<f64>::zeros(m, m);
    for (j, a) in diag.iter().enumerate() {
        t.view_mut((j * b, j * b), (b, b)).copy_from(a);
        if let Some(bj) = sub.get(j) {
            if (j + 1) * b < m {
                t.view_mut(((j + 1) * b, j * b), (b, b)).copy_from(bj);
                t.view_mut((j * b, (j + 1) * b), (b, b))
                    .copy_from(&bj.transpose());
            }
        }
    }
    let eig = SymmetricEigen::new(t);
    let mut idx: Vec<usize> = (0..m).collect();
    idx.sort_by(|&a, &b| eig.eigenvalues[a].total_cmp(&eig.eigenvalues[b]));
    let vals = idx.iter().map(|&i| eig.eigenvalues[i]).collect();
    let mut vecs = DMatrix::<f64>::zeros(m, m);
    for (c, &i) in idx.iter().enumerate() {
        vecs.set_column(c, &eig.eigenvectors.column(i));
    }
    (vals, vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense symmetric matrix with a known spectrum: Q diag(d) Qᵀ.
    fn matrix(n: usize, seed: u64) -> (DMatrix<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = DMatrix::<f64>::from_fn(n, n, |_, _| StandardNormal.sample(&mut rng));
        let q = a.qr().q();
        let d: Vec<f64> = (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    -(i as f64)
                } else {
                    i as f64 * 0.5 + 1.0
                }
            })
            .collect();
        let m =
            &q * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(d.clone())) * q.transpose();
        (m, d)
    }

    /// A pair's rank (0, 1, … from the top; −1, −2, … from the bottom) as
    /// an index into the n eigenvalues sorted in decreasing order.
    fn sorted_index(rank: i32, n: usize) -> usize {
        if rank >= 0 {
            rank as usize
        } else {
            n - (-rank) as usize
        }
    }

    fn dense_op(m: &DMatrix<f64>) -> impl FnMut(&[Vec<f64>], &mut [Vec<f64>]) + '_ {
        move |xs, ys| {
            for (x, y) in xs.iter().zip(ys.iter_mut()) {
                let v = m * nalgebra::DVector::from_column_slice(x);
                y.copy_from_slice(v.as_slice());
            }
        }
    }

    fn opts(k: usize, which: Which, block: usize) -> LanczosOptions {
        LanczosOptions {
            k,
            which,
            tol: 1e-10,
            abs_tol: 0.0,
            max_iter: 120,
            seed: 1,
            block,
            f32_basis: false,
        }
    }

    #[test]
    fn matches_known_spectrum_both_ends_for_every_block_size() {
        let n = 120;
        let (m, d) = matrix(n, 3);
        let mut sorted = d.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for block in [1, 2, 3, 5, 8] {
            let r = lanczos(n, &mut dense_op(&m), &opts(5, Which::BothEnds, block), None);
            assert!(r.converged, "b = {block}");
            for p in &r.pairs {
                let expect = sorted[sorted_index(p.rank, n)];
                assert!(
                    (p.value - expect).abs() <= 1e-9 * expect.abs().max(1.0),
                    "b = {block}, rank {}: {} vs {}",
                    p.rank,
                    p.value,
                    expect
                );
                // the stored residual is the true one
                let v = nalgebra::DVector::from_column_slice(&p.vector);
                let true_r = (&m * &v - &v * p.value).norm();
                assert!((p.residual - true_r).abs() <= 1e-12 * sorted[0].abs());
                assert!(p.residual <= 1e-8 * sorted[0].abs());
            }
            assert_eq!(r.pairs.iter().filter(|p| p.rank < 0).count(), 5);
            assert_eq!(r.hvps % block, r.pairs.len() % block);
        }
    }

    /// An f32 basis (`f32_basis`, for f32 runs): the dense spectrum's pairs
    /// to the f32 basis's rounding, unrestarted (every block size) and
    /// thick-restarted, at the tolerance an f32 run uses (1e-4) and tighter.
    /// The Ritz vectors are the f64 ones to within the same rounding, and
    /// every stored residual is the true one.
    #[test]
    fn an_f32_basis_finds_the_dense_pairs_to_its_rounding() {
        let n = 120;
        let (m, d) = matrix(n, 3);
        let mut sorted = d.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let lam1 = sorted[0].abs();
        for block in [1, 2, 4] {
            for restart in [None, Some(30)] {
                if restart.is_some() && block > 1 {
                    continue;
                }
                let what = format!("b = {block}, max_basis {restart:?}");
                let o = LanczosOptions {
                    tol: 1e-6,
                    f32_basis: true,
                    ..opts(5, Which::BothEnds, block)
                };
                let run = |o: &LanczosOptions| match restart {
                    None => lanczos(n, &mut dense_op(&m), o, None),
                    Some(mb) => lanczos_restarted(n, &mut dense_op(&m), o, None, mb),
                };
                let r = run(&o);
                let exact = run(&LanczosOptions {
                    f32_basis: false,
                    ..o.clone()
                });
                assert!(r.converged, "{what}");
                // The basis really was rounded: not the f64 run's numbers.
                assert!(
                    r.pairs
                        .iter()
                        .zip(&exact.pairs)
                        .any(|(p, q)| p.vector != q.vector),
                    "{what}"
                );
                for (p, q) in r.pairs.iter().zip(&exact.pairs) {
                    assert_eq!(p.rank, q.rank);
                    let expect = sorted[sorted_index(p.rank, n)];
                    assert!(
                        (p.value - expect).abs() <= 1e-6 * lam1,
                        "{what}, rank {}: {} vs {expect}",
                        p.rank,
                        p.value
                    );
                    let v = nalgebra::DVector::from_column_slice(&p.vector);
                    let true_r = (&m * &v - &v * p.value).norm();
                    assert!((p.residual - true_r).abs() <= 1e-12 * lam1, "{what}");
                    assert!(p.residual <= 1e-5 * lam1, "{what}: {}", p.residual);
                    // Against the f64 basis's vector: the same up to sign.
                    let overlap = dot(&p.vector, &q.vector).abs();
                    assert!(1.0 - overlap <= 1e-8, "{what}, rank {}: {overlap}", p.rank);
                }
            }
        }
    }

    /// The blocked classical Gram–Schmidt leaves w orthogonal to the basis
    /// (to rounding), returns Qᵀw, and gives the same bits on 1 and 3
    /// threads, across a partial last block.
    #[test]
    fn reorthogonalization_is_orthogonal_and_independent_of_the_threads() {
        let n = 3 * GS_ROWS + 123;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut basis: Vec<Vec<f64>> = Vec::new();
        for _ in 0..7 {
            let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
            reorthogonalize(&basis, &mut v);
            let nv = norm(&v);
            basis.push(v.iter().map(|x| x / nv).collect());
        }
        let w0: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        // Qᵀw by plain sums, before.
        let want: Vec<f64> = basis
            .iter()
            .map(|q| q.iter().zip(&w0).map(|(a, b)| a * b).sum())
            .collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut w = w0.clone();
            let h = pool.install(|| reorthogonalize_with(&basis, &mut w));
            (w, h)
        };
        let (w1, h1) = run(1);
        let (w3, h3) = run(3);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&w1), bits(&w3));
        assert_eq!(bits(&h1), bits(&h3));
        let scale = norm(&w0);
        for (q, (h, want)) in basis.iter().zip(h1.iter().zip(&want)) {
            assert!(dot(q, &w1).abs() <= 1e-13 * scale, "{}", dot(q, &w1));
            assert!((h - want).abs() <= 1e-12 * scale, "{h} vs {want}");
        }
    }

    /// The eight-sum dot product against a plain one, at every length
    /// around its chunk size (the tail) and at P ~ 1e6.
    #[test]
    fn dot_matches_a_plain_sum() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for n in (0..40).chain([1_000_003]) {
            let a: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
            let b: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let scale: f64 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
            assert!(
                (dot(&a, &b) - plain).abs() <= 1e-13 * scale.max(1e-300),
                "n = {n}"
            );
        }
    }

    /// Thick restart against LAPACK-free truth (the matrix's known spectrum)
    /// and against unrestarted Lanczos: decaying, clustered and flat tops,
    /// the largest k and both ends, bases from k + 2 up. Eigenvalues to
    /// 1e-9 of |λ₁|, true residuals within tolerance, the vectors the
    /// unrestarted ones (gapped pairs), the basis never above its bound.
    #[test]
    fn thick_restart_matches_the_dense_spectrum_and_unrestarted_lanczos() {
        let n = 300;
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let a = DMatrix::<f64>::from_fn(n, n, |_, _| StandardNormal.sample(&mut rng));
        let q = a.qr().q();
        let spectra: Vec<(&str, Vec<f64>)> = vec![
            (
                "decaying",
                (0..n)
                    .map(|i| 10.0 * 0.97f64.powi(i as i32) - 0.5)
                    .collect(),
            ),
            // a cluster of near-equal tops, then a bulk
            (
                "clustered",
                (0..n)
                    .map(|i| {
                        if i < 6 {
                            5.0 - 1e-3 * i as f64
                        } else {
                            1.0 - i as f64 / n as f64
                        }
                    })
                    .collect(),
            ),
            // a flat spectrum: no outliers (initialization, the null)
            (
                "flat",
                (0..n).map(|i| 1.0 - 2.0 * i as f64 / n as f64).collect(),
            ),
        ];
        for (name, d) in spectra {
            let m = &q
                * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(d.clone()))
                * q.transpose();
            let mut sorted = d.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            // (The decaying spectrum's bottom is 150 eigenvalues within 0.1,
            // its last four 3e-5 apart: no small basis resolves them, and
            // unrestarted Lanczos needs the whole space. Both ends are
            // tested on the other two.)
            let cases: &[(usize, Which)] = if name == "decaying" {
                &[(5, Which::Largest), (10, Which::Largest)]
            } else {
                &[
                    (5, Which::Largest),
                    (10, Which::Largest),
                    (4, Which::BothEnds),
                ]
            };
            for &(k, which) in cases {
                let k_all = if which == Which::BothEnds { 2 * k } else { k };
                let o = LanczosOptions {
                    max_iter: 3000,
                    ..opts(k, which, 1)
                };
                let plain = lanczos(
                    n,
                    &mut dense_op(&m),
                    &LanczosOptions {
                        max_iter: n,
                        ..o.clone()
                    },
                    None,
                );
                // Both ends with the smallest basis (k_all + 2) leaves one
                // end no spare room: slow on a tight cluster, as in ARPACK;
                // the smallest tried there is 2·k_all.
                let smallest = if which == Which::BothEnds {
                    2 * k_all
                } else {
                    k_all + 2
                };
                for max_basis in [smallest, 2 * k_all + 1, 3 * k_all + 5] {
                    let mut widest = 0usize;
                    let mut counted = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| {
                        widest = widest.max(xs.len());
                        dense_op(&m)(xs, ys)
                    };
                    let r = lanczos_restarted(n, &mut counted, &o, None, max_basis);
                    let tag = format!("{name}, k = {k} {which:?}, max_basis {max_basis}");
                    assert!(r.converged, "{tag}: not converged in {} products", r.hvps);
                    assert_eq!(r.pairs.len(), k_all, "{tag}");
                    for p in &r.pairs {
                        let expect = sorted[sorted_index(p.rank, n)];
                        assert!(
                            (p.value - expect).abs() <= 1e-9 * sorted[0].abs(),
                            "{tag}, rank {}: {} vs {expect}",
                            p.rank,
                            p.value
                        );
                        let v = nalgebra::DVector::from_column_slice(&p.vector);
                        let true_r = (&m * &v - &v * p.value).norm();
                        assert!(
                            (p.residual - true_r).abs() <= 1e-12 * sorted[0].abs(),
                            "{tag}"
                        );
                        assert!(
                            p.residual <= 1e-8 * sorted[0].abs(),
                            "{tag}: residual {:e}",
                            p.residual
                        );
                        // The unrestarted pair: the same value, and for a
                        // gapped eigenvalue the same vector up to sign.
                        let twin = plain.pairs.iter().find(|x| x.rank == p.rank).unwrap();
                        assert!(
                            (twin.value - p.value).abs() <= 1e-9 * sorted[0].abs(),
                            "{tag}"
                        );
                        let i = sorted_index(p.rank, n);
                        let gap = [i.wrapping_sub(1), i + 1]
                            .iter()
                            .filter(|&&j| j < n)
                            .map(|&j| (sorted[j] - sorted[i]).abs())
                            .fold(f64::INFINITY, f64::min);
                        if gap > 1e-2 * sorted[0].abs() {
                            let c: f64 =
                                p.vector.iter().zip(&twin.vector).map(|(a, b)| a * b).sum();
                            assert!(
                                1.0 - c.abs() < 1e-8,
                                "{tag}, rank {}: |cos| = {}",
                                p.rank,
                                c.abs()
                            );
                        }
                    }
                }
            }
        }
    }

    /// A triple top eigenvalue: block Lanczos returns all three copies, with
    /// vectors that span the eigenspace. (Classic Lanczos with full
    /// reorthogonalization found them too here, through rounding, which
    /// exact arithmetic would not allow; a block does not depend on it.)
    #[test]
    fn block_finds_every_copy_of_a_degenerate_top_eigenvalue() {
        let n = 80;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let a = DMatrix::<f64>::from_fn(n, n, |_, _| StandardNormal.sample(&mut rng));
        let q = a.qr().q();
        let d: Vec<f64> = (0..n)
            .map(|i| {
                if i < 3 {
                    10.0
                } else {
                    5.0 - 4.0 * i as f64 / n as f64
                }
            })
            .collect();
        let m = &q * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(d)) * q.transpose();
        let r = lanczos(n, &mut dense_op(&m), &opts(4, Which::Largest, 4), None);
        assert!(r.converged);
        let vals: Vec<f64> = r.pairs.iter().map(|p| p.value).collect();
        for v in &vals[..3] {
            assert!((v - 10.0).abs() < 1e-9, "{vals:?}");
        }
        assert!((vals[3] - (5.0 - 12.0 / 80.0)).abs() < 1e-9, "{vals:?}");
        // the three vectors span the eigenspace: their projections on it are orthonormal
        let top = q.columns(0, 3);
        let y = DMatrix::from_fn(n, 3, |i, j| r.pairs[j].vector[i]);
        let overlap = top.transpose() * y;
        let s = overlap.singular_values();
        assert!(s.iter().all(|&x| (x - 1.0).abs() < 1e-8), "{s}");
    }

    /// Started from the exact top eigenvectors (as one block, or summed
    /// into one vector), Lanczos needs fewer products than from random.
    #[test]
    fn a_warm_start_from_the_answer_saves_products() {
        let n = 120;
        let (m, _) = matrix(n, 4);
        for b in [1, 4] {
            let cold = lanczos(n, &mut dense_op(&m), &opts(4, Which::Largest, b), None);
            let start: Vec<Vec<f64>> = cold.pairs.iter().map(|p| p.vector.clone()).collect();
            let warm = lanczos(
                n,
                &mut dense_op(&m),
                &opts(4, Which::Largest, b),
                Some(&start),
            );
            assert!(warm.converged);
            assert!(
                warm.hvps < cold.hvps,
                "b = {b}: warm {} hvps, cold {}",
                warm.hvps,
                cold.hvps
            );
            for (a, c) in warm.pairs.iter().zip(&cold.pairs) {
                assert!((a.value - c.value).abs() < 1e-9);
            }
        }
    }

    /// Between two checkpoints a new direction rises into the top-k, one
    /// that the previous top-k vectors do not touch at all. The warm start
    /// must find it (their sum alone spans an invariant subspace that
    /// Lanczos would report as converged, missing the new top eigenvalue).
    #[test]
    fn a_warm_start_cannot_hide_a_newcomer() {
        let n = 200;
        let k = 5;
        // Before: 10, 9, 8, 7, 6 on e_0…e_4, the rest in [0, 1).
        let before: Vec<f64> = (0..n)
            .map(|i| {
                if i < k {
                    10.0 - i as f64
                } else {
                    (i % 17) as f64 / 17.0
                }
            })
            .collect();
        let mut after = before.clone();
        after[137] = 20.0; // the newcomer, orthogonal to e_0…e_4
        let diag_op = |d: Vec<f64>| {
            move |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| {
                for (x, y) in xs.iter().zip(ys.iter_mut()) {
                    for i in 0..x.len() {
                        y[i] = d[i] * x[i];
                    }
                }
            }
        };
        let prev = lanczos(n, &mut diag_op(before), &opts(k, Which::Largest, 1), None);
        let start: Vec<Vec<f64>> = prev.pairs.iter().map(|p| p.vector.clone()).collect();
        for b in [1, 2, 5] {
            let r = lanczos(
                n,
                &mut diag_op(after.clone()),
                &opts(k, Which::Largest, b),
                Some(&start),
            );
            assert!(r.converged, "b = {b}");
            assert!(
                (r.pairs[0].value - 20.0).abs() < 1e-8,
                "b = {b}: top eigenvalue {} (the newcomer 20 was missed)",
                r.pairs[0].value
            );
            let got: Vec<f64> = r.pairs.iter().map(|p| p.value).collect();
            for (g, want) in got.iter().zip([20.0, 10.0, 9.0, 8.0, 7.0]) {
                assert!((g - want).abs() < 1e-8, "b = {b}: {got:?}");
            }
        }
    }

    #[test]
    fn one_by_one_adapts_a_vector_operator() {
        let (m, d) = matrix(30, 5);
        let mut single = |x: &[f64], y: &mut [f64]| {
            let v = &m * nalgebra::DVector::from_column_slice(x);
            y.copy_from_slice(v.as_slice());
        };
        let r = lanczos(
            30,
            &mut one_by_one(&mut single),
            &opts(2, Which::Largest, 1),
            None,
        );
        let top = d.iter().cloned().fold(f64::MIN, f64::max);
        assert!((r.pairs[0].value - top).abs() < 1e-9);
    }
}
